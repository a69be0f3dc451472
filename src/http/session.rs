//! Browser sessions and CSRF tokens as cookies. The session cookie holds a random id whose
//! hash is the database key, so a stolen database reveals no usable cookie.

use poem::Request;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::random;
use crate::store::{BrowserSession, User};

const SESSION: &str = "portcullis-session";
const CSRF: &str = "portcullis-csrf";

/// `__Host-` prefixed names (RFC 6265bis §4.1.3.2) when served over https: the cookie is then
/// bound to this host, path `/`, and `Secure`.
pub(crate) fn cookie_name(state: &AppState, base: &str) -> String {
    name_for(state.settings.is_https(), base)
}

fn name_for(https: bool, base: &str) -> String {
    if https {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

pub(crate) fn set_cookie(
    state: &AppState,
    base: &str,
    value: &str,
    max_age: Option<u64>,
) -> String {
    cookie_header(state.settings.is_https(), base, value, max_age)
}

/// `HttpOnly` (no script reads it), `SameSite=Lax` (not sent on cross-site POSTs), `Path=/`,
/// and over https `Secure` with the `__Host-` prefix.
fn cookie_header(https: bool, base: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax",
        name_for(https, base)
    );
    if https {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// The value of the named cookie, if the request has exactly one.
pub fn read_cookie(req: &Request, name: &str) -> Option<String> {
    read_cookie_up_to(req, name, 128)
}

/// [`read_cookie`] for values up to `max` characters (the console's cookie holds a JWT).
pub fn read_cookie_up_to(req: &Request, name: &str, max: usize) -> Option<String> {
    let mut found = None;
    for header in req.headers().get_all("cookie") {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(v.to_string());
                }
            }
        }
    }
    found.filter(|v| !v.is_empty() && v.len() <= max)
}

/// The signed-in browser's live session and its user, if any. Expired, revoked, or idle
/// sessions and disabled users count as signed out.
pub async fn current(state: &AppState, req: &Request) -> Option<(BrowserSession, User)> {
    let id = read_cookie(req, &cookie_name(state, SESSION))?;
    let id_hash = random::hash_secret(&id);
    let session = state.store.get_session(&id_hash).await.ok()??;
    let now = state.clock.now();
    let idle = state.settings.sessions.idle_timeout_secs as i64;
    if now >= session.expires_at || now - session.last_seen_at >= idle {
        return None;
    }
    let user = state.store.get_user(session.user_id).await.ok()??;
    if user.disabled || user.deleted_at.is_some() {
        return None;
    }
    // Write activity at most once a minute.
    if now - session.last_seen_at >= 60 {
        let _ = state.store.touch_session(&id_hash, now).await;
    }
    Some((session, user))
}

/// Starts a session for `user` with a brand-new id (never reusing one the browser brought,
/// against fixation), revoking the browser's previous session. Returns the `Set-Cookie` value.
pub async fn start(
    state: &AppState,
    req: &Request,
    user: &User,
    amr: &[String],
    acr: crate::accounts::mfa::Acr,
) -> Result<(BrowserSession, String), crate::store::StoreError> {
    let signed_in = SignIn {
        user_id: user.id,
        auth_time: state.clock.now(),
        amr: amr.to_vec(),
        acr: Some(acr.as_str().to_string()),
        expires_at: None,
    };
    open(state, req, signed_in).await
}

/// A new session for the same sign-in as `old` (its user, time, methods and absolute end)
/// after everything of the account was signed out (a password change made in this browser):
/// this browser stays signed in, under a new id.
pub async fn renew(
    state: &AppState,
    req: &Request,
    old: &BrowserSession,
) -> Result<(BrowserSession, String), crate::store::StoreError> {
    let signed_in = SignIn {
        user_id: old.user_id,
        auth_time: old.auth_time,
        amr: old.amr.clone(),
        acr: old.acr.clone(),
        expires_at: Some(old.expires_at),
    };
    open(state, req, signed_in).await
}

/// What a session records of the sign-in that started it.
struct SignIn {
    user_id: uuid::Uuid,
    auth_time: crate::store::Timestamp,
    amr: Vec<String>,
    acr: Option<String>,
    /// The absolute end of a continued sign-in; a new one runs `absolute_timeout_secs`.
    expires_at: Option<crate::store::Timestamp>,
}

async fn open(
    state: &AppState,
    req: &Request,
    signed_in: SignIn,
) -> Result<(BrowserSession, String), crate::store::StoreError> {
    let now = state.clock.now();
    if let Some(old) = read_cookie(req, &cookie_name(state, SESSION)) {
        state
            .sessions
            .replace_session(&random::hash_secret(&old), now)
            .await?;
    }
    let id = random::token(32);
    let expires_at = signed_in
        .expires_at
        .unwrap_or(now + state.settings.sessions.absolute_timeout_secs as i64);
    let session = BrowserSession {
        id_hash: random::hash_secret(&id),
        sid: random::token(16),
        user_id: signed_in.user_id,
        auth_time: signed_in.auth_time,
        amr: signed_in.amr,
        acr: signed_in.acr,
        user_agent: req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        ip: req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip().to_string()),
        created_at: now,
        last_seen_at: now,
        expires_at,
        revoked_at: None,
    };
    let signed_in = state
        .accounts
        .event(
            crate::events::EventType::UserSignedIn,
            &crate::http::api::meta_of(req),
        )
        .subject(session.user_id)
        .actor(Some(session.user_id))
        .data(serde_json::json!({"amr": session.amr, "sessionId": session.sid}));
    state.store.create_session(&session, &[signed_in]).await?;
    let max_age = u64::try_from(expires_at - now).unwrap_or(0);
    Ok((session, set_cookie(state, SESSION, &id, Some(max_age))))
}

/// A `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(state: &AppState) -> String {
    set_cookie(state, SESSION, "", Some(0))
}

/// The CSRF token for this browser, and a `Set-Cookie` value when a new one had to be made.
/// Forms carry it in a hidden field; a POST is accepted only when field and cookie agree
/// (double submit, with a `SameSite=Lax`, `HttpOnly`, host-bound cookie).
pub fn csrf_token(state: &AppState, req: &Request) -> (String, Option<String>) {
    match read_cookie(req, &cookie_name(state, CSRF)) {
        Some(existing) => (existing, None),
        None => {
            let token = random::token(32);
            let cookie = set_cookie(state, CSRF, &token, None);
            (token, Some(cookie))
        }
    }
}

/// A name for this browser that is not a secret (the SHA-256 of its CSRF cookie), for limits
/// counted per browser; `None` before it has one.
pub fn browser_id(state: &AppState, req: &Request) -> Option<String> {
    read_cookie(req, &cookie_name(state, CSRF)).map(|c| random::hash_secret(&c))
}

pub fn csrf_ok(state: &AppState, req: &Request, presented: Option<&str>) -> bool {
    match (read_cookie(req, &cookie_name(state, CSRF)), presented) {
        (Some(cookie), Some(field)) => cookie.as_bytes().ct_eq(field.as_bytes()).into(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_bound_and_secure() {
        let c = cookie_header(true, SESSION, "abc", Some(60));
        assert_eq!(
            c,
            "__Host-portcullis-session=abc; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
        );
        let c = cookie_header(false, CSRF, "xyz", None);
        assert_eq!(c, "portcullis-csrf=xyz; Path=/; HttpOnly; SameSite=Lax");
    }
}
