//! `/admin/audit`: the audit trail (admin role).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::{admin_guard, time, ApiError, ApiTags, BearerAuth, Trace};
use crate::app::AppState;
use crate::store::{AuditEvent, AuditQuery};

pub struct AdminApi;

/// Something that happened: who did what to whom, from where. Never a secret.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct AuditEntry {
    id: Uuid,
    at: DateTime<Utc>,
    /// Dotted event type, e.g. `login.failed`, `user.deleted`, `refresh.reuse_detected`.
    #[oai(rename = "type")]
    kind: String,
    /// The user who acted (an admin, or the user themself), when known.
    #[oai(nullable)]
    actor: Option<String>,
    /// The user the event is about.
    #[oai(nullable)]
    subject: Option<String>,
    #[oai(nullable)]
    client_id: Option<String>,
    #[oai(nullable)]
    ip: Option<String>,
    #[oai(nullable)]
    user_agent: Option<String>,
    #[oai(nullable)]
    trace_id: Option<String>,
    detail: serde_json::Value,
}

impl From<AuditEvent> for AuditEntry {
    fn from(e: AuditEvent) -> Self {
        AuditEntry {
            id: e.id,
            at: time(e.at),
            kind: e.kind,
            actor: e.actor,
            subject: e.subject,
            client_id: e.client_id,
            ip: e.ip,
            user_agent: e.user_agent,
            trace_id: e.trace_id,
            detail: e.detail,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct AuditPage {
    items: Vec<AuditEntry>,
    page: u32,
    per_page: u32,
}

#[derive(ApiResponse)]
enum AuditResponse {
    #[oai(status = 200)]
    Ok(Json<AuditPage>),
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// The audit trail (admin)
    ///
    /// Newest first; filter by user (as actor or subject), event type and time range.
    #[oai(path = "/admin/audit", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// A user id: events the user caused or that are about the user.
        user: Query<Option<Uuid>>,
        /// An event type such as `login.failed`.
        #[oai(name = "type", validator(max_length = 64))]
        kind: Query<Option<String>>,
        /// Events at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Events at or before this time (RFC 3339).
        until: Query<Option<DateTime<Utc>>>,
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        #[oai(
            name = "perPage",
            default = "default_per_page",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        per_page: Query<u32>,
    ) -> Result<AuditResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let query = AuditQuery {
            user: user.0.map(|u| u.to_string()),
            kind: kind.0.filter(|k| !k.is_empty()),
            since: since.0.map(|t| t.timestamp()),
            until: until.0.map(|t| t.timestamp()),
            offset: u64::from(page.0 - 1) * u64::from(per_page.0),
            limit: per_page.0,
        };
        let events = state.store.query_audit(&query).await.map_err(|e| {
            tracing::error!(error = %e, "storage failure reading the audit trail");
            ApiError::internal(&trace)
        })?;
        Ok(AuditResponse::Ok(Json(AuditPage {
            items: events.into_iter().map(AuditEntry::from).collect(),
            page: page.0,
            per_page: per_page.0,
        })))
    }
}

fn default_page() -> u32 {
    1
}

fn default_per_page() -> u32 {
    50
}
