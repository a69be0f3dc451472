//! `/admin/sessions` and `/admin/consents`: a user's browser sessions and what they allowed
//! which client, seen and ended by an admin. Ending goes through `SessionService`, the one
//! place that decides what a sign-out or a withdrawn consent takes down.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::{admin_guard, admin_write_guard, time, ApiError, ApiTags, BearerAuth, Trace};
use crate::app::AppState;
use crate::store::{BrowserSession, ConsentRecord, StoreError};

pub struct AdminSessionsApi;

/// A live browser session (never its cookie or the cookie's hash).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct SessionView {
    /// The session's public id: the `sid` of the ID tokens issued in it.
    id: String,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    /// The last request that used the session.
    last_seen_at: DateTime<Utc>,
    /// The absolute end of the session, whatever its activity.
    expires_at: DateTime<Utc>,
    /// When the person last entered credentials in it.
    auth_time: DateTime<Utc>,
    /// How the person signed in (RFC 8176 values such as `pwd`, `otp`, `hwk`).
    amr: Vec<String>,
    /// The assurance the sign-in reached (`pwd`, `mfa`, `phr`).
    #[oai(nullable)]
    acr: Option<String>,
    #[oai(nullable)]
    ip: Option<String>,
    #[oai(nullable)]
    user_agent: Option<String>,
}

impl From<&BrowserSession> for SessionView {
    fn from(s: &BrowserSession) -> Self {
        SessionView {
            id: s.sid.clone(),
            user_id: s.user_id,
            created_at: time(s.created_at),
            last_seen_at: time(s.last_seen_at),
            expires_at: time(s.expires_at),
            auth_time: time(s.auth_time),
            amr: s.amr.clone(),
            acr: s.acr.clone(),
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct SessionList {
    /// Most recently active first.
    items: Vec<SessionView>,
    page: u32,
    per_page: u32,
    /// Live sessions of the user, on all pages.
    total: u64,
}

/// One page of `items` (pages count from 1).
fn page_of<T>(items: Vec<T>, page: u32, per_page: u32) -> (Vec<T>, u64) {
    let total = items.len() as u64;
    let skip = (page.saturating_sub(1) as usize).saturating_mul(per_page as usize);
    (
        items
            .into_iter()
            .skip(skip)
            .take(per_page as usize)
            .collect(),
        total,
    )
}

#[derive(Debug, Object)]
struct SessionsEnded {
    /// How many sessions were ended.
    ended: u64,
}

/// What a user allowed a client.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ConsentView {
    id: Uuid,
    user_id: Uuid,
    client_id: String,
    client_name: String,
    /// The scopes allowed, space-separated.
    scope: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The last token issued to the client for the user, if any is still on record.
    #[oai(nullable)]
    last_used_at: Option<DateTime<Utc>>,
}

impl From<&ConsentRecord> for ConsentView {
    fn from(c: &ConsentRecord) -> Self {
        ConsentView {
            id: c.id,
            user_id: c.user_id,
            client_id: c.client_id.clone(),
            client_name: c.client_name.clone(),
            scope: c.scope.clone(),
            created_at: time(c.created_at),
            updated_at: time(c.updated_at),
            last_used_at: c.last_used_at.map(time),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ConsentList {
    /// Most recently changed first.
    items: Vec<ConsentView>,
    page: u32,
    per_page: u32,
    /// Consents of the user, on all pages.
    total: u64,
}

#[derive(ApiResponse)]
enum SessionListResponse {
    #[oai(status = 200)]
    Ok(Json<SessionList>),
}

#[derive(ApiResponse)]
enum SessionsEndedResponse {
    /// Every live session of the user was ended like a sign-out.
    #[oai(status = 200)]
    Ok(Json<SessionsEnded>),
}

#[derive(ApiResponse)]
enum ConsentListResponse {
    #[oai(status = 200)]
    Ok(Json<ConsentList>),
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    Done,
}

fn store_failed(e: StoreError, trace: &Trace) -> ApiError {
    tracing::error!(error = %e, "storage failure in an admin session or consent route");
    ApiError::internal(trace)
}

fn not_found(what: &str, trace: &Trace) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what, trace)
}

/// The live user `id`, or 404: a list for someone who does not exist is a typo, not "none".
async fn live_user(state: &AppState, id: Uuid, trace: &Trace) -> Result<(), ApiError> {
    state
        .store
        .get_user(id)
        .await
        .map_err(|e| store_failed(e, trace))?
        .filter(|u| u.deleted_at.is_none())
        .map(|_| ())
        .ok_or_else(|| not_found("no user with this id", trace))
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminSessionsApi {
    /// A user's sessions (admin)
    ///
    /// The user's live browser sessions, most recently active first.
    #[oai(path = "/admin/sessions", method = "get")]
    async fn sessions(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The user's id.
        user: Query<Uuid>,
        /// Page number, from 1.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        /// Items per page (1 to 100).
        #[oai(
            name = "perPage",
            default = "default_per_page",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        per_page: Query<u32>,
    ) -> Result<SessionListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        live_user(&state, user.0, &trace).await?;
        let sessions = state
            .sessions
            .user_sessions(user.0)
            .await
            .map_err(|e| store_failed(e, &trace))?;
        let (sessions, total) = page_of(sessions, page.0, per_page.0);
        Ok(SessionListResponse::Ok(Json(SessionList {
            items: sessions.iter().map(SessionView::from).collect(),
            page: page.0,
            per_page: per_page.0,
            total,
        })))
    }

    /// End every session of a user (admin)
    ///
    /// Each is ended like a sign-out: its refresh tokens (except `offline_access` ones) and
    /// their access tokens are revoked and the clients get back-channel logout tokens.
    #[oai(path = "/admin/sessions", method = "delete")]
    async fn end_all(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The user's id.
        user: Query<Uuid>,
    ) -> Result<SessionsEndedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        live_user(&state, user.0, &trace).await?;
        let ended = state
            .sessions
            .end_other_sessions(user.0, None, &actor.id.to_string(), "admin")
            .await
            .map_err(|e| store_failed(e, &trace))?;
        Ok(SessionsEndedResponse::Ok(Json(SessionsEnded {
            ended: ended as u64,
        })))
    }

    /// End one session (admin)
    ///
    /// By its public id (`sid`); the browser holding it is signed out at its next request.
    #[oai(path = "/admin/sessions/:id", method = "delete")]
    async fn end_one(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The session's public id (`sid`).
        #[oai(validator(max_length = 128))]
        id: Path<String>,
    ) -> Result<Done, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let ended = state
            .sessions
            .end_session_by_sid(&id.0, None, &actor.id.to_string(), "admin")
            .await
            .map_err(|e| store_failed(e, &trace))?;
        if !ended {
            return Err(not_found("no live session with this id", &trace));
        }
        Ok(Done::Done)
    }

    /// A user's consents (admin)
    ///
    /// What the user allowed which client, most recently changed first.
    #[oai(path = "/admin/consents", method = "get")]
    async fn consents(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The user's id.
        user: Query<Uuid>,
        /// Page number, from 1.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        /// Items per page (1 to 100).
        #[oai(
            name = "perPage",
            default = "default_per_page",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        per_page: Query<u32>,
    ) -> Result<ConsentListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        live_user(&state, user.0, &trace).await?;
        let consents = state
            .sessions
            .consents(user.0)
            .await
            .map_err(|e| store_failed(e, &trace))?;
        let (consents, total) = page_of(consents, page.0, per_page.0);
        Ok(ConsentListResponse::Ok(Json(ConsentList {
            items: consents.iter().map(ConsentView::from).collect(),
            page: page.0,
            per_page: per_page.0,
            total,
        })))
    }

    /// Revoke a consent (admin)
    ///
    /// The client loses the consent and every refresh token it holds for the user (their
    /// access tokens are denied); it must ask the user again.
    #[oai(path = "/admin/consents/:id", method = "delete")]
    async fn revoke_consent(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Done, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let revoked = state
            .sessions
            .revoke_consent(id.0, None, &actor.id.to_string())
            .await
            .map_err(|e| store_failed(e, &trace))?;
        if !revoked {
            return Err(not_found("no consent with this id", &trace));
        }
        Ok(Done::Done)
    }
}

fn default_page() -> u32 {
    1
}

fn default_per_page() -> u32 {
    50
}
