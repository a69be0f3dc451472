//! Request ids: taken from `x-request-id` when it is a sane value, generated otherwise; set on
//! the response and on the tracing span of every log line of the request. Trace ids: the
//! OpenTelemetry trace of the request (a random one when spans are not exported), in every log
//! line of the request and, through [`current_trace_id`], in error bodies.

use std::sync::Arc;
use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The id of the request being served, available to handlers as request data.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The trace id of the request being served (32 lowercase hex digits), as request data.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

tokio::task_local! {
    static TRACE_ID: String;
}

/// The trace id of the request the current task is serving, `None` outside a request (or in
/// a task spawned from it). With OTLP export on it is the id the collector shows; without,
/// a random id that is still in every log line of the request. Error bodies carry it
/// (`trace_id` in RFC 6749 JSON errors, `traceId` in the account API) so a report can be
/// matched with the logs.
pub fn current_trace_id() -> Option<String> {
    TRACE_ID.try_with(Clone::clone).ok()
}

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// `access`: whether to log a line for every request served (`log.access`).
pub async fn request_id<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    access: bool,
) -> Result<Response> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Only the path is logged: query strings carry codes and tokens.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        trace_id = tracing::field::Empty,
    );
    // With OTLP export on, log lines carry the trace id the collector shows.
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let otel = span.context().span().span_context().trace_id();
        if otel == opentelemetry::trace::TraceId::INVALID {
            format!("{:032x}", rand::random::<u128>())
        } else {
            otel.to_string()
        }
    };
    span.record("trace_id", tracing::field::display(&trace_id));
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let served = async move {
        let started = Instant::now();
        let mut resp = match next.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        let status = resp.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, elapsed_ms, "request failed");
        } else if access {
            tracing::info!(status, elapsed_ms, "request served");
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(HEADER, value);
        }
        Ok(resp)
    }
    .instrument(span);
    TRACE_ID.scope(trace_id, served).await
}
