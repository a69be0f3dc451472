//! The operators' console at `/console`: server-rendered pages on the services the admin API
//! and the CLI use (clients, accounts, MFA, sessions, keys, audit), never a rule of their own.
//! Every page is one round trip, works without JavaScript, and every form carries CSRF.
//!
//! Queries per page, besides the two of every request (the browser's session and its user;
//! the console token itself is checked against keys in memory and the deny-list):
//! - dashboard: 3 (`admin_counts`, `count_audit` over the last 24 h, the 8 latest audit events);
//!   key status comes from the key ring in memory;
//! - clients list: 2 (`search_clients`: one page, one count);
//! - client page: 1 (the client);
//! - users list: 2 (`search_users`: one page, one count);
//! - user page: 5 (the user, their live sessions, factors, consents, the 20 latest audit events);
//! - keys: 0 (the key ring in memory);
//! - audit log: 1 (`query_audit`, one row more than a page to know whether another follows).

pub mod audit;
pub mod auth;
pub mod clients;
pub mod dashboard;
pub mod keys;
pub mod users;

use askama::Template;
use poem::http::StatusCode;
use poem::{get, post, Request, Response, Route};

use crate::app::AppState;
use crate::http::pages::{html, Brand};
use crate::protocol::params::Params;
use auth::Operator;

/// Rows on a list page.
pub const PAGE_SIZE: u32 = 25;

/// The console's routes, nested under `/console` without stripping the prefix.
pub fn routes() -> Route {
    Route::new()
        .at("/console", get(dashboard::show))
        .at("/console/login", get(auth::login))
        .at("/console/callback", get(auth::callback))
        .at("/console/clients", get(clients::list).post(clients::create))
        .at("/console/clients/new", get(clients::new_form))
        .at(
            "/console/clients/:id",
            get(clients::show).post(clients::update),
        )
        .at("/console/clients/:id/secret", post(clients::rotate_secret))
        .at("/console/clients/:id/disable", post(clients::disable))
        .at("/console/clients/:id/enable", post(clients::enable))
        .at(
            "/console/clients/:id/delete",
            get(clients::confirm_delete).post(clients::delete),
        )
        .at("/console/users", get(users::list))
        .at("/console/users/:id", get(users::show))
        .at("/console/users/:id/roles", post(users::set_roles))
        .at("/console/users/:id/disable", post(users::disable))
        .at("/console/users/:id/enable", post(users::enable))
        .at(
            "/console/users/:id/sessions/revoke",
            post(users::revoke_session),
        )
        .at(
            "/console/users/:id/password-reset",
            post(users::password_reset),
        )
        .at(
            "/console/users/:id/reset-mfa",
            get(users::confirm_reset_mfa).post(users::reset_mfa),
        )
        .at(
            "/console/users/:id/delete",
            get(users::confirm_delete).post(users::delete),
        )
        .at("/console/keys", get(keys::list))
        .at("/console/keys/rotate", post(keys::rotate))
        .at(
            "/console/keys/:kid/revoke",
            get(keys::confirm_revoke).post(keys::revoke),
        )
        .at("/console/audit", get(audit::list))
}

/// What every console page shows around its content: brand, navigation, who is signed in.
pub struct Chrome {
    pub brand: Brand,
    /// The navigation entry to mark: dashboard, clients, users, keys, audit.
    pub section: &'static str,
    pub operator: String,
    pub csrf: String,
    /// A one-line result of the last action ("Secret rotated."), if any.
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl Chrome {
    pub fn new(state: &AppState, op: &Operator, section: &'static str) -> Chrome {
        Chrome {
            brand: (&state.settings.branding).into(),
            section,
            operator: op.user.email.clone(),
            csrf: op.csrf.clone(),
            notice: None,
            error: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Chrome {
        self.notice = notice;
        self
    }

    pub fn with_error(mut self, error: Option<String>) -> Chrome {
        self.error = error;
        self
    }
}

/// The operator of a change and its form, checked for CSRF; otherwise the answer.
pub async fn change_form(
    state: &AppState,
    req: &Request,
    body: poem::Body,
) -> Result<(Operator, Params), Response> {
    let op = auth::writer(state, req).await?;
    let form = crate::http::checked_form(state, req, body).await?;
    Ok((op, form))
}

/// A console page, with the CSRF cookie when this request made one.
pub fn page(status: StatusCode, op: &Operator, page: &impl Template) -> Response {
    html(status, page, &op.cookies())
}

/// The query string's parameters; an unreadable one counts as empty.
pub fn query(req: &Request) -> Params {
    Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default()
}

/// The 1-based page number of a list (`?page=`).
pub fn page_number(params: &Params) -> u64 {
    params
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|p| *p >= 1 && *p <= 100_000)
        .unwrap_or(1)
}

/// Where a list page stands and the links to its neighbours.
pub struct Pager {
    pub first: u64,
    pub last: u64,
    pub total: Option<u64>,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// `shown` rows of page `page` of `base` with the filters in `keep`; `more` says whether
    /// another page follows.
    pub fn new(
        base: &str,
        keep: &[(&str, &str)],
        page: u64,
        shown: usize,
        total: Option<u64>,
        more: bool,
    ) -> Pager {
        let link = |p: u64| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in keep.iter().filter(|(_, v)| !v.is_empty()) {
                q.append_pair(k, v);
            }
            if p > 1 {
                q.append_pair("page", &p.to_string());
            }
            let q = q.finish();
            if q.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{q}")
            }
        };
        let first = (page - 1) * u64::from(PAGE_SIZE) + 1;
        Pager {
            first: if shown == 0 { 0 } else { first },
            last: first + shown as u64 - 1,
            total,
            prev: (page > 1).then(|| link(page - 1)),
            next: more.then(|| link(page + 1)),
        }
    }
}

/// A time for a table cell: `2026-12-03 14:51 UTC`.
pub fn when(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A day for a narrow cell: `2026-12-03`.
pub fn day(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A `YYYY-MM-DD` (start of that day, UTC) or `YYYY-MM-DDTHH:MM` filter value.
pub fn parse_time(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M") {
        return Some(t.and_utc().timestamp());
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
}

/// A confirmation step before something that cannot be undone.
#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
    pub action: String,
    pub button: String,
    pub cancel: String,
}

/// A console page that says what went wrong, inside the console's frame.
#[derive(Template)]
#[template(path = "console/problem.html")]
pub struct ProblemPage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
    pub back: String,
}

pub fn problem(
    state: &AppState,
    op: &Operator,
    section: &'static str,
    status: StatusCode,
    title: &str,
    message: &str,
    back: &str,
) -> Response {
    let page = ProblemPage {
        chrome: Chrome::new(state, op, section),
        title: title.to_string(),
        message: message.to_string(),
        back: back.to_string(),
    };
    self::page(status, op, &page)
}

/// The answer to a storage failure: logged with its detail, shown without.
pub fn outage(
    state: &AppState,
    op: &Operator,
    section: &'static str,
    detail: &dyn std::fmt::Display,
) -> Response {
    tracing::error!(error = %detail, "console: a service failed");
    problem(
        state,
        op,
        section,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
        "/console",
    )
}

/// Goes to the console page `path` after a change (303, so a reload does not repeat the POST).
pub fn done(state: &AppState, path: &str) -> Response {
    crate::http::pages::redirect(crate::protocol::discovery::endpoint(
        &state.settings.issuer,
        path,
    ))
}

/// The path segment `name` of this route (`:id`, `:kid`).
pub fn segment(req: &Request, name: &str) -> String {
    req.raw_path_param(name).unwrap_or("").to_string()
}

/// An id for a link or a form action, percent-encoded as one path segment.
pub fn path_segment(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_links_keep_the_filters_and_know_their_ends() {
        let p = Pager::new("/console/users", &[("q", "ad a")], 2, 25, Some(60), true);
        assert_eq!((p.first, p.last), (26, 50));
        assert_eq!(p.prev.as_deref(), Some("/console/users?q=ad+a"));
        assert_eq!(p.next.as_deref(), Some("/console/users?q=ad+a&page=3"));
        let empty = Pager::new("/console/users", &[], 1, 0, Some(0), false);
        assert_eq!(empty.first, 0);
        assert!(empty.prev.is_none() && empty.next.is_none());
    }

    #[test]
    fn filter_times_are_days_or_minutes_in_utc() {
        assert_eq!(parse_time("1970-01-02"), Some(86_400));
        assert_eq!(parse_time("1970-01-01T01:00"), Some(3_600));
        assert_eq!(parse_time("yesterday"), None);
    }
}
