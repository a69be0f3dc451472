//! `/account/data`: "download my data": one JSON file of what the server keeps about the person
//! (profile, second factors, upstream identities, consents, sessions, the audit events about them). Never a secret:
//! no password hash, factor key, recovery code, token, or session cookie hash.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use serde_json::{json, Value};

use super::{brand, frame, outage, posted, signed_in, Frame, Outcome};
use crate::app::AppState;
use crate::http::api::meta_of;
use crate::http::pages::{html, Brand};
use crate::store::{AuditEvent, AuditQuery, BrowserSession, User};

pub const PATH: &str = "/account/data";

/// Audit events read per query, and at most in all (the newest first).
const AUDIT_PAGE: u32 = 500;
const AUDIT_MAX: usize = 20_000;

#[derive(Template)]
#[template(path = "account/data.html")]
struct DataPage {
    brand: Brand,
    section: &'static str,
    frame: Frame,
}

/// `GET /account/data`.
#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    match signed_in(state, req, PATH).await {
        Ok((_, user)) => {
            let (frame, cookies) = frame(state, req, "Your data", &user, Outcome::None);
            let view = DataPage {
                brand: brand(state),
                section: "data",
                frame,
            };
            html(StatusCode::OK, &view, &cookies)
        }
        Err(resp) => resp,
    }
}

/// `POST /account/data/export`: the JSON file, as a download.
#[handler]
pub async fn export(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (_, current, user) = match posted(state, req, body, PATH).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let document = match collect(state, &current, &user).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "could not collect a user's data");
            return outage(state, req);
        }
    };
    let Ok(bytes) = serde_json::to_vec_pretty(&document) else {
        return outage(state, req);
    };
    let mut event = state
        .accounts
        .audit_event("user.data_exported", &meta_of(req));
    event.actor = Some(user.id.to_string());
    event.subject = Some(user.id.to_string());
    state.accounts.record(event).await;
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json; charset=utf-8")
        .header(
            "content-disposition",
            "attachment; filename=\"account-data.json\"",
        )
        .header("cache-control", "no-store")
        .body(bytes)
}

async fn collect(
    state: &AppState,
    current: &BrowserSession,
    user: &User,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let factors = state
        .mfa
        .summaries(user.id)
        .await
        .map_err(|e| e.to_string())?;
    let recovery_codes_left = state.mfa.recovery_codes_left(user.id).await.unwrap_or(0);
    let consents = state.sessions.consents(user.id).await?;
    let sessions = state.sessions.user_sessions(user.id).await?;
    let audit = audit_events(state, user).await?;
    let identities = state
        .federation
        .identities_of(user.id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "exported_at": state.clock.now(),
        "issuer": state.settings.issuer,
        "profile": {
            "id": user.id,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "roles": user.roles,
            "has_password": user.password_hash.is_some(),
            "created_at": user.created_at,
            "updated_at": user.updated_at,
        },
        "second_factors": factors.iter().map(|f| json!({
            "id": f.id,
            "kind": f.kind,
            "name": f.name,
            "created_at": f.created_at,
            "last_used_at": f.last_used_at,
        })).collect::<Vec<_>>(),
        "recovery_codes_left": recovery_codes_left,
        "identities": identities.iter().map(|i| json!({
            "provider": i.provider,
            "subject": i.subject,
            "email": i.email,
            "name": i.name,
            "linked_at": i.created_at,
            "last_used_at": i.last_used_at,
        })).collect::<Vec<_>>(),
        "consents": consents.iter().map(|c| json!({
            "id": c.id,
            "client_id": c.client_id,
            "client_name": c.client_name,
            "scope": c.scope,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "last_used_at": c.last_used_at,
        })).collect::<Vec<_>>(),
        "sessions": sessions.iter().map(|s| json!({
            "sid": s.sid,
            "this_device": s.id_hash == current.id_hash,
            "signed_in_at": s.auth_time,
            "methods": s.amr,
            "acr": s.acr,
            "ip": s.ip,
            "user_agent": s.user_agent,
            "created_at": s.created_at,
            "last_seen_at": s.last_seen_at,
            "expires_at": s.expires_at,
        })).collect::<Vec<_>>(),
        "audit_events": audit.iter().map(|e| {
            // Where an operator acted on the account, the request details are the
            // operator's own (their address and browser), not the person's: left out.
            let theirs = e.actor.as_deref().is_none_or(|a| a == user.id.to_string());
            json!({
                "id": e.id,
                "at": e.at,
                "kind": e.kind,
                "actor": e.actor,
                "subject": e.subject,
                "client_id": e.client_id,
                "ip": if theirs { e.ip.clone() } else { None },
                "user_agent": if theirs { e.user_agent.clone() } else { None },
                "detail": e.detail,
            })
        }).collect::<Vec<_>>(),
    }))
}

/// The audit events about (or by) the user, newest first, page by page.
async fn audit_events(state: &AppState, user: &User) -> crate::store::StoreResult<Vec<AuditEvent>> {
    let mut all = Vec::new();
    loop {
        let query = AuditQuery {
            user: Some(user.id.to_string()),
            offset: all.len() as u64,
            limit: AUDIT_PAGE,
            ..Default::default()
        };
        let page = state.store.query_audit(&query).await?;
        let last = page.len() < AUDIT_PAGE as usize;
        all.extend(page);
        if last || all.len() >= AUDIT_MAX {
            return Ok(all);
        }
    }
}
