//! `/console`: the dashboard. Counts, sign-ins and failures over the last 24 hours from the
//! audit log, the signing keys' rotation status and the latest audit events. Reads only.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Request, Response};

use super::audit::{event_lines, EventLine};
use super::auth::viewer;
use super::{day, outage, page, when, Chrome};
use crate::app::AppState;
use crate::keys::KeySummary;
use crate::store::{AuditQuery, KeyState};

/// Audit kinds of sign-ins that worked, and of those that did not (password or second
/// factor wrong, throttled, unverified address).
const SIGN_INS: [&str; 1] = ["login.succeeded"];
const FAILURES: [&str; 4] = [
    "login.failed",
    "login.throttled",
    "login.unverified",
    "mfa.failed",
];

pub struct KeyLine {
    pub alg: String,
    pub kid: String,
    pub since: String,
    pub next_rotation: String,
    /// The same two, as days (the dashboard's narrow table).
    pub since_day: String,
    pub next_day: String,
    pub overdue: bool,
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    users: u64,
    clients: u64,
    live_sessions: u64,
    sign_ins: u64,
    failures: u64,
    keys: Vec<KeyLine>,
    rotation: String,
    recent: Vec<EventLine>,
}

/// One line per algorithm: its active key and when the schedule moves it on.
pub fn key_status(keys: &[KeySummary], every_secs: u64, now: i64) -> Vec<KeyLine> {
    keys.iter()
        .filter(|k| k.state == KeyState::Active)
        .map(|k| {
            let since = k.activated_at.unwrap_or(k.created_at);
            let due = since + every_secs as i64;
            let manual = every_secs == 0;
            KeyLine {
                alg: k.alg.clone(),
                kid: k.kid.clone(),
                since: when(since),
                next_rotation: if manual {
                    "manual only".into()
                } else {
                    when(due)
                },
                since_day: day(since),
                next_day: if manual {
                    "manual only".into()
                } else {
                    day(due)
                },
                overdue: every_secs > 0 && due < now,
            }
        })
        .collect()
}

#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let now = state.clock.now();
    let counts = match state
        .store
        .admin_counts(now, state.sessions.idle_since(now))
        .await
    {
        Ok(c) => c,
        Err(e) => return outage(state, &op, "dashboard", &e),
    };
    let kinds: Vec<&str> = SIGN_INS.iter().chain(FAILURES.iter()).copied().collect();
    let tally = match state.store.count_audit(&kinds, now - 86_400).await {
        Ok(t) => t,
        Err(e) => return outage(state, &op, "dashboard", &e),
    };
    let sum = |of: &[&str]| -> u64 {
        tally
            .iter()
            .filter(|(kind, _)| of.contains(&kind.as_str()))
            .map(|(_, n)| *n)
            .sum()
    };
    let recent = match state
        .store
        .query_audit(&AuditQuery {
            limit: 8,
            ..AuditQuery::default()
        })
        .await
    {
        Ok(events) => event_lines(&events),
        Err(e) => return outage(state, &op, "dashboard", &e),
    };
    let every = state.settings.keys.rotate_every_secs;
    let ring = state.keys.ring();
    let page_body = DashboardPage {
        chrome: Chrome::new(state, &op, "dashboard"),
        users: counts.users,
        clients: counts.clients,
        live_sessions: counts.live_sessions,
        sign_ins: sum(&SIGN_INS),
        failures: sum(&FAILURES),
        keys: key_status(ring.summary(), every, now),
        rotation: if every == 0 {
            "Scheduled rotation is off (keys.rotate_every_secs = 0).".into()
        } else {
            format!(
                "Each key signs for {} days, then the next one takes over.",
                every / 86_400
            )
        },
        recent,
    };
    page(StatusCode::OK, &op, &page_body)
}
