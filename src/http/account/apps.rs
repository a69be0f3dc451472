//! `/account/apps`: the applications the person allowed (consents), what each may do in
//! words, when it was last used, and revoking one, through the session service (which revokes
//! that client's refresh tokens for the person in the same transaction).

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::{brand, frame, outage, posted, signed_in, when, Frame, Outcome};
use crate::app::AppState;
use crate::http::pages::{html, Brand, ScopeLine};
use crate::protocol::claims::describe_scope;
use crate::store::User;

pub const PATH: &str = "/account/apps";

pub struct AppLine {
    pub id: String,
    pub client_name: String,
    pub scopes: Vec<ScopeLine>,
    pub allowed: String,
    pub last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "account/apps.html")]
struct AppsPage {
    brand: Brand,
    section: &'static str,
    frame: Frame,
    apps: Vec<AppLine>,
}

async fn page(state: &AppState, req: &Request, user: &User, outcome: Outcome) -> Response {
    let consents = match state.sessions.consents(user.id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "could not list a user's consents");
            return outage(state, req);
        }
    };
    let status = outcome.status();
    let (frame, cookies) = frame(state, req, "Connected apps", user, outcome);
    let apps = consents
        .into_iter()
        .map(|c| AppLine {
            id: c.id.to_string(),
            scopes: c
                .scope
                .split_ascii_whitespace()
                .map(|s| ScopeLine {
                    name: s.to_string(),
                    description: describe_scope(s),
                })
                .collect(),
            client_name: c.client_name,
            allowed: when(c.created_at),
            last_used: c.last_used_at.map(when),
        })
        .collect();
    let view = AppsPage {
        brand: brand(state),
        section: "apps",
        frame,
        apps,
    };
    html(status, &view, &cookies)
}

/// `GET /account/apps`.
#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    match signed_in(&state, req, PATH).await {
        Ok((_, user)) => page(&state, req, &user, Outcome::None).await,
        Err(resp) => resp,
    }
}

/// `POST /account/apps/revoke`: withdraws one of the person's consents (`id`).
#[handler]
pub async fn revoke(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, _, user) = match posted(state, req, body, PATH).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let gone = || {
        Outcome::Refused(
            StatusCode::NOT_FOUND,
            "That app has no access to your account any more.".into(),
        )
    };
    let Some(id) = form.get("id").and_then(|v| uuid::Uuid::parse_str(v).ok()) else {
        return page(state, req, &user, gone()).await;
    };
    let actor = user.id.to_string();
    match state
        .sessions
        .revoke_consent(id, Some(user.id), &actor)
        .await
    {
        Ok(true) => {
            let done = Outcome::Done(
                "Access revoked. The app is signed out and must ask you again.".into(),
            );
            page(state, req, &user, done).await
        }
        Ok(false) => page(state, req, &user, gone()).await,
        Err(e) => {
            tracing::error!(error = %e, "could not revoke a consent");
            outage(state, req)
        }
    }
}
