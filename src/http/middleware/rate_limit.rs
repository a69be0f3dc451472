//! Rate-limit answers (429 with `Retry-After` and the IETF httpapi `RateLimit-Policy` /
//! `RateLimit` headers) and the default per-IP limit every route inherits.

use std::net::IpAddr;

use poem::http::{HeaderValue, StatusCode};
use poem::{IntoResponse, Request, Response};

use super::client_ip::ClientIp;
use crate::app::AppState;
use crate::http::json_response;
use crate::limiter::{ip_key, Decision, Policy};

/// Adds the rate-limit headers (draft-ietf-httpapi-ratelimit-headers) for a refusal.
pub fn add_headers(resp: &mut Response, name: &str, policy: Policy, d: &Decision) {
    tracing::info!(policy = name, "rate limited");
    let h = resp.headers_mut();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("retry-after", d.retry_after_secs.to_string());
    set(
        "ratelimit-policy",
        format!("\"{name}\";q={};w={}", policy.limit, policy.period_secs),
    );
    set(
        "ratelimit",
        format!(
            "\"{name}\";r={};t={}",
            d.remaining,
            d.reset_secs.max(d.retry_after_secs)
        ),
    );
}

/// A 429 in the RFC 6749 error style (JSON endpoints).
pub fn too_many_json(name: &str, policy: Policy, d: &Decision) -> Response {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &crate::http::error_body(
            "rate_limited",
            &format!("too many requests; retry in {} seconds", d.retry_after_secs),
        ),
        "no-store",
    );
    add_headers(&mut resp, name, policy, d);
    resp
}

/// A 429 page for people.
pub fn too_many_page(
    state: &AppState,
    req: &Request,
    name: &str,
    policy: Policy,
    d: &Decision,
) -> Response {
    let mut resp = crate::http::pages::error_page(
        state,
        req,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "Please wait {} seconds, then try again.",
            d.retry_after_secs
        ),
    );
    add_headers(&mut resp, name, policy, d);
    resp
}

pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ClientIp>().map(|c| c.0)
}

const PAGES: [&str; 10] = [
    "/login",
    "/register",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/consent",
    "/end_session",
    "/static/portcullis.css",
    "/device",
    "/device/confirm",
];

/// The default policy, per client IP, for every route but the health probes: the refusal to
/// answer with, or `None` when the request may go on. Called by the edge middleware
/// ([`super::guard::guard`]) after the client IP is known.
pub async fn default_limit(state: &AppState, req: &Request) -> Option<Response> {
    let path = req.uri().path();
    let ip = client_ip(req)?;
    if !state.settings.rate_limits.enabled || path.starts_with("/health/") {
        return None;
    }
    let limits = &state.settings.rate_limits;
    let policy = limits.default;
    let key = format!("ip:{}", ip_key(ip, limits.ipv6_prefix));
    let d = state.limiter.hit(&key, policy).await;
    if d.allowed {
        return None;
    }
    if path == "/authorize" {
        return Some(
            crate::http::oauth::rate_limited_authorize(state, req, "default", policy, &d).await,
        );
    }
    // The second-factor and account pages are pages too; the passkey options fetch is JSON.
    let page = PAGES.contains(&path)
        || (path.starts_with("/login/") && path != "/login/passkey/options")
        || path.starts_with("/account/");
    if page {
        return Some(too_many_page(state, req, "default", policy, &d));
    }
    if crate::http::api::is_api_path(path) {
        // The account API's error shape.
        let trace = crate::http::api::Trace::of(req);
        let e = crate::accounts::service::AccountError::Throttled {
            name: "default",
            policy,
            decision: d,
        };
        let mut resp = crate::http::api::ApiError::from_account(e, &trace).into_response();
        add_headers(&mut resp, "default", policy, &d);
        return Some(resp);
    }
    Some(too_many_json("default", policy, &d))
}
