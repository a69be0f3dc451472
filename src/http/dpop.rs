//! DPoP over HTTP (RFC 9449): reads the `DPoP` header, asks the guard, and shapes refusals —
//! RFC 6749 JSON at the token endpoint (§5), `WWW-Authenticate: DPoP` at resources (§7.1),
//! with a fresh `DPoP-Nonce` when the client must retry with one (§8, §9).

use poem::http::{HeaderValue, StatusCode};
use poem::{Request, Response};

use crate::app::AppState;
use crate::dpop::DpopFailure;
use crate::http::{error_body, json_response, oauth_error_json};
use crate::protocol::discovery::endpoint;
use crate::protocol::dpop::Proof;
use crate::protocol::error::{ErrorCode, OAuthError};

/// The request's one `DPoP` header (RFC 9449 §4.3 step 1: more than one is an error).
fn header(req: &Request) -> Result<Option<&str>, DpopFailure> {
    let mut all = req.headers().get_all("dpop").iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(DpopFailure::Invalid("send exactly one DPoP header".into()));
    }
    match first.map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if !v.trim().is_empty() => Ok(Some(v.trim())),
        Some(_) => Err(DpopFailure::Invalid("the DPoP header is not a JWT".into())),
    }
}

/// Checks the proof of a request to `path` (the `htu` is the issuer's URL of it).
pub async fn proof_of(
    state: &AppState,
    req: &Request,
    path: &str,
    access_token: Option<&str>,
) -> Result<Option<Proof>, DpopFailure> {
    let Some(proof) = header(req)? else {
        return Ok(None);
    };
    let url = endpoint(&state.settings.issuer, path);
    state
        .dpop
        .check(
            proof,
            req.method().as_str(),
            url.as_str(),
            access_token,
            state.clock.now(),
        )
        .await
        .map(Some)
}

fn with_nonce(state: &AppState, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&state.dpop.nonce(state.clock.now())) {
        resp.headers_mut().insert("dpop-nonce", v);
    }
    resp
}

/// RFC 9449 §5 and §8: the token endpoint's answer to a refused proof.
pub fn token_endpoint_error(state: &AppState, failure: DpopFailure) -> Response {
    match failure {
        DpopFailure::Invalid(message) => {
            oauth_error_json(&OAuthError::new(ErrorCode::InvalidDpopProof, message))
        }
        DpopFailure::UseNonce => with_nonce(
            state,
            oauth_error_json(&OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof must carry the nonce sent in the DPoP-Nonce header",
            )),
        ),
        DpopFailure::Unavailable => oauth_error_json(&OAuthError::server_error()),
    }
}

/// RFC 9449 §7.1: a `WWW-Authenticate: DPoP` challenge (with the accepted `algs`) and a
/// JSON body, for a protected resource such as userinfo.
pub fn resource_challenge(state: &AppState, code: ErrorCode, description: &str) -> Response {
    let status = match code {
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut resp = json_response(status, &error_body(code.as_str(), description), "no-store");
    let challenge = format!(
        "DPoP error=\"{}\", error_description=\"{}\", algs=\"{}\"",
        code.as_str(),
        description.replace(['"', '\\'], ""),
        state.dpop.algs().join(" ")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert("www-authenticate", v);
    }
    if code == ErrorCode::UseDpopNonce {
        return with_nonce(state, resp);
    }
    resp
}

/// [`resource_challenge`] for a refused proof.
pub fn resource_error(state: &AppState, failure: DpopFailure) -> Response {
    match failure {
        DpopFailure::Invalid(message) => {
            resource_challenge(state, ErrorCode::InvalidDpopProof, &message)
        }
        DpopFailure::UseNonce => resource_challenge(
            state,
            ErrorCode::UseDpopNonce,
            "the DPoP proof must carry the nonce sent in the DPoP-Nonce header",
        ),
        DpopFailure::Unavailable => resource_challenge(
            state,
            ErrorCode::ServerError,
            "the server could not complete the request; try again",
        ),
    }
}
