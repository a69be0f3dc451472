//! Resource indicators (RFC 8707): which API an access token is for. Decides whether a
//! named resource may be asked for and what a token for it carries; no SQL, no HTTP.

use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::store::{ApiResource, Client};

/// RFC 8707 §2: "an absolute URI ... MUST NOT include a fragment component"; compared as
/// registered, character for character.
pub fn parse_identifier(raw: &str) -> Result<String, String> {
    let parsed = url::Url::parse(raw)
        .map_err(|_| format!("resource {raw:?} is not an absolute URI (RFC 8707 §2)"))?;
    if parsed.fragment().is_some() || raw.contains('#') {
        return Err(format!(
            "resource {raw:?} has a fragment, which RFC 8707 §2 forbids"
        ));
    }
    if raw.len() > 512 {
        return Err("a resource identifier is at most 512 characters".into());
    }
    Ok(raw.to_string())
}

fn invalid_target(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, description)
}

/// RFC 8707 §2: the `resource` values of an authorization request, each well-formed and
/// allowed to the client (RFC 8707 §2: `invalid_target` otherwise). Repeats are one.
pub fn requested(params: &Params, client: &Client) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for raw in params.get_all("resource") {
        let id = parse_identifier(raw).map_err(invalid_target)?;
        if !client.resources.contains(&id) {
            return Err(invalid_target(format!(
                "this client may not ask for tokens for the resource {id:?}"
            )));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The one resource a token request names, if any. It must be among `granted` (the resources
/// of the authorization, RFC 8707 §2.2) or, when the grant named none, among the client's.
pub fn token_target(
    params: &Params,
    client: &Client,
    granted: &[String],
) -> Result<Option<String>, OAuthError> {
    let asked = params.get_all("resource");
    let raw = match asked.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => {
            return Err(invalid_target(
                "name one resource per token request; ask again for the others",
            ))
        }
    };
    let id = parse_identifier(raw).map_err(invalid_target)?;
    let allowed = if granted.is_empty() {
        &client.resources
    } else {
        granted
    };
    if !allowed.contains(&id) || !client.resources.contains(&id) {
        return Err(invalid_target(format!(
            "the resource {id:?} was not granted to this client"
        )));
    }
    Ok(Some(id))
}

/// RFC 8707 §2.2: a token for `resource` carries only the granted scopes that belong to it.
pub fn narrow(granted: &Scope, resource: &ApiResource) -> Scope {
    granted.intersection(resource.scopes.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_absolute_uris_without_fragment() {
        assert!(parse_identifier("https://api.example.com").is_ok());
        assert!(parse_identifier("urn:example:api").is_ok());
        assert!(parse_identifier("/relative").is_err());
        assert!(parse_identifier("https://api.example.com/#x").is_err());
        assert!(parse_identifier("https://api.example.com/#").is_err());
    }

    #[test]
    fn a_token_carries_only_its_resources_scopes() {
        let r = ApiResource {
            identifier: "https://api".into(),
            scopes: vec!["read".into(), "write".into()],
            access_token_ttl_secs: None,
            created_at: 0,
        };
        let granted = Scope::parse("openid read profile").unwrap();
        assert_eq!(narrow(&granted, &r).to_string(), "read");
    }
}
