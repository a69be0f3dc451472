//! Client authentication at the token endpoint (RFC 6749 §2.3.1, OIDC Core §9):
//! `client_secret_basic`, `client_secret_post`, and `none` for public clients.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;

use crate::protocol::error::OAuthError;
use crate::protocol::params::Params;
use crate::random;
use crate::store::Client;

/// What the request presented, before the client is looked up.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    secret: Option<String>,
    /// Whether the Authorization header was used: a failure then answers with
    /// `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    pub used_basic: bool,
}

/// Reads the credentials from the `Authorization` header and the form body.
pub fn presented(authorization: Option<&str>, params: &Params) -> Result<Presented, OAuthError> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    if let Some(header) = authorization {
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(OAuthError::invalid_client(
                "only HTTP Basic client authentication is supported",
            ));
        }
        let malformed = || OAuthError::invalid_client("malformed HTTP Basic credentials");
        let decoded = STANDARD.decode(value.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
        let id = form_decode(id).ok_or_else(malformed)?;
        let secret = form_decode(secret).ok_or_else(malformed)?;
        // RFC 6749 §2.3: a client must not use more than one authentication method.
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "client credentials were sent both in the Authorization header and in the body",
            ));
        }
        if body_id.is_some_and(|b| b != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the Authorization header",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            used_basic: true,
        });
    }
    let client_id = body_id
        .ok_or_else(|| OAuthError::invalid_client("client authentication is missing"))?
        .to_string();
    Ok(Presented {
        client_id,
        secret: body_secret.map(str::to_string),
        used_basic: false,
    })
}

/// Checks the presented credentials against the registered client.
/// Every failure is the same `invalid_client`, so nothing tells which part was wrong.
pub fn authenticate(client: Option<Client>, presented: &Presented) -> Result<Client, OAuthError> {
    let fail = || OAuthError::invalid_client("client authentication failed");
    let client = client.ok_or_else(fail)?;
    match (&client.secret_hash, &presented.secret) {
        (Some(hash), Some(secret)) if random::verify_secret(secret, hash) => Ok(client),
        // A public client authenticates with `none` and must not send a secret.
        (None, None) => Ok(client),
        _ => Err(fail()),
    }
}

fn form_decode(s: &str) -> Option<String> {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = presented(Some(&basic("my%20app", "s%3Ac")), &Params::default()).unwrap();
        assert_eq!(p.client_id, "my app");
        assert_eq!(p.secret.as_deref(), Some("s:c"));
        assert!(p.used_basic);
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let params = Params::parse(b"client_secret=x").unwrap();
        let err = presented(Some(&basic("a", "b")), &params).unwrap_err();
        assert_eq!(err.code, crate::protocol::error::ErrorCode::InvalidRequest);
        assert!(presented(Some("Basic %%%"), &Params::default()).is_err());
        assert!(presented(Some("Bearer abc"), &Params::default()).is_err());
        assert!(presented(None, &Params::default()).is_err());
    }
}
