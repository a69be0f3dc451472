//! `POST /par` (RFC 9126 §2) and the `request_uri` side of `/authorize` (§4): the client
//! authenticates as at the token endpoint, its request is checked by the authorization
//! endpoint's own rules and kept under a hash; `/authorize` later finds it for that client
//! only, and the code it yields spends it.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde_json::json;

use crate::app::AppState;
use crate::http::middleware::rate_limit;
use crate::http::pages::error_page;
use crate::http::{json_response, oauth, oauth_error_json, read_form};
use crate::protocol::authorize::{self as rules, AuthorizationRequest, ResponseTarget};
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::par::{self, NewRequestUri, Standing};
use crate::protocol::params::Params;
use crate::store::{BrowserSession, PushedRequest, Timestamp, User};

/// The endpoint's path (advertised as `pushed_authorization_request_endpoint`).
pub const PATH: &str = "/par";

/// What the page says for a request URI that names no pushed request of the client: unknown,
/// another client's, or removed after it expired (nothing tells them apart).
const UNKNOWN: &str = "This sign-in link is not valid (its request_uri is unknown, or belongs \
                       to another application). Go back to the application and start again.";

/// `POST /par`: answers 201 with `request_uri` and `expires_in` (RFC 9126 §2.2), or an RFC
/// 6749 §5.2 error (§2.3). Other methods get the router's 405.
#[handler]
pub async fn push(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.settings.par.enabled {
        return crate::http::not_found();
    }
    let params = match read_form(req, body).await {
        Ok(p) => p,
        Err(message) => {
            return refused(state, req, None, &OAuthError::invalid_request(message)).await
        }
    };
    // RFC 9126 §2: "the rules for client authentication ... for token endpoint requests ...
    // apply for the PAR endpoint as well" (public clients present their client_id alone).
    let client = match oauth::authenticate_client_at(state, req, &params, PATH).await {
        Ok(c) => c,
        Err(resp) => {
            count_refusal(state, "client_authentication");
            return resp;
        }
    };
    let limits = &state.settings.rate_limits;
    if limits.enabled {
        // Every accepted request is a row: a client pushes at the pace it may ask for tokens.
        let d = state
            .limiter
            .hit(&format!("par:{}", client.id), limits.token)
            .await;
        if !d.allowed {
            count_refusal(state, "rate_limited");
            return rate_limit::too_many_json("token", limits.token, &d);
        }
    }
    // RFC 9449 §10.1: a DPoP proof at /par binds the code to its key (and must be the key a
    // `dpop_jkt` names).
    let mut params = params;
    match crate::http::dpop::proof_of(state, req, PATH, None).await {
        Ok(None) => {}
        Ok(Some(proof)) => {
            if params.get("dpop_jkt").is_some_and(|j| j != proof.jkt) {
                let e = OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "dpop_jkt does not name the key of the DPoP proof",
                );
                return refused(state, req, Some(&client.id), &e).await;
            }
            params.set("dpop_jkt", Some(proof.jkt));
        }
        Err(failure) => return crate::http::dpop::token_endpoint_error(state, failure),
    }
    let kept = match par::accept(&params, &client, &state.settings.oauth) {
        Ok(p) => p,
        Err(e) => return refused(state, req, Some(&client.id), &e).await,
    };
    let now = state.clock.now();
    let ttl = state.settings.par.request_uri_ttl_secs;
    let fresh = NewRequestUri::generate();
    let record = PushedRequest {
        uri_hash: fresh.hash.clone(),
        client_id: client.id.clone(),
        params: kept.to_query(),
        created_at: now,
        expires_at: now + ttl as i64,
        opened_at: None,
        consumed_at: None,
    };
    if let Err(e) = state.store.create_pushed_request(&record).await {
        tracing::error!(error = %e, "could not store a pushed authorization request");
        return oauth_error_json(&OAuthError::server_error());
    }
    state
        .metrics
        .count("portcullis_par_requests_total", &[("outcome", "accepted")]);
    let mut event = state
        .accounts
        .audit_event("par.accepted", &crate::http::api::meta_of(req));
    event.client_id = Some(client.id.clone());
    event.detail = json!({"scope": kept.get("scope"), "expires_in": ttl});
    state.accounts.record(event).await;
    let mut resp = json_response(
        StatusCode::CREATED,
        &json!({"request_uri": fresh.uri, "expires_in": ttl}),
        "no-store",
    );
    resp.headers_mut()
        .insert("pragma", poem::http::HeaderValue::from_static("no-cache"));
    resp
}

/// A refused push: counted, audited when the client is known (unauthenticated noise is only
/// counted: it names no one), answered as JSON.
async fn refused(
    state: &AppState,
    req: &Request,
    client_id: Option<&str>,
    error: &OAuthError,
) -> Response {
    count_refusal(state, error.code.as_str());
    if let Some(id) = client_id {
        let mut event = state
            .accounts
            .audit_event("par.refused", &crate::http::api::meta_of(req));
        event.client_id = Some(id.to_string());
        event.detail =
            json!({"error": error.code.as_str(), "error_description": error.description});
        state.accounts.record(event).await;
    }
    oauth_error_json(error)
}

fn count_refusal(state: &AppState, error: &str) {
    state.metrics.count(
        "portcullis_par_requests_total",
        &[("outcome", "refused"), ("error", error)],
    );
}

/// A pushed request that `/authorize` is working on.
#[derive(Debug, Clone)]
pub struct PushedUse {
    pub uri_hash: String,
    pub client_id: String,
    pub pushed_at: Timestamp,
    /// `/authorize?client_id=…&request_uri=…`: what the login and consent pages resume, so a
    /// reload or the return from sign-in finds the same pushed request again.
    pub return_to: String,
}

/// What the `request_uri` of an authorization request names.
enum Lookup {
    /// No `request_uri` from `/par`, or PAR is off (the authorization rules then refuse the
    /// parameter).
    Plain(Params),
    Pushed(Params, PushedUse),
    /// A request of this client that can no longer be used, with its parameters.
    Unusable(Params, Standing),
    /// No pushed request of this client; the message for the page.
    Unknown(&'static str),
    Unavailable,
}

/// RFC 9126 §4: with a `request_uri` the parameters are the pushed ones alone (everything
/// else on the query is ignored), found by the URI's hash together with `client_id`, so
/// another client's URI finds nothing. `open` marks the first visit, which starts the
/// sign-in's lifetime.
async fn lookup(state: &AppState, raw: Params, open: bool) -> Lookup {
    if !state.settings.par.enabled {
        return Lookup::Plain(raw);
    }
    // A request_uri of another form would be a request object by reference (RFC 9101), which
    // the authorization rules refuse as `request_uri_not_supported`.
    let Some(request_uri) = raw
        .get("request_uri")
        .filter(|uri| uri.starts_with(par::REQUEST_URI_PREFIX))
    else {
        return Lookup::Plain(raw);
    };
    let Some(client_id) = raw.get("client_id") else {
        return Lookup::Unknown("The request does not name a client (client_id is missing).");
    };
    let Some(hash) = par::request_uri_hash(request_uri) else {
        return Lookup::Unknown(UNKNOWN);
    };
    let now = state.clock.now();
    if open {
        let until = now + state.settings.par.sign_in_ttl_secs as i64;
        if let Err(e) = state
            .store
            .open_pushed_request(&hash, client_id, now, until)
            .await
        {
            tracing::error!(error = %e, "could not open a pushed authorization request");
            return Lookup::Unavailable;
        }
    }
    let found = match state.store.pushed_request(&hash, client_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return Lookup::Unknown(UNKNOWN),
        Err(e) => {
            tracing::error!(error = %e, "could not read a pushed authorization request");
            return Lookup::Unavailable;
        }
    };
    let params = match Params::parse(found.params.as_bytes()) {
        // Checked at /par: the stored request is its own client's.
        Ok(p) if p.get("client_id") == Some(found.client_id.as_str()) => p,
        _ => {
            tracing::error!("a stored pushed authorization request is corrupt");
            return Lookup::Unavailable;
        }
    };
    match Standing::of(&found, now) {
        Standing::Usable => {
            let mut resume = Params::default();
            resume.set("client_id", Some(found.client_id.clone()));
            resume.set("request_uri", Some(request_uri.to_string()));
            Lookup::Pushed(
                params,
                PushedUse {
                    uri_hash: found.uri_hash,
                    client_id: found.client_id,
                    pushed_at: found.created_at,
                    return_to: format!("/authorize?{}", resume.to_query()),
                },
            )
        }
        standing => Lookup::Unusable(params, standing),
    }
}

/// The parameters of an authorization request for `/authorize` and its pages: the pushed ones
/// when it carries a usable `request_uri`, its own otherwise. The answer when it names a
/// pushed request that cannot be used: an error page, or an `invalid_request_uri` redirect
/// when the stored request still names this client and a redirect URI registered for it
/// (RFC 6749 §4.1.2.1 allows a redirect only then).
pub async fn resolve(
    state: &AppState,
    req: &Request,
    raw: Params,
    open: bool,
) -> Result<(Params, Option<PushedUse>), Response> {
    let page =
        |status, message: &str| error_page(state, req, status, "Invalid sign-in request", message);
    match lookup(state, raw, open).await {
        Lookup::Plain(p) => Ok((p, None)),
        Lookup::Pushed(p, used) => Ok((p, Some(used))),
        Lookup::Unknown(message) => {
            count_use(state, "unknown");
            Err(page(StatusCode::BAD_REQUEST, message))
        }
        Lookup::Unavailable => Err(error_page(
            state,
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "Please try again in a moment.",
        )),
        Lookup::Unusable(params, standing) => {
            count_use(state, standing.as_str());
            let client = match params.get("client_id") {
                Some(id) => state.clients.get(id).await.ok().flatten(),
                None => None,
            };
            let validated = rules::validate(&params, client.as_ref(), &state.settings.oauth);
            match rules::target_of(validated) {
                Ok(target) => Err(oauth::respond_error(state, &target, &standing.error())),
                Err(message) => Err(page(StatusCode::BAD_REQUEST, &message)),
            }
        }
    }
}

/// The parameters to judge a request by when no page is to be shown (the sign-in's required
/// `acr`, the rate limiter's answer): as [`resolve`], `None` for an unusable `request_uri`.
pub async fn parameters(state: &AppState, raw: Params) -> Option<Params> {
    match lookup(state, raw, false).await {
        Lookup::Plain(p) | Lookup::Pushed(p, _) => Some(p),
        _ => None,
    }
}

/// `prompt=login` / `prompt=consent` of a pushed request once answered: see
/// [`par::settle_prompt`]. The consent's time is read only when the request asks for one.
pub async fn settle_prompt(
    state: &AppState,
    request: &mut AuthorizationRequest,
    pushed: &PushedUse,
    current: Option<&(BrowserSession, User)>,
) {
    if !(request.prompt.login || request.prompt.consent) {
        return;
    }
    let consented_at = match current {
        Some((_, user)) if request.prompt.consent => state
            .store
            .user_consents(user.id)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|c| c.client_id == pushed.client_id))
            .map(|c| c.updated_at),
        _ => None,
    };
    par::settle_prompt(
        &mut request.prompt,
        pushed.pushed_at,
        current.map(|(s, _)| s.auth_time),
        consented_at,
    );
}

/// RFC 9126 §4: a pushed request yields one code. Called just before the code is issued; the
/// conditional update decides, so of two parallel completions exactly one goes on and the
/// other is told `invalid_request_uri`.
pub async fn spend(
    state: &AppState,
    pushed: &PushedUse,
    target: &ResponseTarget,
) -> Result<(), Response> {
    let now = state.clock.now();
    match state
        .store
        .consume_pushed_request(&pushed.uri_hash, &pushed.client_id, now)
        .await
    {
        Ok(true) => {
            count_use(state, "consumed");
            Ok(())
        }
        Ok(false) => {
            count_use(state, Standing::Consumed.as_str());
            let error = OAuthError::new(
                ErrorCode::InvalidRequestUri,
                "the request_uri was already used or has just expired; push a new request",
            );
            Err(oauth::respond_error(state, target, &error))
        }
        Err(e) => {
            tracing::error!(error = %e, "could not spend a pushed authorization request");
            Err(oauth::respond_error(
                state,
                target,
                &OAuthError::server_error(),
            ))
        }
    }
}

fn count_use(state: &AppState, outcome: &str) {
    state
        .metrics
        .count("portcullis_par_request_uris_total", &[("outcome", outcome)]);
}
