//! `/authorize` and `/token`: read the request, call the protocol decision, shape the answer
//! (error page, redirect, form post, or RFC 6749 JSON).

use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use url::Url;

use crate::app::AppState;
use crate::clients::{GRANT_DEVICE_CODE, GRANT_TOKEN_EXCHANGE};
use crate::http::middleware::rate_limit;
use crate::http::pages::{self, error_page, redirect, FormPostPage};
use crate::http::{oauth_error_json, read_form, session};
use crate::protocol::authorize::{
    self as rules, AuthorizationRequest, AuthorizeError, Interaction, ResponseMode, ResponseTarget,
    SessionFacts,
};
use crate::protocol::client_auth;
use crate::protocol::discovery::endpoint;
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::{
    authorization_code, client_credentials, device_code, refresh_token, token_exchange,
    TokenContext,
};
use crate::random;
use crate::store::{AuthorizationCode, BrowserSession, Client, User};

/// `GET|POST /authorize` (RFC 6749 §4.1.1; OIDC Core §3.1.2.1 allows both methods).
#[handler]
pub async fn authorize(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let params = if req.method() == Method::POST {
        read_form(req, body).await
    } else {
        Params::parse(req.uri().query().unwrap_or("").as_bytes()).map_err(|e| e.to_string())
    };
    let params = match params {
        Ok(p) => p,
        Err(message) => {
            return error_page(
                state,
                req,
                StatusCode::BAD_REQUEST,
                "Invalid sign-in request",
                &message,
            )
        }
    };
    // RFC 9126 §4: with a request_uri from /par the pushed parameters are the request, and
    // the pages resume `client_id` + `request_uri` (so a reload finds it again).
    let (params, pushed) = match crate::http::par::resolve(state, req, params, true).await {
        Ok(resolved) => resolved,
        Err(resp) => return resp,
    };
    let return_to = match &pushed {
        Some(p) => p.return_to.clone(),
        None => format!("/authorize?{}", params.to_query()),
    };
    let client = match load_client(state, params.get("client_id")).await {
        Ok(c) => c,
        Err(resp) => return resp(state, req),
    };
    let validated = rules::validate(&params, client.as_ref(), &state.settings.oauth);
    // RFC 9126 §4: when PAR is required (globally or for this client) a plain request is
    // refused with invalid_request, sent to the client once its redirect URI is known good.
    if pushed.is_none()
        && client
            .as_ref()
            .is_some_and(|c| crate::protocol::par::must_push(c, &state.settings.par))
    {
        return match rules::target_of(validated) {
            Ok(target) => respond_error(state, &target, &crate::protocol::par::push_required()),
            Err(message) => authorize_error(state, req, AuthorizeError::Page(message)),
        };
    }
    let mut request = match validated {
        Ok(r) => r,
        Err(e) => return authorize_error(state, req, e),
    };
    let Some(client) = client else {
        return error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Invalid sign-in request",
            "Unknown client.",
        );
    };
    let target = request.target.clone();
    let fail = |error: OAuthError| respond_error(state, &target, &error);

    // OIDC Core §3.1.2.1: the hint must be an ID token we issued; expiry does not matter.
    let hint_sub = match &request.id_token_hint {
        None => None,
        Some(hint) => match hint_subject(state, hint) {
            Some(sub) => Some(sub),
            None => {
                return fail(OAuthError::invalid_request(
                    "id_token_hint is not an ID token issued by this provider",
                ))
            }
        },
    };
    let current = session::current(state, req).await;
    if let Some(p) = &pushed {
        crate::http::par::settle_prompt(state, &mut request, p, current.as_ref()).await;
    }
    let facts = current.as_ref().map(|(s, u)| SessionFacts {
        acr: crate::accounts::mfa::Acr::of_session(s.acr.as_deref()),
        auth_time: s.auth_time,
        matches_hint: hint_sub.as_ref().is_none_or(|sub| *sub == u.id.to_string())
            && request
                .claims_sub
                .as_ref()
                .is_none_or(|sub| *sub == u.id.to_string()),
    });
    let consented = match &current {
        Some((_, user)) => {
            client.first_party || has_consent(state, user, &client, &request.scope).await
        }
        None => false,
    };
    let now = state.clock.now();
    match rules::decide(&request, facts, consented, now) {
        Err(error) => fail(error),
        // `return_to` keeps `prompt=login`: a provider the person picks on the page must be
        // told (OIDC Core §3.1.2.1); finishing the sign-in drops it (`resume_url`).
        Ok(Interaction::Login) => pages::login_page(
            state,
            req,
            &return_to,
            request.login_hint.as_deref().unwrap_or(""),
            None,
            Some(client.name.clone()),
        ),
        Ok(Interaction::StepUp(required)) => {
            let Some((session, user)) = &current else {
                return fail(OAuthError::server_error());
            };
            match state
                .mfa
                .begin_step_up(user, session, required, &return_to)
                .await
            {
                Ok(pending) => pages::mfa_page(state, req, &pending, None).await,
                Err(crate::accounts::mfa::MfaError::Disabled) => fail(OAuthError::new(
                    ErrorCode::AccessDenied,
                    format!("acr {required} needs a second factor, and this server offers none"),
                )),
                Err(_) => fail(OAuthError::server_error()),
            }
        }
        Ok(Interaction::Consent) => {
            let Some((_, user)) = &current else {
                return fail(OAuthError::server_error());
            };
            pages::consent_page_for(
                state,
                req,
                &without_prompt(&return_to, "consent"),
                &client,
                user,
                &request.scope,
            )
        }
        Ok(Interaction::IssueCode) => match &current {
            Some((session, user)) => {
                issue_code(state, &request, pushed.as_ref(), session, user).await
            }
            None => fail(OAuthError::server_error()),
        },
    }
}

type PageFn = Box<dyn FnOnce(&AppState, &Request) -> Response + Send>;

async fn load_client(state: &AppState, client_id: Option<&str>) -> Result<Option<Client>, PageFn> {
    match client_id {
        None => Ok(None),
        Some(id) => state.clients.get(id).await.map_err(|e| {
            tracing::error!(error = %e, "client lookup failed");
            Box::new(|state: &AppState, req: &Request| {
                error_page(
                    state,
                    req,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "Please try again in a moment.",
                )
            }) as PageFn
        }),
    }
}

fn authorize_error(state: &AppState, req: &Request, e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Page(message) => error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Invalid sign-in request",
            &message,
        ),
        AuthorizeError::Redirect { target, error } => respond(
            state,
            &target,
            &[
                ("error", error.code.as_str().to_string()),
                ("error_description", error.description),
            ],
        ),
    }
}

fn hint_subject(state: &AppState, hint: &str) -> Option<String> {
    let (payload, _, _) = state.keys.ring().verify(hint).ok()?;
    let claims = payload.claims_set();
    if claims.get("iss").and_then(|v| v.as_str()) != Some(state.settings.issuer.as_str()) {
        return None;
    }
    claims
        .get("sub")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

async fn has_consent(state: &AppState, user: &User, client: &Client, scope: &Scope) -> bool {
    match state.store.get_consent(user.id, &client.id).await {
        Ok(Some(granted)) => Scope::parse(&granted).is_ok_and(|g| scope.is_subset_of(&g)),
        _ => false,
    }
}

async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    pushed: Option<&crate::http::par::PushedUse>,
    session: &BrowserSession,
    user: &User,
) -> Response {
    // RFC 9126 §4: a pushed request yields one code; spending it decides who gets it.
    if let Some(p) = pushed {
        if let Err(resp) = crate::http::par::spend(state, p, &request.target).await {
            return resp;
        }
    }
    let now = state.clock.now();
    let code = random::token(32);
    let record = AuthorizationCode {
        code_hash: random::hash_secret(&code),
        client_id: request.client_id.clone(),
        user_id: user.id,
        session_id_hash: Some(session.id_hash.clone()),
        redirect_uri: request.target.redirect_uri.clone(),
        redirect_uri_given: request.redirect_uri_given,
        response_mode: request.target.response_mode.as_str().to_string(),
        scope: request.scope.to_string(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        code_challenge_method: request
            .code_challenge_method
            .map(|m| m.as_str().to_string()),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        acr: Some(
            request
                .reported_acr(crate::accounts::mfa::Acr::of_session(
                    session.acr.as_deref(),
                ))
                .as_str()
                .to_string(),
        ),
        created_at: now,
        expires_at: now + state.settings.oauth.code_ttl_secs as i64,
        used_at: None,
        access_token_jti: None,
        resources: request.resources.clone(),
        dpop_jkt: request.dpop_jkt.clone(),
    };
    if let Err(e) = state.store.create_code(&record).await {
        tracing::error!(error = %e, "could not store an authorization code");
        return respond(
            state,
            &request.target,
            &[
                ("error", "server_error".into()),
                (
                    "error_description",
                    "the code could not be issued; try again".into(),
                ),
            ],
        );
    }
    respond(state, &request.target, &[("code", code)])
}

/// Sends an authorization error response to the client (RFC 6749 §4.1.2.1).
pub(crate) fn respond_error(
    state: &AppState,
    target: &ResponseTarget,
    error: &OAuthError,
) -> Response {
    respond(
        state,
        target,
        &[
            ("error", error.code.as_str().to_string()),
            ("error_description", error.description.clone()),
        ],
    )
}

/// Sends an authorization response (code or error) to the client, with `state` and, per
/// RFC 9207, `iss`; by redirect (query) or by auto-submitted form (form_post).
fn respond(state: &AppState, target: &ResponseTarget, fields: &[(&str, String)]) -> Response {
    let mut all: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if let Some(s) = &target.state {
        all.push(("state".into(), s.clone()));
    }
    all.push(("iss".into(), state.settings.issuer.clone()));
    match target.response_mode {
        ResponseMode::FormPost => {
            let page = FormPostPage {
                brand: (&state.settings.branding).into(),
                redirect_uri: target.redirect_uri.clone(),
                fields: all,
            };
            pages::html(StatusCode::OK, &page, &[])
        }
        ResponseMode::Query => match Url::parse(&target.redirect_uri) {
            Ok(mut url) => {
                url.query_pairs_mut().extend_pairs(all.iter());
                redirect(url.to_string())
            }
            Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect URI").into_response_plain(),
        },
    }
}

trait PlainResponse {
    fn into_response_plain(self) -> Response;
}

impl PlainResponse for (StatusCode, &'static str) {
    fn into_response_plain(self) -> Response {
        Response::builder().status(self.0).body(self.1)
    }
}

/// `return_to` with one `prompt` value removed: once the user has just signed in (or
/// consented), resuming the request must not ask again.
fn without_prompt(return_to: &str, value: &str) -> String {
    let query = return_to.trim_start_matches("/authorize?");
    let Ok(mut params) = Params::parse(query.as_bytes()) else {
        return return_to.to_string();
    };
    if let Some(prompt) = params.get("prompt") {
        let kept: Vec<&str> = prompt
            .split(' ')
            .filter(|p| *p != value && !p.is_empty())
            .collect();
        params.set("prompt", Some(kept.join(" ")));
    }
    format!("/authorize?{}", params.to_query())
}

/// The absolute URL that resumes an authorization request after a page.
pub fn resume_url(state: &AppState, return_to: &str, satisfied_prompt: &str) -> String {
    endpoint(
        &state.settings.issuer,
        &without_prompt(return_to, satisfied_prompt),
    )
}

/// The `acr` the authorization request being resumed requires (its `acr_values`, an
/// essential `acr` claim, its client's `require_mfa`), for the second step of its sign-in.
pub async fn required_acr_for(
    state: &AppState,
    return_to: &str,
) -> Option<crate::accounts::mfa::Acr> {
    let params = Params::parse(return_to.trim_start_matches("/authorize?").as_bytes()).ok()?;
    // A pushed request's acr_values and claims are in the pushed parameters (RFC 9126 §4).
    let params = crate::http::par::parameters(state, params).await?;
    let client = state.clients.get(params.get("client_id")?).await.ok()??;
    rules::validate(&params, Some(&client), &state.settings.oauth)
        .ok()?
        .required_acr
}

/// What the request being resumed asks of a sign-in that an upstream provider must also
/// honour (OIDC Core §3.1.2.1): `prompt=login` and `max_age`.
pub async fn upstream_hints_for(state: &AppState, return_to: &str) -> crate::federation::Hints {
    let mut hints = crate::federation::Hints {
        demanded: true,
        ..Default::default()
    };
    let Some(query) = return_to.strip_prefix("/authorize?") else {
        return hints;
    };
    let Ok(params) = Params::parse(query.as_bytes()) else {
        return hints;
    };
    // A pushed request's prompt and max_age are in the pushed parameters (RFC 9126 §4).
    let Some(params) = crate::http::par::parameters(state, params).await else {
        return hints;
    };
    hints.prompt_login = params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "login"));
    hints.max_age = params
        .get("max_age")
        .and_then(|m| m.parse::<i64>().ok())
        .filter(|m| *m >= 0);
    hints
}

/// The client's name for the login page, from the request being resumed.
pub async fn client_name_for(state: &AppState, return_to: &str) -> Option<String> {
    let params = Params::parse(return_to.trim_start_matches("/authorize?").as_bytes()).ok()?;
    let client = state.clients.get(params.get("client_id")?).await.ok()??;
    Some(client.name)
}

/// Records that `user` allowed `client_id` the `scope` (on top of what was allowed before), and
/// audits it as `consent.granted`.
pub async fn grant_consent(
    state: &AppState,
    user: &User,
    client_id: &str,
    scope: &Scope,
) -> Result<(), crate::store::StoreError> {
    let mut granted = scope.clone();
    if let Ok(Some(previous)) = state.store.get_consent(user.id, client_id).await {
        granted = granted.union(&Scope::parse(&previous).unwrap_or_default());
    }
    let now = state.clock.now();
    state
        .store
        .save_consent(user.id, client_id, &granted.to_string(), now)
        .await?;
    let mut event = crate::store::AuditEvent::new("consent.granted", now);
    event.subject = Some(user.id.to_string());
    event.client_id = Some(client_id.to_string());
    event.detail = serde_json::json!({"scope": granted.to_string()});
    let _ = state.store.record_audit(&event).await;
    Ok(())
}

/// The consent form's answer: allow records the grant and resumes; deny tells the client.
pub async fn consent_decision(
    state: &AppState,
    req: &Request,
    params: &Params,
    user: &User,
    decision: Option<&str>,
    return_to: &str,
) -> Response {
    // The consent form of a pushed request resumes its request_uri (RFC 9126 §4).
    let (params, _) = match crate::http::par::resolve(state, req, params.clone(), false).await {
        Ok(resolved) => resolved,
        Err(resp) => return resp,
    };
    let params = &params;
    let client = match load_client(state, params.get("client_id")).await {
        Ok(c) => c,
        Err(resp) => return resp(state, req),
    };
    let request = match rules::validate(params, client.as_ref(), &state.settings.oauth) {
        Ok(r) => r,
        Err(e) => return authorize_error(state, req, e),
    };
    let Some(client) = client else {
        return error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Invalid sign-in request",
            "Unknown client.",
        );
    };
    match decision {
        Some("allow") => {
            if let Err(e) = grant_consent(state, user, &client.id, &request.scope).await {
                tracing::error!(error = %e, "could not save consent");
                return error_page(
                    state,
                    req,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Please try again in a moment.",
                );
            }
            redirect(resume_url(state, return_to, "consent"))
        }
        Some("deny") => respond(
            state,
            &request.target,
            &[
                ("error", ErrorCode::AccessDenied.as_str().to_string()),
                (
                    "error_description",
                    "the user denied the request".to_string(),
                ),
            ],
        ),
        _ => error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Choose Allow or Deny.",
        ),
    }
}

/// Authenticates the client of a token, revocation or introspection request. Failed attempts
/// are limited per client id and per IP; the answer is the error response to send.
pub async fn authenticate_client(
    state: &AppState,
    req: &Request,
    params: &Params,
) -> Result<Client, Response> {
    authenticate_client_at(state, req, params, "/token").await
}

/// [`authenticate_client`] at the endpoint `path`, whose URL a client assertion may also name
/// as its audience (RFC 9126 §2: the PAR endpoint accepts the issuer, the token endpoint URL
/// and its own URL).
pub async fn authenticate_client_at(
    state: &AppState,
    req: &Request,
    params: &Params,
    path: &str,
) -> Result<Client, Response> {
    let token_endpoint = endpoint(&state.settings.issuer, "/token");
    let called = endpoint(&state.settings.issuer, path);
    let audiences = [
        token_endpoint.as_str(),
        state.settings.issuer.as_str(),
        called.as_str(),
    ];
    let ctx = client_auth::AuthContext {
        store: &*state.store,
        clients: &state.clients,
        http: &state.http,
        audiences: &audiences,
        now: state.clock.now(),
    };
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let limits = &state.settings.rate_limits;
    let policy = limits.client_auth_failures;
    let mut keys = Vec::new();
    if limits.enabled {
        if let Ok(p) = client_auth::presented(authorization, params) {
            keys.push(format!("authfail-client:{}", p.client_id));
        }
        if let Some(ip) = rate_limit::client_ip(req) {
            keys.push(format!(
                "authfail-ip:{}",
                crate::limiter::ip_key(ip, limits.ipv6_prefix)
            ));
        }
        // Failures are counted after the check, not before: a busy confidential client sends
        // many concurrent requests, and counting-then-refunding would refuse the legitimate
        // ones. A 256-bit secret cannot be guessed anyway; this limit stops noise and probing.
        for key in &keys {
            let d = state.limiter.peek(key, policy).await;
            if !d.allowed {
                return Err(rate_limit::too_many_json(
                    "client_auth_failures",
                    policy,
                    &d,
                ));
            }
        }
    }
    match client_auth::authenticate_request(&ctx, authorization, params).await {
        // A registered client that expired unused is gone (RFC 7591 clients register again).
        Ok(client) => match state.registration.admits(&client).await {
            Ok(true) => Ok(client),
            Ok(false) => Err(oauth_error_json(&OAuthError::invalid_client(
                "client authentication failed",
            ))),
            Err(e) => {
                tracing::error!(error = %e, "registration lookup failed");
                Err(oauth_error_json(&OAuthError::server_error()))
            }
        },
        Err(e) => {
            if e.code == ErrorCode::InvalidClient {
                tracing::info!("client authentication failed");
                for key in &keys {
                    state.limiter.hit(key, policy).await;
                }
            }
            Err(oauth_error_json(&e))
        }
    }
}

/// `/authorize` over its rate limit: RFC 6749 §4.1.2.1 `temporarily_unavailable` back to the
/// client when the request names a valid client and redirect URI, a page otherwise.
pub async fn rate_limited_authorize(
    state: &AppState,
    req: &Request,
    name: &str,
    policy: crate::limiter::Policy,
    d: &crate::limiter::Decision,
) -> Response {
    let params = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let params = crate::http::par::parameters(state, params)
        .await
        .unwrap_or_default();
    let client = match params.get("client_id") {
        Some(id) => state.clients.get(id).await.ok().flatten(),
        None => None,
    };
    let target = rules::target_of(rules::validate(
        &params,
        client.as_ref(),
        &state.settings.oauth,
    ))
    .ok();
    let mut resp = match target {
        Some(target) => respond(
            state,
            &target,
            &[
                (
                    "error",
                    ErrorCode::TemporarilyUnavailable.as_str().to_string(),
                ),
                (
                    "error_description",
                    format!("too many requests; retry in {} seconds", d.retry_after_secs),
                ),
            ],
        ),
        None => return rate_limit::too_many_page(state, req, name, policy, d),
    };
    rate_limit::add_headers(&mut resp, name, policy, d);
    resp
}

/// `POST /token` (RFC 6749 §3.2).
#[handler]
pub async fn token(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let params = match read_form(req, body).await {
        Ok(p) => p,
        Err(message) => return oauth_error_json(&OAuthError::invalid_request(message)),
    };
    let client = match authenticate_client(state, req, &params).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let limits = &state.settings.rate_limits;
    if limits.enabled {
        let d = state
            .limiter
            .hit(&format!("token:{}", client.id), limits.token)
            .await;
        if !d.allowed {
            return rate_limit::too_many_json("token", limits.token, &d);
        }
    }
    let grant_type = match params.get("grant_type") {
        Some(g) => g,
        None => return oauth_error_json(&OAuthError::invalid_request("grant_type is missing")),
    };
    let allowed = client.grant_types.iter().any(|g| g == grant_type);
    // RFC 9449 §5: a proof binds the tokens to its key; a client registered with
    // `dpop_bound_access_tokens` must send one (§5.2).
    let proof = match crate::http::dpop::proof_of(state, req, "/token", None).await {
        Ok(p) => p,
        Err(failure) => return crate::http::dpop::token_endpoint_error(state, failure),
    };
    if proof.is_none() && client.dpop_bound_access_tokens {
        return oauth_error_json(&OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "this client must send a DPoP proof with every token request",
        ));
    }
    let ring = state.keys.ring();
    let ctx = TokenContext {
        store: &*state.store,
        ring: &ring,
        master: state.keys.master(),
        deny: &state.deny,
        clients: &state.clients,
        metrics: &state.metrics,
        settings: &state.settings,
        now: state.clock.now(),
        dpop_jkt: proof.as_ref().map(|p| p.jkt.as_str()),
    };
    let result = match grant_type {
        // RFC 6749 §5.2: a known grant the client is not registered for.
        "authorization_code" | "refresh_token" | "client_credentials" | GRANT_DEVICE_CODE
        | GRANT_TOKEN_EXCHANGE
            if !allowed =>
        {
            Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client is not registered for the {grant_type} grant"),
            ))
        }
        "authorization_code" => authorization_code::exchange(&ctx, &client, &params).await,
        "refresh_token" => refresh_token::exchange(&ctx, &client, &params).await,
        "client_credentials" => client_credentials::exchange(&ctx, &client, &params).await,
        GRANT_DEVICE_CODE if state.settings.device.enabled => {
            device_code::exchange(&ctx, &client, &params).await
        }
        GRANT_TOKEN_EXCHANGE => token_exchange::exchange(&ctx, &client, &params).await,
        other => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type {other:?} is not supported"),
        )),
    };
    match result {
        Ok(tokens) => {
            state.metrics.count(
                "portcullis_tokens_issued_total",
                &[("grant", grant_type), ("client_id", client.id.as_str())],
            );
            state.registration.note_use(&client).await;
            let mut resp = crate::http::json_response(StatusCode::OK, &tokens, "no-store");
            // RFC 6749 §5.1: `Pragma: no-cache` alongside `Cache-Control: no-store`.
            resp.headers_mut()
                .insert("pragma", poem::http::HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => oauth_error_json(&e),
    }
}
