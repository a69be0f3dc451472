//! HTTP adapters: parse the request, call the decision, shape the answer. One module per
//! endpoint family; no protocol rule lives here.

pub mod health;
pub mod middleware;
pub mod oidc;

use poem::http::StatusCode;
use poem::web::Json;
use poem::{IntoResponse, Response};
use serde_json::json;

/// A JSON body with caching headers set by the caller.
pub fn json_response(
    status: StatusCode,
    body: &serde_json::Value,
    cache_control: &str,
) -> Response {
    let mut resp = Json(body.clone()).with_status(status).into_response();
    if let Ok(v) = cache_control.parse() {
        resp.headers_mut().insert("cache-control", v);
    }
    resp
}

/// The answer for routes that do not exist: JSON, not the framework's plain text.
pub fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "error_description": "no such endpoint"}),
        "no-store",
    )
}

pub fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method_not_allowed", "error_description": "this endpoint does not accept that HTTP method"}),
        "no-store",
    )
}
