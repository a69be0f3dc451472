//! `/console/users`: list and search by the start of an email or name, and a user's page:
//! profile and roles, live sessions (end one), second factors, consents and audit trail;
//! disable and enable, send a password reset link, reset the second factors and delete (after
//! a confirmation). The account, MFA and session services decide and audit every change.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use uuid::Uuid;

use super::audit::{event_lines, EventLine};
use super::auth::{viewer, Operator};
use super::{
    change_form, done, outage, page, page_number, problem, query, segment, when, Chrome,
    ConfirmPage, Pager, PAGE_SIZE,
};
use crate::accounts::service::AccountError;
use crate::accounts::UserPatch;
use crate::app::AppState;
use crate::http::api::meta_of;
use crate::http::sentence;
use crate::store::{AuditQuery, User, UserQuery, UserSort};

pub struct UserRow {
    pub link: String,
    pub email: String,
    pub name: String,
    pub roles: String,
    pub verified: bool,
    pub disabled: bool,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    users: Vec<UserRow>,
    pager: Pager,
}

pub struct SessionRow {
    pub sid: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
    pub ip: String,
    pub user_agent: String,
    pub acr: String,
}

pub struct FactorRow {
    pub name: String,
    pub kind: &'static str,
    pub created: String,
    pub last_used: String,
}

pub struct ConsentRow {
    pub client: String,
    pub client_id: String,
    pub scope: String,
    pub last_used: String,
}

pub struct RoleBox {
    pub name: String,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct UserPage {
    chrome: Chrome,
    id: String,
    link: String,
    email: String,
    name: String,
    verified: bool,
    disabled: bool,
    created: String,
    roles: Vec<RoleBox>,
    sessions: Vec<SessionRow>,
    factors: Vec<FactorRow>,
    consents: Vec<ConsentRow>,
    events: Vec<EventLine>,
    myself: bool,
}

/// `GET /console/users?q=&page=`: `q` is the start of an email address or a name.
#[handler]
pub async fn list(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let params = query(req);
    let q = params.get("q").unwrap_or("").trim().to_string();
    let page_no = page_number(&params);
    let search = UserQuery {
        search: (!q.is_empty()).then(|| q.clone()),
        sort: UserSort::Email,
        offset: (page_no - 1) * u64::from(PAGE_SIZE),
        limit: PAGE_SIZE,
        ..UserQuery::default()
    };
    let (users, total) = match state.store.search_users(&search).await {
        Ok(found) => found,
        Err(e) => return outage(state, &op, "users", &e),
    };
    let shown = (page_no - 1) * u64::from(PAGE_SIZE) + users.len() as u64;
    let pager = Pager::new(
        "/console/users",
        &[("q", &q)],
        page_no,
        users.len(),
        Some(total),
        shown < total,
    );
    let notice = (params.get("done") == Some("deleted")).then(|| "User deleted.".to_string());
    let body = ListPage {
        chrome: Chrome::new(state, &op, "users").with_notice(notice),
        q,
        users: users
            .iter()
            .map(|u| UserRow {
                link: format!("/console/users/{}", u.id),
                email: u.email.clone(),
                name: u.name.clone().unwrap_or_default(),
                roles: u.roles.join(", "),
                verified: u.email_verified,
                disabled: u.disabled,
                created: when(u.created_at),
            })
            .collect(),
        pager,
    };
    page(StatusCode::OK, &op, &body)
}

fn no_such_user(state: &AppState, op: &Operator) -> Response {
    problem(
        state,
        op,
        "users",
        StatusCode::NOT_FOUND,
        "No such user",
        "That user does not exist (any more).",
        "/console/users",
    )
}

/// The live (not deleted) user of the `:id` segment, or the page that says there is none.
async fn target(state: &AppState, req: &Request, op: &Operator) -> Result<User, Response> {
    let Ok(id) = Uuid::parse_str(&segment(req, "id")) else {
        return Err(no_such_user(state, op));
    };
    match state.accounts.visible_user(&op.user, id).await {
        Ok(user) => Ok(user),
        Err(AccountError::NotFound) => Err(no_such_user(state, op)),
        Err(e) => Err(outage(state, op, "users", &e)),
    }
}

fn account_refused(state: &AppState, op: &Operator, user: &User, e: AccountError) -> Response {
    match e {
        AccountError::NotFound => no_such_user(state, op),
        AccountError::Invalid { message, .. } => problem(
            state,
            op,
            "users",
            StatusCode::BAD_REQUEST,
            "Not possible",
            &sentence(&message),
            &format!("/console/users/{}", user.id),
        ),
        other => outage(state, op, "users", &other),
    }
}

#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let user = match target(state, req, &op).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let sessions = match state.sessions.user_sessions(user.id).await {
        Ok(s) => s,
        Err(e) => return outage(state, &op, "users", &e),
    };
    let factors = match state.mfa.summaries(user.id).await {
        Ok(f) => f,
        Err(e) => return outage(state, &op, "users", &e),
    };
    let consents = match state.sessions.consents(user.id).await {
        Ok(c) => c,
        Err(e) => return outage(state, &op, "users", &e),
    };
    let events = match state
        .store
        .query_audit(&AuditQuery {
            user: Some(user.id.to_string()),
            limit: 20,
            ..AuditQuery::default()
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return outage(state, &op, "users", &e),
    };
    let notice = match query(req).get("done") {
        Some("roles") => Some("Roles saved."),
        Some("disabled") => Some("User disabled and signed out everywhere."),
        Some("enabled") => Some("User enabled."),
        Some("session") => Some("Session ended: that browser is signed out."),
        Some("reset-sent") => Some("A password reset link is on its way to the user's address."),
        Some("mfa-reset") => {
            Some("Every second factor and recovery code of this user was removed.")
        }
        _ => None,
    };
    let roles = state
        .settings
        .accounts
        .roles
        .iter()
        .map(|r| RoleBox {
            name: r.clone(),
            on: user.roles.contains(r),
        })
        .collect();
    let body = UserPage {
        chrome: Chrome::new(state, &op, "users").with_notice(notice.map(str::to_string)),
        id: user.id.to_string(),
        link: format!("/console/users/{}", user.id),
        email: user.email.clone(),
        name: user.name.clone().unwrap_or_default(),
        verified: user.email_verified,
        disabled: user.disabled,
        created: when(user.created_at),
        roles,
        sessions: sessions
            .iter()
            .map(|s| SessionRow {
                sid: s.sid.clone(),
                created: when(s.created_at),
                last_seen: when(s.last_seen_at),
                expires: when(s.expires_at),
                ip: s.ip.clone().unwrap_or_default(),
                user_agent: s.user_agent.clone().unwrap_or_default(),
                acr: s.acr.clone().unwrap_or_default(),
            })
            .collect(),
        factors: factors
            .iter()
            .map(|f| FactorRow {
                name: f.name.clone(),
                kind: match f.kind.as_str() {
                    "totp" => "Authenticator app",
                    _ => "Passkey",
                },
                created: when(f.created_at),
                last_used: f.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        consents: consents
            .iter()
            .map(|c| ConsentRow {
                client: c.client_name.clone(),
                client_id: c.client_id.clone(),
                scope: c.scope.clone(),
                last_used: c.last_used_at.map(when).unwrap_or_default(),
            })
            .collect(),
        events: event_lines(&events),
        myself: user.id == op.user.id,
    };
    page(StatusCode::OK, &op, &body)
}

/// The operator, the user of the `:id` segment and the checked form of a change.
async fn change(
    state: &AppState,
    req: &Request,
    body: Body,
) -> Result<(Operator, User, crate::protocol::params::Params), Response> {
    let (op, form) = change_form(state, req, body).await?;
    let user = target(state, req, &op).await?;
    Ok((op, user, form))
}

/// `POST /console/users/{id}/roles`: one checkbox per configured role (`role_<name>`).
#[handler]
pub async fn set_roles(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, user, form) = match change(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let roles: Vec<String> = state
        .settings
        .accounts
        .roles
        .iter()
        .filter(|r| form.get(&format!("role_{r}")).is_some())
        .cloned()
        .collect();
    let patch = UserPatch {
        roles: Some(roles),
        ..UserPatch::default()
    };
    match state
        .accounts
        .update_user(&meta_of(req), &op.user, user.id, patch)
        .await
    {
        Ok(_) => done(state, &format!("/console/users/{}?done=roles", user.id)),
        Err(e) => account_refused(state, &op, &user, e),
    }
}

async fn switch(req: &Request, body: Body, state: &AppState, disabled: bool) -> Response {
    let (op, user, _) = match change(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let patch = UserPatch {
        disabled: Some(disabled),
        ..UserPatch::default()
    };
    match state
        .accounts
        .update_user(&meta_of(req), &op.user, user.id, patch)
        .await
    {
        Ok(_) => {
            let what = if disabled { "disabled" } else { "enabled" };
            done(state, &format!("/console/users/{}?done={what}", user.id))
        }
        Err(e) => account_refused(state, &op, &user, e),
    }
}

#[handler]
pub async fn disable(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    switch(req, body, &state, true).await
}

#[handler]
pub async fn enable(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    switch(req, body, &state, false).await
}

/// `POST /console/users/{id}/sessions/revoke` with `sid`: ends that session of this user.
#[handler]
pub async fn revoke_session(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, user, form) = match change(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let sid = form.get("sid").unwrap_or("");
    match state
        .sessions
        .end_session_by_sid(sid, Some(user.id), &op.actor(), "admin")
        .await
    {
        Ok(true) => done(state, &format!("/console/users/{}?done=session", user.id)),
        Ok(false) => problem(
            state,
            &op,
            "users",
            StatusCode::NOT_FOUND,
            "No such session",
            "That session has already ended.",
            &format!("/console/users/{}", user.id),
        ),
        Err(e) => outage(state, &op, "users", &e),
    }
}

/// `POST /console/users/{id}/password-reset`: mails the user a reset link (within the mail
/// budget of the address, like the forgot-password page).
#[handler]
pub async fn password_reset(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, user, _) = match change(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match state
        .accounts
        .request_password_reset(&meta_of(req), &user.email)
        .await
    {
        Ok(()) => done(
            state,
            &format!("/console/users/{}?done=reset-sent", user.id),
        ),
        Err(e) => account_refused(state, &op, &user, e),
    }
}

#[handler]
pub async fn confirm_reset_mfa(req: &Request, state: Data<&AppState>) -> Response {
    confirm(req, &state, "reset-mfa").await
}

#[handler]
pub async fn confirm_delete(req: &Request, state: Data<&AppState>) -> Response {
    confirm(req, &state, "delete").await
}

async fn confirm(req: &Request, state: &AppState, what: &str) -> Response {
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let user = match target(state, req, &op).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let link = format!("/console/users/{}", user.id);
    let (title, message, button) = if what == "delete" {
        (
            format!("Delete {}?", user.email),
            "The account is deleted: its sessions, refresh tokens, access tokens and links stop \
             working now, and the address stays taken. To stop it for a while instead, disable it."
                .to_string(),
            "Delete this user",
        )
    } else {
        (
            format!("Reset the second factors of {}?", user.email),
            "Every authenticator app, passkey and recovery code of this account is removed (a lost \
             phone). The user is told by mail, and enrolls again at the next sign-in if a policy \
             requires a second factor."
                .to_string(),
            "Reset second factors",
        )
    };
    let body = ConfirmPage {
        chrome: Chrome::new(state, &op, "users"),
        title,
        message,
        action: format!("{link}/{what}"),
        button: button.into(),
        cancel: link,
    };
    page(StatusCode::OK, &op, &body)
}

/// `POST /console/users/{id}/reset-mfa`: what `portcullis user reset-mfa` does.
#[handler]
pub async fn reset_mfa(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, user, _) = match change(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match state.mfa.reset(&meta_of(req), Some(&op.user), &user).await {
        Ok(_) => done(state, &format!("/console/users/{}?done=mfa-reset", user.id)),
        Err(e) => outage(state, &op, "users", &e),
    }
}

#[handler]
pub async fn delete(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, user, _) = match change(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    match state
        .accounts
        .delete_user(&meta_of(req), &op.user, user.id)
        .await
    {
        Ok(()) => done(state, "/console/users?done=deleted"),
        Err(e) => account_refused(state, &op, &user, e),
    }
}
