//! `/console/audit`: the audit log, newest first, filtered by kind, user and time, a page at
//! a time. Reads only; what an event says comes from whoever recorded it.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Request, Response};

use super::auth::viewer;
use super::{
    outage, page, page_number, parse_time, path_segment, query, when, Chrome, Pager, PAGE_SIZE,
};
use crate::app::AppState;
use crate::store::{AuditEvent, AuditQuery, User};

/// An audit event as a table row shows it.
pub struct EventLine {
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub actor_link: Option<String>,
    pub subject: String,
    pub subject_link: Option<String>,
    pub client: String,
    pub client_link: Option<String>,
    pub ip: String,
    pub detail: String,
}

/// A link to the user page when `who` is a user id.
fn user_link(who: &str) -> Option<String> {
    uuid::Uuid::parse_str(who)
        .ok()
        .map(|id| format!("/console/users/{id}"))
}

pub fn event_lines(events: &[AuditEvent]) -> Vec<EventLine> {
    events
        .iter()
        .map(|e| {
            let actor = e.actor.clone().unwrap_or_default();
            let subject = e.subject.clone().unwrap_or_default();
            let client = e.client_id.clone().unwrap_or_default();
            let detail = match &e.detail {
                serde_json::Value::Object(map) if map.is_empty() => String::new(),
                other => other.to_string(),
            };
            EventLine {
                at: when(e.at),
                kind: e.kind.clone(),
                actor_link: user_link(&actor),
                actor,
                subject_link: user_link(&subject),
                subject,
                client_link: (!client.is_empty())
                    .then(|| format!("/console/clients/{}", path_segment(&client))),
                client,
                ip: e.ip.clone().unwrap_or_default(),
                detail,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    kind: String,
    user: String,
    since: String,
    until: String,
    events: Vec<EventLine>,
    pager: Pager,
}

/// `GET /console/audit?kind=&user=&since=&until=&page=`. `user` is a user id or an email
/// address (then looked up first: one more query); times are `YYYY-MM-DD[THH:MM]`, UTC.
#[handler]
pub async fn list(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let params = query(req);
    let text = |name: &str| params.get(name).unwrap_or("").trim().to_string();
    let (kind, user, since, until) = (text("kind"), text("user"), text("since"), text("until"));
    let page_no = page_number(&params);
    let mut problems = Vec::new();
    let user_filter = if user.is_empty() {
        None
    } else if user.contains('@') {
        match state
            .store
            .find_user_by_email(&User::email_key(&user))
            .await
        {
            Ok(Some(u)) => Some(u.id.to_string()),
            Ok(None) => {
                problems.push(format!("No user has the address {user}."));
                Some(String::new())
            }
            Err(e) => return outage(state, &op, "audit", &e),
        }
    } else {
        Some(user.clone())
    };
    let mut time = |raw: &str, label: &str| {
        if raw.is_empty() {
            return None;
        }
        let parsed = parse_time(raw);
        if parsed.is_none() {
            problems.push(format!(
                "{label} must be a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM), UTC."
            ));
        }
        parsed
    };
    let since_at = time(&since, "From");
    let until_at = time(&until, "Until");
    let q = AuditQuery {
        user: user_filter,
        kind: (!kind.is_empty()).then(|| kind.clone()),
        since: since_at,
        until: until_at,
        offset: (page_no - 1) * u64::from(PAGE_SIZE),
        limit: PAGE_SIZE + 1,
    };
    let mut events = match state.store.query_audit(&q).await {
        Ok(events) => events,
        Err(e) => return outage(state, &op, "audit", &e),
    };
    let more = events.len() > PAGE_SIZE as usize;
    events.truncate(PAGE_SIZE as usize);
    let keep = [
        ("kind", kind.as_str()),
        ("user", user.as_str()),
        ("since", since.as_str()),
        ("until", until.as_str()),
    ];
    let pager = Pager::new("/console/audit", &keep, page_no, events.len(), None, more);
    let body = AuditPage {
        chrome: Chrome::new(state, &op, "audit")
            .with_error((!problems.is_empty()).then(|| problems.join(" "))),
        events: event_lines(&events),
        kind,
        user,
        since,
        until,
        pager,
    };
    page(StatusCode::OK, &op, &body)
}
