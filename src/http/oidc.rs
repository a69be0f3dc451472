//! Discovery documents and the JWKS.

use poem::http::{HeaderValue, Method, StatusCode};
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use uuid::Uuid;

use super::{json_response, read_form};
use crate::app::AppState;
use crate::document::JsonDocument;
use crate::protocol::claims::user_claims;
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::tokens::{check_access_token, AccessClaims};

/// OpenID Connect Discovery 1.0 §4 and RFC 8414 §3 serve the same metadata.
#[handler]
pub fn discovery(req: &Request, state: Data<&AppState>) -> Response {
    const CACHE: HeaderValue = HeaderValue::from_static("public, max-age=300");
    serve_document(req, &state.discovery, CACHE)
}

/// RFC 7517 §5: public members only, one `kid` per key. The cache lifetime is shorter than
/// the time a rotated key stays published, so verifiers always find the key they need.
#[handler]
pub fn jwks(req: &Request, state: Data<&AppState>) -> Response {
    let ring = state.keys.ring();
    serve_document(req, ring.jwks(), state.jwks_cache_control.clone())
}

/// A pre-serialized document, or RFC 9110 §15.4.5's 304 when the caller's copy is current
/// (a 304 carries the `ETag` and `Cache-Control` the 200 would have had).
fn serve_document(req: &Request, doc: &JsonDocument, cache_control: HeaderValue) -> Response {
    let etag = HeaderValue::from_str(doc.etag()).ok();
    let fresh = req
        .headers()
        .get(poem::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| doc.matches_if_none_match(v));
    let mut resp = if fresh {
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .finish()
    } else {
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(doc.body())
    };
    let h = resp.headers_mut();
    h.insert(poem::http::header::CACHE_CONTROL, cache_control);
    if let Some(etag) = etag {
        h.insert(poem::http::header::ETAG, etag);
    }
    resp
}

/// RFC 6750 §3: the error in a `WWW-Authenticate: Bearer` challenge (and a JSON body).
pub(crate) fn bearer_error(error: OAuthError) -> Response {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut resp = json_response(
        status,
        &crate::http::error_body(error.code.as_str(), &error.description),
        "no-store",
    );
    let challenge = format!(
        "Bearer realm=\"portcullis\", error=\"{}\", error_description=\"{}\"",
        error.code.as_str(),
        error.description.replace(['"', '\\'], "")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert("www-authenticate", v);
    }
    resp
}

fn invalid_token(description: &str) -> Response {
    bearer_error(OAuthError::new(ErrorCode::InvalidToken, description))
}

/// Checks a bearer access token: signature, the RFC 9068 §4 claims and the deny-list. A
/// DPoP-bound token is refused (RFC 9449 §7.2: it is not a bearer token).
pub async fn check_bearer(state: &AppState, token: &str) -> Result<AccessClaims, OAuthError> {
    let claims = check_access(state, token).await?;
    if claims.cnf_jkt.is_some() {
        return Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token is DPoP-bound: present it with the DPoP scheme and a proof",
        ));
    }
    Ok(claims)
}

/// Checks an access token of this provider's own audience, bound or not.
pub async fn check_access(state: &AppState, token: &str) -> Result<AccessClaims, OAuthError> {
    let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidToken, d);
    let Ok((payload, header, _)) = state.keys.ring().verify(token) else {
        return Err(invalid("the access token is invalid"));
    };
    let claims = check_access_token(
        header.token_type(),
        &payload,
        &state.settings.issuer,
        Some(state.settings.access_token_audience()),
        state.clock.now(),
    )
    .map_err(|reason| invalid(&format!("the access token is {reason}")))?;
    match state.clients.get(&claims.client_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(invalid(
                "the access token's client was switched off or deleted",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            return Err(OAuthError::server_error());
        }
    }
    match state.deny.is_denied(&claims.jti).await {
        Ok(false) => Ok(claims),
        Ok(true) => Err(invalid("the access token was revoked")),
        Err(e) => {
            tracing::error!(error = %e, "deny-list lookup failed");
            Err(OAuthError::server_error())
        }
    }
}

/// `GET|POST /userinfo` (OIDC Core §5.3). The bearer token comes in the `Authorization`
/// header or, for POST, the form body (RFC 6750 §2.1-2.2), never both (§2).
#[handler]
pub async fn userinfo(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    // RFC 9449 §7.1: a DPoP-bound token comes with the DPoP scheme.
    let mut dpop = false;
    let header = match req.headers().get("authorization").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match v.split_once(' ') {
            Some((scheme, token))
                if (scheme.eq_ignore_ascii_case("bearer")
                    || scheme.eq_ignore_ascii_case("dpop"))
                    && !token.trim().is_empty() =>
            {
                dpop = scheme.eq_ignore_ascii_case("dpop");
                Some(token.trim().to_string())
            }
            _ => return invalid_token(
                "the Authorization header must be: Bearer <access token> or DPoP <access token>",
            ),
        },
        Some(Err(_)) => return invalid_token("the Authorization header is not valid text"),
    };
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let in_body = if req.method() == Method::POST && is_form {
        match read_form(req, body).await {
            Ok(form) => form.get("access_token").map(str::to_string),
            Err(message) => return bearer_error(OAuthError::invalid_request(message)),
        }
    } else {
        None
    };
    let token = match (header, in_body) {
        (Some(_), Some(_)) => {
            return bearer_error(OAuthError::invalid_request(
                "send the access token in one place only",
            ))
        }
        (Some(t), None) | (None, Some(t)) => t,
        // RFC 6750 §3.1 lets a server omit the error code here; we name it so clients can tell.
        (None, None) => return invalid_token("no access token was sent"),
    };

    let claims = if dpop {
        match dpop_claims(state, req, &token).await {
            Ok(c) => c,
            Err(resp) => return *resp,
        }
    } else {
        match check_bearer(state, &token).await {
            Ok(c) => c,
            Err(e) => return bearer_error(e),
        }
    };
    if !claims.scope.contains("openid") {
        return bearer_error(OAuthError::new(
            ErrorCode::InsufficientScope,
            "the access token was not granted the openid scope",
        ));
    }
    let user = match Uuid::parse_str(&claims.sub) {
        Ok(id) => state.store.get_user(id).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(user) = user.filter(|u| !u.disabled && u.deleted_at.is_none()) else {
        return invalid_token("the access token's user no longer exists");
    };
    json_response(
        StatusCode::OK,
        &serde_json::Value::Object(user_claims(&user, &claims.scope)),
        "no-store",
    )
}

/// RFC 9449 §7.1: a DPoP token with a proof of its key (`ath` = the token's hash, `htm` and
/// `htu` of this request).
async fn dpop_claims(
    state: &AppState,
    req: &Request,
    token: &str,
) -> Result<AccessClaims, Box<Response>> {
    use crate::http::dpop::{proof_of, resource_challenge, resource_error};
    let claims = check_access(state, token)
        .await
        .map_err(|e| Box::new(resource_challenge(state, e.code, &e.description)))?;
    let proof = match proof_of(state, req, "/userinfo", Some(token)).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(Box::new(resource_challenge(
                state,
                ErrorCode::InvalidDpopProof,
                "a DPoP token needs a DPoP proof header",
            )))
        }
        Err(failure) => return Err(Box::new(resource_error(state, failure))),
    };
    if claims.cnf_jkt.as_deref() != Some(proof.jkt.as_str()) {
        return Err(Box::new(resource_challenge(
            state,
            ErrorCode::InvalidToken,
            "the access token is not bound to the DPoP proof's key",
        )));
    }
    Ok(claims)
}
