//! CORS for browser clients (SPAs): on the token, userinfo, revocation, introspection, JWKS
//! and discovery endpoints only, and only for the web origins of registered redirect URIs.
//! `/authorize` and the pages never send CORS headers.

use std::sync::Arc;

use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use url::Url;

use crate::app::AppState;

/// The origin (`scheme://host[:port]`) of a web redirect URI, as browsers send it.
fn origin_of(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

async fn allowed(state: &AppState, origin: &str) -> bool {
    match state.store.list_clients().await {
        Ok(clients) => clients
            .iter()
            .flat_map(|c| c.redirect_uris.iter())
            .any(|u| origin_of(u).as_deref() == Some(origin)),
        Err(_) => false,
    }
}

pub async fn cors<E: Endpoint>(next: Arc<E>, req: Request) -> Result<Response> {
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let state = req.data::<AppState>().cloned();
    let ok = match (&origin, &state) {
        (Some(o), Some(s)) => allowed(s, o).await,
        _ => false,
    };
    let preflight = req.method() == Method::OPTIONS;
    if preflight {
        if !ok {
            return Ok(StatusCode::FORBIDDEN.into_response());
        }
        let mut resp = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header("access-control-allow-methods", "GET, POST")
            .header(
                "access-control-allow-headers",
                "Authorization, Content-Type, DPoP",
            )
            .header("access-control-max-age", "600")
            .finish();
        decorate(&mut resp, origin.as_deref());
        return Ok(resp);
    }
    // Errors (405, ...) travel on so the app's error mapping shapes them.
    let mut resp = next.call(req).await?.into_response();
    if ok {
        decorate(&mut resp, origin.as_deref());
    }
    resp.headers_mut()
        .append("vary", HeaderValue::from_static("Origin"));
    Ok(resp)
}

fn decorate(resp: &mut Response, origin: Option<&str>) {
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        resp.headers_mut().insert("access-control-allow-origin", v);
        resp.headers_mut().insert(
            "access-control-expose-headers",
            HeaderValue::from_static("WWW-Authenticate, x-request-id"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://spa.example.com/cb?x=1").as_deref(),
            Some("https://spa.example.com")
        );
        assert_eq!(
            origin_of("http://localhost:3000/cb").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(origin_of("com.example.app:/cb"), None);
    }
}
