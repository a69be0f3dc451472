//! HTTP adapters: parse the request, call the decision, shape the answer. One module per
//! endpoint family; no protocol rule lives here.

pub mod account;
pub mod account_pages;
pub mod api;
pub mod console;
pub mod device;
pub mod dpop;
pub mod health;
pub mod logout;
pub mod middleware;
pub mod oauth;
pub mod oidc;
pub mod pages;
pub mod par;
pub mod registration;
pub mod session;
pub mod tokens;

use poem::http::StatusCode;
use poem::{Body, IntoResponse, Request, Response};
use serde_json::json;

use crate::protocol::error::OAuthError;
use crate::protocol::params::{Params, MAX_ENCODED};

/// Reads an `application/x-www-form-urlencoded` body strictly (RFC 6749 §3.2, §4.1.3).
pub async fn read_form(req: &Request, body: Body) -> Result<Params, String> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err("the body must be application/x-www-form-urlencoded".into());
    }
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if declared > MAX_ENCODED {
        return Err("the request body is too large".into());
    }
    // Chunked bodies have no Content-Length: the limit applies while reading.
    let bytes = body
        .into_bytes_limit(MAX_ENCODED)
        .await
        .map_err(|_| "the request body is too large or could not be read".to_string())?;
    Params::parse(&bytes).map_err(|e| e.to_string())
}

/// A hosted page's form, if it parses and carries this browser's CSRF token; otherwise the
/// error page to answer with.
pub async fn checked_form(
    state: &crate::app::AppState,
    req: &Request,
    body: Body,
) -> Result<Params, Response> {
    let form = read_form(req, body)
        .await
        .map_err(|m| pages::error_page(state, req, StatusCode::BAD_REQUEST, "Bad request", &m))?;
    if !session::csrf_ok(state, req, form.get("csrf")) {
        return Err(pages::error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "Go back, reload the page and try again.",
        ));
    }
    Ok(form)
}

/// `s` with its first letter in upper case, for a message shown on a page.
pub fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `s` as a sentence for a page: capitalised, ending in one full stop.
pub fn sentence(s: &str) -> String {
    let text = capitalise(s.trim_end_matches('.'));
    if text.is_empty() {
        text
    } else {
        text + "."
    }
}

/// The JSON body of an error: RFC 6749 §5.2's `error` and `error_description`, and the
/// request's `trace_id` (§5.2 lets a server add members) so a report can be found in the logs.
pub fn error_body(error: &str, description: &str) -> serde_json::Value {
    let mut body = json!({"error": error, "error_description": description});
    if let Some(trace_id) = middleware::request_id::current_trace_id() {
        body["trace_id"] = json!(trace_id);
    }
    body
}

/// An RFC 6749 §5.2 error body. `invalid_client` is 401 with a `WWW-Authenticate: Basic`
/// challenge (RFC 7235 §3.1 requires one on every 401).
pub fn oauth_error_json(error: &OAuthError) -> Response {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = json_response(
        status,
        &error_body(error.code.as_str(), &error.description),
        "no-store",
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            "www-authenticate",
            poem::http::HeaderValue::from_static("Basic realm=\"portcullis\", charset=\"UTF-8\""),
        );
    }
    resp.headers_mut()
        .insert("pragma", poem::http::HeaderValue::from_static("no-cache"));
    resp
}

/// A JSON body with caching headers set by the caller, serialized straight into the body.
pub fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
    cache_control: &'static str,
) -> Response {
    let Ok(bytes) = serde_json::to_vec(body) else {
        tracing::error!("a response body could not be serialized");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(bytes);
    resp.headers_mut().insert(
        poem::http::header::CACHE_CONTROL,
        poem::http::HeaderValue::from_static(cache_control),
    );
    resp
}

/// The answer for routes that do not exist: JSON, not the framework's plain text.
pub fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &error_body("not_found", "no such endpoint"),
        "no-store",
    )
}

pub fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &error_body(
            "method_not_allowed",
            "this endpoint does not accept that HTTP method",
        ),
        "no-store",
    )
}
