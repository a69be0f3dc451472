//! `/account/sessions`: where the person is signed in (this device marked), signing out one
//! session or every other one, through the session service (which also ends what each session
//! took with it: refresh tokens, access tokens, relying parties' sessions).

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::{brand, frame, outage, posted, signed_in, when, Frame, Outcome};
use crate::app::AppState;
use crate::http::pages::{html, Brand, MessagePage};
use crate::http::session;
use crate::store::{BrowserSession, User};

pub const PATH: &str = "/account/sessions";

pub struct SessionLine {
    pub sid: String,
    pub device: String,
    pub ip: Option<String>,
    pub signed_in: String,
    pub last_seen: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "account/sessions.html")]
struct SessionsPage {
    brand: Brand,
    section: &'static str,
    frame: Frame,
    sessions: Vec<SessionLine>,
    others: usize,
}

async fn page(
    state: &AppState,
    req: &Request,
    current: &BrowserSession,
    user: &User,
    outcome: Outcome,
) -> Response {
    let sessions = match state.sessions.user_sessions(user.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "could not list a user's sessions");
            return outage(state, req);
        }
    };
    let status = outcome.status();
    let (frame, cookies) = frame(state, req, "Your sessions", user, outcome);
    let mut lines: Vec<SessionLine> = sessions
        .iter()
        .map(|s| SessionLine {
            sid: s.sid.clone(),
            device: device(s.user_agent.as_deref()),
            ip: s.ip.clone(),
            signed_in: when(s.auth_time),
            last_seen: when(s.last_seen_at),
            current: s.id_hash == current.id_hash,
        })
        .collect();
    // This device first, the others most recently active first (the store's order).
    lines.sort_by_key(|l| !l.current);
    let others = lines.iter().filter(|l| !l.current).count();
    let view = SessionsPage {
        brand: brand(state),
        section: "sessions",
        frame,
        sessions: lines,
        others,
    };
    html(status, &view, &cookies)
}

/// `GET /account/sessions`.
#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    match signed_in(&state, req, PATH).await {
        Ok((session, user)) => page(&state, req, &session, &user, Outcome::None).await,
        Err(resp) => resp,
    }
}

/// `POST /account/sessions/end`: signs out one of the person's sessions (`sid`); this one too,
/// which then clears the cookie.
#[handler]
pub async fn end(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (form, current, user) = match posted(state, req, body, PATH).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let sid = form.get("sid").unwrap_or("");
    let actor = user.id.to_string();
    match state
        .sessions
        .end_session_by_sid(sid, Some(user.id), &actor, "account_page")
        .await
    {
        Ok(true) if sid == current.sid => {
            let view = MessagePage {
                brand: brand(state),
                title: "You are signed out".into(),
                message: "This device is signed out. Your other sessions go on.".into(),
            };
            html(
                StatusCode::OK,
                &view,
                &[session::clear_session_cookie(state)],
            )
        }
        Ok(true) => {
            let done = Outcome::Done("That session is signed out.".into());
            page(state, req, &current, &user, done).await
        }
        Ok(false) => {
            let refused = Outcome::Refused(
                StatusCode::NOT_FOUND,
                "That session has already ended.".into(),
            );
            page(state, req, &current, &user, refused).await
        }
        Err(e) => {
            tracing::error!(error = %e, "could not end a session");
            outage(state, req)
        }
    }
}

/// `POST /account/sessions/end-others`: signs out every session but this one.
#[handler]
pub async fn end_others(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (_, current, user) = match posted(state, req, body, PATH).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let actor = user.id.to_string();
    match state
        .sessions
        .end_other_sessions(user.id, Some(&current.id_hash), &actor, "account_page")
        .await
    {
        Ok(n) => {
            let done = Outcome::Done(match n {
                1 => "1 other session is signed out.".to_string(),
                n => format!("{n} other sessions are signed out."),
            });
            page(state, req, &current, &user, done).await
        }
        Err(e) => {
            tracing::error!(error = %e, "could not end a user's other sessions");
            outage(state, req)
        }
    }
}

/// A person's words for a user agent: "Firefox on Linux". Only the common families; anything
/// else is shown as given (shortened), so nothing is hidden from its owner.
fn device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|u| !u.trim().is_empty()) else {
        return "Unknown device".into();
    };
    // Order matters: Edge and Opera say "Chrome", Chrome says "Safari".
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
    ]
    .iter()
    .find(|(token, _)| ua.contains(token))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(token, _)| ua.contains(token))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => format!("A browser on {s}"),
        (None, None) => ua.chars().take(60).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn user_agents_read_as_browser_and_system() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert_eq!(device(Some(firefox)), "Firefox on Linux");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                    Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";
        assert_eq!(device(Some(edge)), "Edge on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
        assert_eq!(device(Some(iphone)), "Safari on iOS");
        assert_eq!(device(Some("curl/8.5.0")), "curl/8.5.0");
        assert_eq!(device(None), "Unknown device");
    }
}
