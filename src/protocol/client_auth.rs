//! Client authentication at the token, revocation and introspection endpoints (RFC 6749
//! §2.3.1, OIDC Core §9): `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523), and `none` for public clients.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;

use crate::protocol::assertion;
use crate::protocol::error::OAuthError;
use crate::protocol::params::Params;
use crate::random;
use crate::store::{Client, Store, Timestamp};

/// What the request presented, before the client is looked up.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    secret: Option<String>,
    assertion: Option<String>,
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
        if params.contains("client_assertion") {
            return Err(OAuthError::invalid_request(
                "use one client authentication method only",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            assertion: None,
            used_basic: true,
        });
    }
    let assertion = match (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    ) {
        (None, None) => None,
        (Some(assertion::ASSERTION_TYPE), Some(a)) => Some(a.to_string()),
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type must be {}",
                assertion::ASSERTION_TYPE
            )))
        }
        _ => {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            ))
        }
    };
    if assertion.is_some() && body_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method only",
        ));
    }
    let client_id = match (body_id, &assertion) {
        (Some(id), _) => id.to_string(),
        (None, Some(a)) => assertion::claimed_client(a)
            .ok_or_else(|| OAuthError::invalid_client("the client assertion names no client"))?,
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is missing",
            ))
        }
    };
    Ok(Presented {
        client_id,
        secret: body_secret.map(str::to_string),
        assertion,
        used_basic: false,
    })
}

/// What authentication needs besides the request.
pub struct AuthContext<'a> {
    pub store: &'a dyn Store,
    pub clients: &'a crate::clients::ClientDirectory,
    pub http: &'a reqwest::Client,
    /// Acceptable `aud` values of client assertions: the token endpoint URL and the issuer.
    pub audiences: &'a [&'a str],
    pub now: Timestamp,
}

/// Authenticates the client that sent `authorization` and `params`.
/// Every credential failure is the same `invalid_client`, so nothing tells which part was wrong.
pub async fn authenticate_request(
    ctx: &AuthContext<'_>,
    authorization: Option<&str>,
    params: &Params,
) -> Result<Client, OAuthError> {
    let presented = presented(authorization, params)?;
    let client = ctx.clients.get(&presented.client_id).await.map_err(|e| {
        tracing::error!(error = %e, "client lookup failed");
        OAuthError::server_error()
    })?;
    let fail = || OAuthError::invalid_client("client authentication failed");
    let client = client.ok_or_else(fail)?;
    match client.token_endpoint_auth_method.as_str() {
        // A public client authenticates with `none` and must not send a secret.
        "none" if presented.secret.is_none() && presented.assertion.is_none() => Ok(client),
        "private_key_jwt" => {
            let Some(jwt) = &presented.assertion else {
                return Err(fail());
            };
            let keys = client_keys(ctx, &client).await?;
            let verified = assertion::verify(jwt, &client.id, &keys, ctx.audiences, ctx.now)?;
            // RFC 7523 §3 (7): a jti may be used only once.
            let fresh = ctx
                .store
                .remember_assertion(&client.id, &verified.jti, verified.exp)
                .await
                .map_err(|_| OAuthError::server_error())?;
            if !fresh {
                return Err(OAuthError::invalid_client(
                    "client assertion rejected: jti was already used",
                ));
            }
            Ok(client)
        }
        _ => match (&client.secret_hash, &presented.secret, &presented.assertion) {
            (Some(hash), Some(secret), None) if random::verify_secret(secret, hash) => Ok(client),
            _ => Err(fail()),
        },
    }
}

async fn client_keys(
    ctx: &AuthContext<'_>,
    client: &Client,
) -> Result<Vec<josekit::jwk::Jwk>, OAuthError> {
    let raw = match (&client.jwks, &client.jwks_uri) {
        (Some(inline), _) => inline.clone(),
        (None, Some(uri)) => {
            let fetched = ctx
                .http
                .get(uri)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .and_then(|r| r.error_for_status());
            match fetched {
                Ok(resp) => resp.text().await.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(client_id = %client.id, error = %e, "cannot fetch the client's JWKS");
                    return Err(OAuthError::invalid_client(
                        "the client's jwks_uri could not be fetched",
                    ));
                }
            }
        }
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "the client has no registered keys",
            ))
        }
    };
    assertion::parse_jwks(&raw)
        .map_err(|e| OAuthError::invalid_client(format!("the client's keys are unusable: {e}")))
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
    fn assertions_need_their_type() {
        let params = Params::parse(b"client_assertion=abc").unwrap();
        assert!(presented(None, &params).is_err());
        let params =
            Params::parse(b"client_assertion=abc&client_assertion_type=x&client_id=c").unwrap();
        assert!(presented(None, &params).is_err());
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
