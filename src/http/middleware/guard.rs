//! The edge of every request, as one middleware (each layer of poem middleware is one more
//! future to build and move per request): request limits (body, URI and header sizes; a
//! per-request timeout), the client IP, the default rate limit, metrics, and the security
//! headers every response carries.

use std::sync::Arc;
use std::time::Duration;

use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response, Result};

use crate::app::AppState;
use crate::http::json_response;
use crate::metrics::Route;

/// A refusal in the error format of the endpoint asked: RFC 6749 JSON, or the account API's
/// `ErrorResponse`.
fn refuse_for(req: &Request) -> impl Fn(StatusCode, &str, &str) -> Response {
    let api = crate::http::api::is_api_path(req.uri().path());
    let trace = crate::http::api::Trace::of(req);
    move |status, error, description| {
        if api {
            crate::http::api::error_response(status, error, description, &trace)
        } else {
            json_response(
                status,
                &crate::http::error_body(error, description),
                "no-store",
            )
        }
    }
}

pub async fn guard<E: Endpoint>(next: Arc<E>, mut req: Request) -> Result<Response> {
    let Some(state) = req.data::<AppState>().cloned() else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    let limits = &state.settings.http;
    let refuse = refuse_for(&req);
    // The URI as received (origin form, or absolute form through a proxy), without copying it.
    let uri = req.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len() + 2)
        + uri.scheme_str().map_or(0, |s| s.len() + 1);
    if uri_len > limits.max_uri_bytes {
        return Ok(refuse(
            StatusCode::URI_TOO_LONG,
            "invalid_request",
            "the request URI is too long",
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Ok(refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            "the request headers are too large",
        ));
    }
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Ok(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        ));
    }
    let route = Route::of(req.uri().path());
    let started = std::time::Instant::now();
    let is_docs = req.uri().path() == "/docs";
    let timeout = Duration::from_secs(limits.request_timeout_secs);
    super::client_ip::attach(&mut req, &state.trusted_proxies);
    let served = async {
        if let Some(refusal) = super::rate_limit::default_limit(&state, &req).await {
            return Ok(refusal);
        }
        next.call(req).await.map(IntoResponse::into_response)
    };
    let mut resp = match tokio::time::timeout(timeout, served).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            tracing::error!("request timed out");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the request took too long; try again",
            )
        }
    };
    let status = resp.status();
    let m = &state.metrics;
    m.http_request(route, status.as_u16(), started.elapsed());
    if status == StatusCode::TOO_MANY_REQUESTS {
        m.count("portcullis_rate_limit_rejections_total", &[]);
    }
    secure_headers(&state, &mut resp, is_docs);
    Ok(resp)
}

/// Swagger UI (`/docs`) is one page of inline script and style from the poem-openapi crate;
/// it gets its own policy, still without any outside origin.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

fn secure_headers(state: &AppState, resp: &mut Response, is_docs: bool) {
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if state.settings.is_https() {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    let is_html = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    let policy = if is_html && is_docs {
        HeaderValue::from_static(DOCS_CSP)
    } else if is_html {
        state.page_csp.clone()
    } else {
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")
    };
    h.insert("content-security-policy", policy);
    h.remove("server");
}

/// The pages' Content-Security-Policy: no inline script but the form_post page's one line and
/// no inline style but the branding colour, each allowed by its hash; our own passkey script
/// from `/static/webauthn.js` (`'self'`), which fetches passwordless options from us alone.
pub fn page_csp(primary_color: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let hash = |s: &str| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(s.as_bytes())));
    let style = format!(":root{{--primary: {primary_color};}}");
    format!(
        "default-src 'none'; script-src 'self' {}; style-src 'self' {}; img-src 'self' https:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        hash(crate::http::pages::FORM_POST_SCRIPT),
        hash(&style)
    )
}
