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

/// Ready (200) when the database answers; `degraded` when a configured Redis does not.
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
    // Without the database nothing works; without Redis the server keeps serving with
    // per-instance rate limits (degraded) and says so.
    let ready = database == "ok";
    let degraded = ready && !(redis == "ok" || redis == "not configured");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "status": if !ready { "unavailable" } else if degraded { "degraded" } else { "ready" },
            "checks": {
                "database": database,
                "redis": redis,
                "rate_limits": state.limiter.mode(),
            },
        }),
        "no-store",
    )
}

/// `GET /metrics` (Prometheus text format 0.0.4).
#[handler]
pub fn metrics(state: Data<&AppState>) -> Response {
    let body = state
        .metrics
        .render(state.limiter.is_degraded(), state.redis.is_some());
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .header("cache-control", "no-store")
        .body(body)
}
