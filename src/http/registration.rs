//! `POST /connect/register` (RFC 7591 §3) and each client's configuration endpoint
//! `/connect/register/{client_id}` (RFC 7592 §2: GET, PUT, DELETE): read the request, call the
//! registration service, answer in RFC 7591 JSON (§3.2.1, errors §3.2.2) or with an RFC 6750
//! §3 `invalid_token` challenge. `/register` is the sign-up page for people, not this.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response};

use crate::app::AppState;
use crate::clients::dynamic::DynamicError;
use crate::config::RegistrationMode;
use crate::http::middleware::rate_limit;
use crate::http::{error_body, json_response, not_found, oauth_error_json};
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::registration::MetadataErrorCode;

/// `POST /connect/register`.
#[handler]
pub async fn register(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let service = &state.registration;
    let bearer = match door(state, req, true).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let mode = match service.admit(bearer.as_deref()).await {
        Ok(mode) => mode,
        Err(e) => return answer(e),
    };
    let body = match read_json(state, req, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match service.register(&body, mode).await {
        Ok(issued) => information(StatusCode::CREATED, &service.information(&issued)),
        Err(e) => answer(e),
    }
}

/// `GET /connect/register/{client_id}` (RFC 7592 §2.1).
#[handler]
pub async fn read(req: &Request, state: Data<&AppState>) -> Response {
    let client_id = client_id(req);
    let service = &state.registration;
    let bearer = match door(*state, req, false).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match service.read(&client_id, bearer.as_deref()).await {
        Ok(issued) => information(StatusCode::OK, &service.information(&issued)),
        Err(e) => answer(e),
    }
}

/// `PUT /connect/register/{client_id}` (RFC 7592 §2.2).
#[handler]
pub async fn update(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let client_id = client_id(req);
    let state = *state;
    let service = &state.registration;
    let bearer = match door(state, req, false).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let body = match read_json(state, req, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match service.update(&client_id, bearer.as_deref(), &body).await {
        Ok(issued) => information(StatusCode::OK, &service.information(&issued)),
        Err(e) => answer(e),
    }
}

/// `DELETE /connect/register/{client_id}` (RFC 7592 §2.3): 204 No Content.
#[handler]
pub async fn delete(req: &Request, state: Data<&AppState>) -> Response {
    let client_id = client_id(req);
    let service = &state.registration;
    let bearer = match door(*state, req, false).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match service.delete(&client_id, bearer.as_deref()).await {
        Ok(()) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => answer(e),
    }
}

/// The client id of a configuration endpoint's path, as sent: ids are hex, so anything that
/// would need decoding names no client (and answers 401 like any unknown one).
fn client_id(req: &Request) -> String {
    req.raw_path_param("client_id").unwrap_or("").to_string()
}

/// What every registration route checks first: that registration is on (else 404), the
/// per-IP limit when `count`, and the shape of the `Authorization` header. The bearer token
/// given, if any.
async fn door(state: &AppState, req: &Request, count: bool) -> Result<Option<String>, Response> {
    if state.registration.mode() == RegistrationMode::Off {
        return Err(not_found());
    }
    if count {
        if let Some(refusal) = over_limit(state, req).await {
            return Err(refusal);
        }
    }
    bearer(req).map_err(answer)
}

/// Registrations per client IP (`registration.rate_limit`), counted before anything else so
/// that guessing initial access tokens is throttled too.
async fn over_limit(state: &AppState, req: &Request) -> Option<Response> {
    let limits = &state.settings.rate_limits;
    if !limits.enabled {
        return None;
    }
    let ip = rate_limit::client_ip(req)?;
    let policy = state.settings.registration.rate_limit;
    let key = format!(
        "client-registration-ip:{}",
        crate::limiter::ip_key(ip, limits.ipv6_prefix)
    );
    let d = state.limiter.hit(&key, policy).await;
    (!d.allowed).then(|| rate_limit::too_many_json("registration", policy, &d))
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1), `None` without a header.
fn bearer(req: &Request) -> Result<Option<String>, DynamicError> {
    let Some(value) = req.headers().get("authorization") else {
        return Ok(None);
    };
    let malformed =
        DynamicError::InvalidToken("the Authorization header must be: Bearer <access token>");
    let value = value.to_str().map_err(|_| malformed)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(DynamicError::InvalidToken(
            "the Authorization header must be: Bearer <access token>",
        )),
    }
}

/// RFC 7591 §3.1: the body is a JSON document (`application/json`), no larger than
/// `http.max_body_bytes` however it is sent.
async fn read_json(state: &AppState, req: &Request, body: Body) -> Result<Vec<u8>, Response> {
    let media = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(metadata_error(
            StatusCode::BAD_REQUEST,
            MetadataErrorCode::InvalidClientMetadata,
            "the request body must be client metadata as application/json (RFC 7591 §3.1)",
        ));
    }
    let limit = state.settings.http.max_body_bytes;
    body.into_bytes_limit(limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| {
            metadata_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                MetadataErrorCode::InvalidClientMetadata,
                &format!("the request body is larger than {limit} bytes or could not be read"),
            )
        })
}

/// A client information response: JSON that carries secrets, so never cached (RFC 7591
/// §3.2.1 follows RFC 6749 §5.1 here).
fn information(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = json_response(status, body, "no-store");
    no_store(&mut resp);
    resp
}

fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        poem::http::header::CACHE_CONTROL,
        poem::http::HeaderValue::from_static("no-store"),
    );
    h.insert("pragma", poem::http::HeaderValue::from_static("no-cache"));
}

/// RFC 7591 §3.2.2: "HTTP 400 status code (unless otherwise specified)" and a JSON body.
fn metadata_error(status: StatusCode, code: MetadataErrorCode, description: &str) -> Response {
    let mut resp = json_response(status, &error_body(code.as_str(), description), "no-store");
    no_store(&mut resp);
    resp
}

/// Each refusal in its wire form.
fn answer(e: DynamicError) -> Response {
    match e {
        DynamicError::Off => not_found(),
        DynamicError::InvalidToken(description) => {
            crate::http::oidc::bearer_error(OAuthError::new(ErrorCode::InvalidToken, description))
        }
        DynamicError::Metadata(m) => {
            metadata_error(StatusCode::BAD_REQUEST, m.code, &m.description)
        }
        DynamicError::Store(reason) => {
            tracing::error!(error = %reason, "client registration failed");
            oauth_error_json(&OAuthError::server_error())
        }
    }
}
