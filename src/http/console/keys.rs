//! `/console/keys`: the signing keys (next, active, retired), rotation now, and the revocation
//! of a retired key after a confirmation. The key manager decides; this page only asks it.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::auth::viewer;
use super::{
    change_form, done, outage, page, path_segment, problem, query, segment, when, Chrome,
    ConfirmPage,
};
use crate::app::AppState;
use crate::store::KeyState;

pub struct KeyRow {
    pub kid: String,
    pub kid_path: String,
    pub alg: String,
    pub state: &'static str,
    pub created: String,
    pub activated: String,
    pub retired: String,
    pub published: bool,
    pub revocable: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    rotation: Vec<super::dashboard::KeyLine>,
}

#[handler]
pub async fn list(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let notice = match query(req).get("done") {
        Some("rotated") => Some(
            "Keys rotated: the next keys sign now, the old ones stay published until they retire."
                .to_string(),
        ),
        Some("revoked") => Some(
            "Key revoked: it left the JWKS, and tokens it signed no longer verify here."
                .to_string(),
        ),
        _ => None,
    };
    let ring = state.keys.ring();
    let mut keys: Vec<KeyRow> = ring
        .summary()
        .iter()
        .map(|k| KeyRow {
            kid: k.kid.clone(),
            kid_path: path_segment(&k.kid),
            alg: k.alg.clone(),
            state: k.state.as_str(),
            created: when(k.created_at),
            activated: k.activated_at.map(when).unwrap_or_default(),
            retired: k.retired_at.map(when).unwrap_or_default(),
            published: k.published,
            revocable: k.state == KeyState::Retired,
        })
        .collect();
    let order = |s: &str| match s {
        "active" => 0,
        "next" => 1,
        _ => 2,
    };
    keys.sort_by(|a, b| (order(a.state), &a.alg).cmp(&(order(b.state), &b.alg)));
    let body = KeysPage {
        chrome: Chrome::new(state, &op, "keys").with_notice(notice),
        keys,
        rotation: super::dashboard::key_status(
            ring.summary(),
            state.settings.keys.rotate_every_secs,
            state.clock.now(),
        ),
    };
    page(StatusCode::OK, &op, &body)
}

/// `POST /console/keys/rotate`: every algorithm moves on to its next key now.
#[handler]
pub async fn rotate(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, _) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match state.keys.rotate_by(Some(&op.user.id.to_string())).await {
        Ok(_) => {
            crate::app::announce_keys_changed(state).await;
            done(state, "/console/keys?done=rotated")
        }
        Err(e) => outage(state, &op, "keys", &e),
    }
}

#[handler]
pub async fn confirm_revoke(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let kid = segment(req, "kid");
    let ring = state.keys.ring();
    let Some(key) = ring.summary().iter().find(|k| k.kid == kid) else {
        return problem(
            state,
            &op,
            "keys",
            StatusCode::NOT_FOUND,
            "No such key",
            "That key does not exist (any more).",
            "/console/keys",
        );
    };
    let body = ConfirmPage {
        chrome: Chrome::new(state, &op, "keys"),
        title: format!("Revoke key {}?", key.kid),
        message: format!(
            "The {} key {} leaves the JWKS at once and every token it signed stops verifying. \
             Revoke a key only when it may have leaked. This cannot be undone.",
            key.alg, key.kid
        ),
        action: format!("/console/keys/{}/revoke", path_segment(&key.kid)),
        button: "Revoke this key".into(),
        cancel: "/console/keys".into(),
    };
    page(StatusCode::OK, &op, &body)
}

#[handler]
pub async fn revoke(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, _) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let actor = op.user.id.to_string();
    match state
        .keys
        .revoke_by(&segment(req, "kid"), Some(&actor))
        .await
    {
        Ok(true) => {
            crate::app::announce_keys_changed(state).await;
            done(state, "/console/keys?done=revoked")
        }
        Ok(false) => problem(
            state,
            &op,
            "keys",
            StatusCode::NOT_FOUND,
            "No such key",
            "That key does not exist (any more).",
            "/console/keys",
        ),
        Err(e) => outage(state, &op, "keys", &e),
    }
}
