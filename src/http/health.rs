//! Liveness and readiness probes.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Response};
use serde_json::json;

use super::json_response;
use crate::app::AppState;

#[handler]
pub fn live() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}), "no-store")
}

/// Ready when the database answers and, if Redis is configured, Redis answers too.
#[handler]
pub async fn ready(state: Data<&AppState>) -> Response {
    let database = match state.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unreachable".to_string()
        }
    };
    let redis = match &state.redis {
        None => "not configured".to_string(),
        Some(redis) => match redis.ping().await {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: Redis check failed");
                e
            }
        },
    };
    let ready = database == "ok" && (redis == "ok" || redis == "not configured");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": {"database": database, "redis": redis},
        }),
        "no-store",
    )
}
