//! Plain OAuth 2.0 upstreams (`kind = "oauth2"`) and the GitHub preset: the authorization
//! code flow with PKCE (RFC 6749 §4.1, RFC 7636) through the `oauth2` crate, then the user-info
//! API read with the access token, mapped to claims by `[upstream].claims`. GitHub's
//! address comes from `/user/emails`: the primary one, verified only if GitHub says so.

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;

use super::{FederationError, FederationService, Provider, UpstreamProfile};
use crate::config::UpstreamKind;

fn bad(what: &str) -> impl Fn(oauth2::url::ParseError) -> FederationError + '_ {
    move |e| FederationError::BadResponse(format!("{what}: {e}"))
}

pub(super) fn authorization_url(
    provider: &Provider,
    redirect_uri: &str,
    state: &str,
    pkce_verifier: &str,
) -> Result<String, FederationError> {
    let auth = provider.config.authorization_endpoint().unwrap_or_default();
    let client = BasicClient::new(ClientId::new(provider.config.client_id.clone()))
        .set_auth_uri(AuthUrl::new(auth).map_err(bad("authorization_url"))?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.into()).map_err(bad("redirect URI"))?);
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier.into()));
    let state = state.to_string();
    let mut request = client
        .authorize_url(move || CsrfToken::new(state))
        .set_pkce_challenge(challenge);
    for scope in provider.config.effective_scopes() {
        request = request.add_scope(Scope::new(scope));
    }
    Ok(request.url().0.to_string())
}

pub(super) async fn exchange(
    service: &FederationService,
    provider: &Provider,
    redirect_uri: &str,
    code: &str,
    pkce_verifier: &str,
) -> Result<UpstreamProfile, FederationError> {
    let config = &provider.config;
    let token_url = config.token_endpoint().unwrap_or_default();
    let mut client = BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_token_uri(TokenUrl::new(token_url).map_err(bad("token_url"))?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.into()).map_err(bad("redirect URI"))?);
    if let Some(secret) = provider.secret() {
        client = client.set_client_secret(ClientSecret::new(secret));
    }
    if config.kind == UpstreamKind::Github {
        // GitHub takes the client's credentials in the body.
        client = client.set_auth_type(AuthType::RequestBody);
    }
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
        .request_async(&service.http)
        .await
        .map_err(|e| match e {
            RequestTokenError::Request(e) => {
                FederationError::Unreachable(format!("token endpoint: {e}"))
            }
            RequestTokenError::ServerResponse(r) => {
                FederationError::BadResponse(format!("token endpoint said {}", error_code(&r)))
            }
            // GitHub answers a refused code exchange with 200 and an RFC 6749 §5.2 error body,
            // which the crate then fails to read as tokens: name the error code it sent. (Only
            // the code: a body that did hold tokens is never logged.)
            RequestTokenError::Parse(_, body) => {
                match serde_json::from_slice::<BasicErrorResponse>(&body) {
                    Ok(r) => FederationError::BadResponse(format!(
                        "token endpoint said {}",
                        error_code(&r)
                    )),
                    Err(_) => FederationError::BadResponse(
                        "token endpoint: the answer is neither tokens nor an error".into(),
                    ),
                }
            }
            other => FederationError::BadResponse(format!("token endpoint: {other}")),
        })?;
    let access_token = tokens.access_token().secret().clone();
    let userinfo_url = config.userinfo_endpoint().unwrap_or_default();
    let info = get_json(service, &userinfo_url, &access_token).await?;
    let claim = |name: &str| config.claim_path(name).and_then(|p| lookup(&info, &p));
    let subject = match claim("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(FederationError::BadResponse(
                "the user-info answer has no subject (claims.sub)".into(),
            ))
        }
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let mut name = text(claim("name"));
    let (mut email, mut email_verified) = (
        text(claim("email")),
        claim("email_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    if config.kind == UpstreamKind::Github {
        if name.is_none() {
            name = text(info.get("login"));
        }
        // The profile's public address says nothing about verification: the address list does.
        let emails_url = config.emails_endpoint().unwrap_or_default();
        let list = get_json(service, &emails_url, &access_token).await?;
        let primary = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
        email = primary.and_then(|e| text(e.get("email")));
        email_verified = primary
            .and_then(|e| e.get("verified"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    Ok(UpstreamProfile {
        subject,
        email,
        email_verified,
        name,
        amr: Vec::new(),
    })
}

async fn get_json(
    service: &FederationService,
    url: &str,
    access_token: &str,
) -> Result<Value, FederationError> {
    let resp = service
        .http
        .get(url)
        .bearer_auth(access_token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| FederationError::Unreachable(format!("user info: {e}")))?;
    if !resp.status().is_success() {
        return Err(FederationError::BadResponse(format!(
            "user info answered {}",
            resp.status()
        )));
    }
    resp.json()
        .await
        .map_err(|e| FederationError::BadResponse(format!("user info: {e}")))
}

/// The `error` of a token endpoint's error answer, fit for a log line (it is the upstream's
/// text).
fn error_code(response: &BasicErrorResponse) -> String {
    response
        .error()
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// The value at a dotted path (`"id"`, `"profile.email"`).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::{error_code, lookup, BasicErrorResponse};

    #[test]
    fn a_token_error_code_is_read_and_kept_short_and_plain() {
        let github: BasicErrorResponse = serde_json::from_str(
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
        )
        .unwrap();
        assert_eq!(error_code(&github), "bad_verification_code");
        let hostile: BasicErrorResponse =
            serde_json::from_str(&format!(r#"{{"error":"x\n{}"}}"#, "y".repeat(100))).unwrap();
        assert_eq!(error_code(&hostile), format!("x{}", "y".repeat(63)));
    }

    #[test]
    fn a_dotted_path_reaches_into_objects() {
        let v = serde_json::json!({"id": 7, "profile": {"email": "a@b.c"}});
        assert_eq!(lookup(&v, "id"), Some(&serde_json::json!(7)));
        assert_eq!(
            lookup(&v, "profile.email"),
            Some(&serde_json::json!("a@b.c"))
        );
        assert_eq!(lookup(&v, "profile.missing"), None);
    }
}
