//! Authorization requests (RFC 6749 §4.1.1, OIDC Core §3.1.2.1): validation, then the decision
//! of what the user must do (sign in, consent) before a code is issued. Pure: no I/O.

use crate::accounts::mfa::policy::{required_level, Acr, AcrRequest};
use crate::config::OAuthSettings;
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::pkce::{self, Method};
use crate::protocol::redirect_uri::{matches_registered, RedirectMatching};
use crate::protocol::scope::Scope;
use crate::store::{Client, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    /// OAuth 2.0 Form Post Response Mode.
    FormPost,
}

impl ResponseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Query => "query",
            ResponseMode::FormPost => "form_post",
        }
    }
}

/// The `prompt` values (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// Where and how an authorization response goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTarget {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
}

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub target: ResponseTarget,
    pub redirect_uri_given: bool,
    pub scope: Scope,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<Method>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    /// The weakest `acr` that satisfies `acr_values`, an essential `acr` claim and the
    /// client's own requirement; `None` when one factor will do.
    pub required_acr: Option<Acr>,
    /// The values of an essential `acr` claim: the ID token's `acr` must be one of them.
    pub essential_acr: Option<Vec<String>>,
    /// A `sub` value requested through `claims` (OIDC Core §5.5.1: only that user will do).
    pub claims_sub: Option<String>,
    /// RFC 8707 §2: the APIs the tokens of this grant may be for.
    pub resources: Vec<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code will be bound to.
    pub dpop_jkt: Option<String>,
}

impl AuthorizationRequest {
    /// The `acr` to put in the tokens for a session of level `reached`. With an essential
    /// `acr` claim it must be one of the requested values (OIDC Core §5.5.1.1): the strongest
    /// one the session satisfies; otherwise the level reached.
    pub fn reported_acr(&self, reached: Acr) -> Acr {
        self.essential_acr
            .as_deref()
            .and_then(|values| {
                values
                    .iter()
                    .filter_map(|v| Acr::parse(v))
                    .filter(|a| *a <= reached)
                    .max()
            })
            .unwrap_or(reached)
    }
}

impl AuthorizationRequest {
    pub fn is_openid(&self) -> bool {
        self.scope.contains("openid")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// RFC 6749 §4.1.2.1: the client or redirect URI cannot be trusted, so the user sees an
    /// error page and is never redirected.
    Page(String),
    /// Everything else goes back to the client.
    Redirect {
        target: ResponseTarget,
        error: OAuthError,
    },
}

/// Where an answer about a request may go: its response target once the client and the
/// redirect URI are known good (RFC 6749 §4.1.2.1), else the message for the error page.
pub fn target_of(
    validated: Result<AuthorizationRequest, AuthorizeError>,
) -> Result<ResponseTarget, String> {
    match validated {
        Ok(request) => Ok(request.target),
        Err(AuthorizeError::Redirect { target, .. }) => Ok(target),
        Err(AuthorizeError::Page(message)) => Err(message),
    }
}

/// RFC 6749 §3.3: the `scope` a client asks for: present, well-formed, and within what the
/// client is registered for. The one rule of `/authorize` and `/device_authorization`.
pub fn requested_scope(raw: Option<&str>, client: &Client) -> Result<Scope, (ErrorCode, String)> {
    let scope = match raw {
        None => return Err((ErrorCode::InvalidScope, "scope is missing".into())),
        Some(raw) => Scope::parse(raw).map_err(|e| (ErrorCode::InvalidScope, e.to_string()))?,
    };
    let allowed = Scope::parse(&client.scope).unwrap_or_default();
    let extra: Vec<&str> = scope.iter().filter(|s| !allowed.contains(s)).collect();
    if !extra.is_empty() {
        return Err((
            ErrorCode::InvalidScope,
            format!("this client may not request: {}", extra.join(" ")),
        ));
    }
    Ok(scope)
}

/// Validates `params` for `client` (the client named by `client_id`, if it exists).
pub fn validate(
    params: &Params,
    client: Option<&Client>,
    settings: &OAuthSettings,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let page = |m: &str| AuthorizeError::Page(m.to_string());
    if params.get("client_id").is_none() {
        return Err(page(
            "The request does not name a client (client_id is missing).",
        ));
    }
    let client =
        client.ok_or_else(|| page("The application that sent you here is not registered."))?;
    let wants_openid = params
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|t| t == "openid"));

    // RFC 6749 §3.1.2.3: with several registered URIs the request must name one; OIDC Core
    // §3.1.2.1 makes it REQUIRED. Comparison is exact (RFC 9700 §4.1.3); only a native app's
    // loopback URI may vary its port (RFC 8252 §7.3), never a confidential client's.
    let (redirect_uri, redirect_uri_given) = match params.get("redirect_uri") {
        Some(given) => {
            let matching = RedirectMatching::for_client(client);
            if !client
                .redirect_uris
                .iter()
                .any(|r| matches_registered(matching, r, given))
            {
                return Err(page(
                    "The redirect URI in the request is not registered for this application.",
                ));
            }
            (given.to_string(), true)
        }
        None if !wants_openid && client.redirect_uris.len() == 1 => {
            (client.redirect_uris[0].clone(), false)
        }
        None => return Err(page("The request has no redirect_uri.")),
    };

    let state = params.get("state").map(str::to_string);
    let (response_mode, mode_error) = match params.get("response_mode") {
        None | Some("query") => (ResponseMode::Query, None),
        Some("form_post") => (ResponseMode::FormPost, None),
        Some(other) => (
            ResponseMode::Query,
            Some(format!(
                "response_mode {other:?} is not supported; use query or form_post"
            )),
        ),
    };
    let target = ResponseTarget {
        redirect_uri,
        response_mode,
        state,
    };
    let fail = |code: ErrorCode, description: String| AuthorizeError::Redirect {
        target: target.clone(),
        error: OAuthError::new(code, description),
    };
    if let Some(msg) = mode_error {
        return Err(fail(ErrorCode::InvalidRequest, msg));
    }

    match params.get("response_type") {
        None => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "response_type is missing".into(),
            ))
        }
        Some("code") => {}
        Some(other) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                format!("response_type {other:?} is not supported; use code"),
            ))
        }
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(fail(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code grant".into(),
        ));
    }
    if params.contains("request") {
        return Err(fail(
            ErrorCode::RequestNotSupported,
            "request objects are not supported".into(),
        ));
    }
    if params.contains("request_uri") {
        return Err(fail(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported".into(),
        ));
    }

    // RFC 6749 §3.3.
    let scope = requested_scope(params.get("scope"), client).map_err(|(c, m)| fail(c, m))?;
    // RFC 8707 §2: each `resource` well-formed and allowed to the client.
    let resources = crate::protocol::resource::requested(params, client)
        .map_err(|e| fail(e.code, e.description))?;
    // RFC 9449 §10: `dpop_jkt` is a base64url SHA-256 thumbprint (43 characters).
    let dpop_jkt = match params.get("dpop_jkt") {
        None => None,
        Some(j)
            if j.len() == 43
                && j.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(j.to_string())
        }
        Some(_) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key".into(),
            ))
        }
    };

    // RFC 7636 §4.3-4.4 and RFC 9700 §2.1.1.
    let code_challenge = params.get("code_challenge").map(str::to_string);
    let code_challenge_method = match (&code_challenge, params.get("code_challenge_method")) {
        (None, Some(_)) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method was sent without code_challenge".into(),
            ))
        }
        (None, None) => None,
        (Some(challenge), method) => {
            let method = Method::parse(method.unwrap_or("plain")).ok_or_else(|| {
                fail(
                    ErrorCode::InvalidRequest,
                    "code_challenge_method must be S256".into(),
                )
            })?;
            if method == Method::Plain && !settings.allow_plain_pkce {
                return Err(fail(
                    ErrorCode::InvalidRequest,
                    "code_challenge_method plain is not allowed; use S256".into(),
                ));
            }
            if !pkce::well_formed(challenge) {
                return Err(fail(
                    ErrorCode::InvalidRequest,
                    "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]".into(),
                ));
            }
            Some(method)
        }
    };
    if code_challenge.is_none() && (client.is_public() || settings.require_pkce) {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "PKCE is required: send code_challenge and code_challenge_method=S256".into(),
        ));
    }

    let mut prompt = Prompt::default();
    if let Some(raw) = params.get("prompt") {
        let mut count = 0;
        for value in raw.split(' ').filter(|v| !v.is_empty()) {
            count += 1;
            match value {
                "none" => prompt.none = true,
                "login" | "select_account" => prompt.login = true,
                "consent" => prompt.consent = true,
                other => {
                    return Err(fail(
                        ErrorCode::InvalidRequest,
                        format!("prompt value {other:?} is not supported"),
                    ))
                }
            }
        }
        // OIDC Core §3.1.2.1: "none" must not be combined with any other value.
        if prompt.none && count > 1 {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "prompt=none cannot be combined with other values".into(),
            ));
        }
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(raw) => Some(raw.parse::<u32>().map(i64::from).map_err(|_| {
            fail(
                ErrorCode::InvalidRequest,
                "max_age must be a non-negative integer".into(),
            )
        })?),
    };

    let (essential, claims_sub) = match params.get("claims") {
        None => (None, None),
        Some(raw) => parse_claims(raw).map_err(|m| fail(ErrorCode::InvalidRequest, m))?,
    };
    let acr_request = AcrRequest {
        values: params
            .get("acr_values")
            .map(|v| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        essential: essential.clone(),
    };
    let floor = client.require_mfa.then_some(Acr::Mfa);
    // OIDC Core §5.5.1.1: an essential `acr` that cannot be met is a failed authentication.
    let required_acr = required_level(&acr_request, floor)
        .map_err(|e| fail(ErrorCode::AccessDenied, e.to_string()))?;

    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        target,
        redirect_uri_given,
        scope,
        nonce: params.get("nonce").map(str::to_string),
        code_challenge,
        code_challenge_method,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(str::to_string),
        id_token_hint: params.get("id_token_hint").map(str::to_string),
        required_acr,
        essential_acr: essential,
        claims_sub,
        resources,
        dpop_jkt,
    })
}

/// What the `claims` parameter (OIDC Core §5.5) asks that changes the sign-in: the values of
/// an essential `acr` (`{"id_token": {"acr": {"essential": true, "values": [...]}}}`, or
/// `"value"`; §5.5.1.1) and a requested `sub` value (§5.5.1). Other requested claims are
/// voluntary, and the usual scope rules deliver them.
fn parse_claims(raw: &str) -> Result<(Option<Vec<String>>, Option<String>), String> {
    let parsed: serde_json::Value = serde_json::from_str(raw)
        .map_err(|_| "claims must be a JSON object (OIDC Core §5.5)".to_string())?;
    let sub = ["id_token", "userinfo"].iter().find_map(|target| {
        parsed
            .get(target)
            .and_then(|t| t.get("sub"))
            .and_then(|s| s.get("value"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    });
    Ok((essential_acr(&parsed)?, sub))
}

fn essential_acr(parsed: &serde_json::Value) -> Result<Option<Vec<String>>, String> {
    let Some(members) = parsed.as_object() else {
        return Err("claims must be a JSON object (OIDC Core §5.5)".into());
    };
    for target in ["id_token", "userinfo"] {
        let Some(acr) = members.get(target).and_then(|t| t.get("acr")) else {
            continue;
        };
        if acr.get("essential").and_then(serde_json::Value::as_bool) != Some(true) {
            continue;
        }
        let mut values: Vec<String> = acr
            .get("values")
            .and_then(serde_json::Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(one) = acr.get("value").and_then(serde_json::Value::as_str) {
            values.push(one.to_string());
        }
        if !values.is_empty() {
            return Ok(Some(values));
        }
    }
    Ok(None)
}

/// What the signed-in browser brings to the decision.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts {
    pub auth_time: Timestamp,
    /// False when an `id_token_hint` names another user.
    pub matches_hint: bool,
    /// How strong the session's sign-in was.
    pub acr: Acr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Login,
    /// Signed in, but more weakly than the request requires: a second factor first.
    StepUp(Acr),
    Consent,
    IssueCode,
}

/// OIDC Core §3.1.2.3-3.1.2.4: sign in when there is no usable session, consent when the
/// scopes were not granted before; with `prompt=none` either need is an error instead.
pub fn decide(
    req: &AuthorizationRequest,
    session: Option<SessionFacts>,
    consented: bool,
    now: Timestamp,
) -> Result<Interaction, OAuthError> {
    let needs_login = match session {
        None => true,
        Some(s) => {
            req.prompt.login
                || !s.matches_hint
                || req.max_age.is_some_and(|max| now - s.auth_time > max)
        }
    };
    if needs_login {
        return if req.prompt.none {
            Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the user is not signed in",
            ))
        } else {
            Ok(Interaction::Login)
        };
    }
    if let (Some(required), Some(s)) = (req.required_acr, session) {
        if s.acr < required {
            return if req.prompt.none {
                // OIDC Core §3.1.2.6: the step-up needs the user.
                Err(OAuthError::new(
                    ErrorCode::InteractionRequired,
                    format!("this request needs a sign-in of acr {required}, which needs the user"),
                ))
            } else {
                Ok(Interaction::StepUp(required))
            };
        }
    }
    if req.prompt.consent || !consented {
        return if req.prompt.none {
            Err(OAuthError::new(
                ErrorCode::ConsentRequired,
                "the user has not granted these scopes to this client",
            ))
        } else {
            Ok(Interaction::Consent)
        };
    }
    Ok(Interaction::IssueCode)
}
