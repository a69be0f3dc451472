//! `/revoke` (RFC 7009) and `/introspect` (RFC 7662): client-authenticated token management.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use crate::app::AppState;
use crate::http::oauth::authenticate_client;
use crate::http::{json_response, oauth_error_json, read_form};
use crate::protocol::error::OAuthError;
use crate::protocol::introspect as rules;
use crate::protocol::params::Params;
use crate::protocol::token::TokenContext;
use crate::store::Client;

async fn authenticated(
    state: &AppState,
    req: &Request,
    body: Body,
) -> Result<(Client, Params), Response> {
    let params = read_form(req, body)
        .await
        .map_err(|m| oauth_error_json(&OAuthError::invalid_request(m)))?;
    let client = authenticate_client(state, req, &params).await?;
    Ok((client, params))
}

/// What a grant needs, from the running server.
pub(crate) fn context<'a>(state: &'a AppState, ring: &'a crate::keys::KeyRing) -> TokenContext<'a> {
    TokenContext {
        store: &*state.store,
        ring,
        master: state.keys.master(),
        deny: &state.deny,
        clients: &state.clients,
        metrics: &state.metrics,
        settings: &state.settings,
        now: state.clock.now(),
        dpop_jkt: None,
    }
}

/// `POST /revoke`.
#[handler]
pub async fn revoke(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (client, params) = match authenticated(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let Some(token) = params.get("token") else {
        return oauth_error_json(&OAuthError::invalid_request("token is missing"));
    };
    let ring = state.keys.ring();
    match rules::revoke(&context(state, &ring), &client, token).await {
        Ok(()) => Response::builder()
            .status(StatusCode::OK)
            .header("cache-control", "no-store")
            .finish(),
        Err(e) => oauth_error_json(&e),
    }
}

/// `POST /introspect`.
#[handler]
pub async fn introspect(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (client, params) = match authenticated(state, req, body).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    // RFC 7662 §2.1: the caller must be authorized; a public client proves nothing.
    if client.is_public() {
        return oauth_error_json(&OAuthError::invalid_client(
            "introspection needs client authentication; public clients cannot introspect",
        ));
    }
    let Some(token) = params.get("token") else {
        return oauth_error_json(&OAuthError::invalid_request("token is missing"));
    };
    let limits = &state.settings.rate_limits;
    if limits.enabled {
        let d = state
            .limiter
            .hit(&format!("introspect:{}", client.id), limits.introspection)
            .await;
        if !d.allowed {
            return crate::http::middleware::rate_limit::too_many_json(
                "introspection",
                limits.introspection,
                &d,
            );
        }
    }
    let ring = state.keys.ring();
    match rules::introspect(&context(state, &ring), &client, token).await {
        Ok(answer) => json_response(StatusCode::OK, &answer, "no-store"),
        Err(e) => oauth_error_json(&e),
    }
}
