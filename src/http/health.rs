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

/// `GET /metrics` on the management listener (Prometheus text format 0.0.4).
#[handler]
pub fn metrics(state: Data<&AppState>) -> Response {
    let (open, idle) = state.store.pool_stats();
    let gauges = [
        (
            "portcullis_rate_limit_degraded",
            "1 while Redis is configured but unreachable and limits are per instance.",
            f64::from(u8::from(state.limiter.is_degraded())),
        ),
        (
            "portcullis_redis_up",
            "1 when Redis is configured and answering (as last seen by the limiter).",
            f64::from(u8::from(
                state.redis.is_some() && !state.limiter.is_degraded(),
            )),
        ),
        (
            "portcullis_db_pool_connections",
            "Open database connections.",
            open as f64,
        ),
        (
            "portcullis_db_pool_idle",
            "Idle database connections.",
            idle as f64,
        ),
        (
            "portcullis_password_hash_in_flight",
            "argon2id hashes queued or running on the blocking pool.",
            state.passwords.in_flight() as f64,
        ),
    ];
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .header("cache-control", "no-store")
        .body(state.metrics.render(&gauges))
}
