//! `/end_session`: OpenID Connect RP-Initiated Logout 1.0.

use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde_json::Value;
use url::Url;

use crate::app::AppState;
use crate::http::pages::{error_page, html, LogoutPage, MessagePage};
use crate::http::{read_form, session};
use crate::protocol::params::Params;
use crate::protocol::redirect_uri::{matches_registered, RedirectMatching};
use crate::store::Client;

/// What a logout request asked for, once checked.
struct Checked {
    client: Option<Client>,
    /// §3: only a URI registered for the client is a place to return to.
    redirect: Option<Url>,
    hint_sub: Option<String>,
    hint_sid: Option<String>,
}

/// RP-Initiated Logout §2: `id_token_hint`, `client_id`, `post_logout_redirect_uri`, `state`.
/// A hint we did not issue, or a redirect URI not registered for the client, stops at a page.
async fn check(state: &AppState, params: &Params) -> Result<Checked, String> {
    let mut hint_sub = None;
    let mut hint_sid = None;
    let mut hint_aud = None;
    if let Some(hint) = params.get("id_token_hint") {
        // §2: the OP need not care whether the hint has expired.
        let (payload, _, _) = state
            .keys
            .ring()
            .verify(hint)
            .map_err(|_| "The id_token_hint is not an ID token issued here.".to_string())?;
        let claims = payload.claims_set();
        if claims.get("iss").and_then(Value::as_str) != Some(state.settings.issuer.as_str()) {
            return Err("The id_token_hint was issued by someone else.".into());
        }
        hint_sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string);
        hint_sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        hint_aud = match claims.get("aud") {
            Some(Value::String(a)) => Some(a.clone()),
            Some(Value::Array(list)) => list.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
    }
    let client_id = match (params.get("client_id"), hint_aud.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return Err("client_id does not match the id_token_hint.".into())
        }
        (Some(a), _) => Some(a.to_string()),
        (None, b) => b.map(str::to_string),
    };
    let client = match &client_id {
        Some(id) => Some(
            state
                .clients
                .get(id)
                .await
                .map_err(|_| "Please try again in a moment.".to_string())?
                .ok_or_else(|| {
                    "The application that sent you here is not registered.".to_string()
                })?,
        ),
        None => None,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = client.as_ref().is_some_and(|c| {
                // RP-Initiated Logout §2: a registered URI; compared exactly for every client kind
                // (RFC 9700 §4.1.3): no port variation after logout.
                c.post_logout_redirect_uris
                    .iter()
                    .any(|r| matches_registered(RedirectMatching::Exact, r, uri))
            });
            if !registered {
                return Err("The address to return to after signing out is not registered for this application.".into());
            }
            let mut url =
                Url::parse(uri).map_err(|_| "Bad post_logout_redirect_uri.".to_string())?;
            if let Some(s) = params.get("state") {
                url.query_pairs_mut().append_pair("state", s);
            }
            Some(url)
        }
    };
    Ok(Checked {
        client,
        redirect,
        hint_sub,
        hint_sid,
    })
}

fn finish(state: &AppState, checked: &Checked, cookies: Vec<String>) -> Response {
    match &checked.redirect {
        Some(url) => {
            let mut b = Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header("location", url.as_str())
                .header("cache-control", "no-store");
            for c in cookies {
                b = b.header("set-cookie", c);
            }
            b.finish()
        }
        None => {
            let page = MessagePage {
                brand: (&state.settings.branding).into(),
                title: "You are signed out".into(),
                message: "You can close this window.".into(),
            };
            html(StatusCode::OK, &page, &cookies)
        }
    }
}

/// `GET|POST /end_session`. Without a hint that names the signed-in user, the user confirms
/// first (§2: otherwise any site could sign users out).
#[handler]
pub async fn end_session(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let is_post = req.method() == Method::POST;
    let params = if is_post {
        read_form(req, body).await
    } else {
        Params::parse(req.uri().query().unwrap_or("").as_bytes()).map_err(|e| e.to_string())
    };
    let params = match params {
        Ok(p) => p,
        Err(m) => {
            return error_page(
                state,
                req,
                StatusCode::BAD_REQUEST,
                "Invalid sign-out request",
                &m,
            )
        }
    };
    let checked = match check(state, &params).await {
        Ok(c) => c,
        Err(m) => {
            return error_page(
                state,
                req,
                StatusCode::BAD_REQUEST,
                "Invalid sign-out request",
                &m,
            )
        }
    };
    let Some((current, user)) = session::current(state, req).await else {
        // Already signed out: nothing to end.
        return finish(state, &checked, vec![session::clear_session_cookie(state)]);
    };
    let confirmed = is_post
        && params.get("decision") == Some("logout")
        && session::csrf_ok(state, req, params.get("csrf"));
    let hint_matches = checked.hint_sub.as_deref() == Some(user.id.to_string().as_str())
        && checked
            .hint_sid
            .as_deref()
            .is_none_or(|sid| sid == current.sid);
    if !(confirmed || hint_matches) {
        let (csrf, cookie) = session::csrf_token(state, req);
        let keep = [
            "id_token_hint",
            "client_id",
            "post_logout_redirect_uri",
            "state",
            "ui_locales",
        ];
        let page = LogoutPage {
            brand: (&state.settings.branding).into(),
            csrf,
            client_name: checked.client.as_ref().map(|c| c.name.clone()),
            fields: keep
                .iter()
                .filter_map(|k| params.get(k).map(|v| (k.to_string(), v.to_string())))
                .collect(),
        };
        return html(
            StatusCode::OK,
            &page,
            &cookie.into_iter().collect::<Vec<_>>(),
        );
    }
    state
        .sessions
        .end_session(&current, "rp_initiated_logout")
        .await;
    finish(state, &checked, vec![session::clear_session_cookie(state)])
}
