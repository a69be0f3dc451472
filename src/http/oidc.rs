//! Discovery documents and the JWKS.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Response};

use super::json_response;
use crate::app::AppState;

/// OpenID Connect Discovery 1.0 §4 and RFC 8414 §3 serve the same metadata.
#[handler]
pub fn discovery(state: Data<&AppState>) -> Response {
    json_response(StatusCode::OK, &state.metadata, "public, max-age=300")
}

/// RFC 7517 §5: public members only, one `kid` per key. The cache lifetime is shorter than
/// the time a rotated key stays published, so verifiers always find the key they need.
#[handler]
pub fn jwks(state: Data<&AppState>) -> Response {
    let ring = state.keys.ring();
    json_response(
        StatusCode::OK,
        ring.jwks(),
        &format!("public, max-age={}", state.settings.keys.jwks_max_age_secs),
    )
}
