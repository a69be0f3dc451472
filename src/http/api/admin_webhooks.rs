//! `/admin/webhooks` and `/admin/events`: webhook subscriptions, their deliveries (with the
//! dead letters and replay) and the recent events — `EventService`'s, as `portcullis webhook`
//! uses them. A webhook's secret is in the answer that creates it, and never again.

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
use crate::events::{EventError, NewWebhook};
use crate::store::{Delivery, DeliveryQuery, DeliveryState, EventQuery, OutboxEvent, Webhook};

pub struct AdminWebhooksApi;

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct WebhookView {
    id: Uuid,
    url: String,
    /// The event types it receives; empty: every type.
    event_types: Vec<String>,
    created_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView {
            id: w.id,
            url: w.url.clone(),
            event_types: w.event_types.clone(),
            created_at: time(w.created_at),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct CreatedWebhook {
    id: Uuid,
    url: String,
    event_types: Vec<String>,
    created_at: DateTime<Utc>,
    /// `whsec_…`: the Standard Webhooks signing secret, shown this once.
    secret: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct NewWebhookBody {
    /// Where events are POSTed (https; private addresses are refused unless allowed by
    /// `events.allow_private_targets`).
    #[oai(validator(max_length = 2000))]
    url: String,
    /// Event types to receive (see the catalogue); empty or absent: every type.
    #[oai(default, validator(max_items = 64))]
    event_types: Vec<String>,
}

#[derive(Debug, Object)]
struct WebhookList {
    items: Vec<WebhookView>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct DeliveryView {
    id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    /// `pending`, `delivered` or `dead` (every attempt failed; replayable).
    state: String,
    attempts: i64,
    next_attempt_at: DateTime<Utc>,
    #[oai(nullable)]
    last_status: Option<i64>,
    #[oai(nullable)]
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    #[oai(nullable)]
    delivered_at: Option<DateTime<Utc>>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            next_attempt_at: time(d.next_attempt_at),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: time(d.created_at),
            delivered_at: d.delivered_at.map(time),
        }
    }
}

#[derive(Debug, Object)]
struct DeliveryList {
    items: Vec<DeliveryView>,
}

#[derive(Debug, Object)]
struct EventList {
    /// The events' JSON envelopes (see the catalogue), newest first.
    items: Vec<serde_json::Value>,
}

#[derive(ApiResponse)]
enum WebhookListResponse {
    #[oai(status = 200)]
    Ok(Json<WebhookList>),
}

#[derive(ApiResponse)]
enum CreatedResponse {
    /// Subscribed; the secret is in this answer only.
    #[oai(status = 201)]
    Created(
        Json<CreatedWebhook>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted with its deliveries.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum DeliveryListResponse {
    #[oai(status = 200)]
    Ok(Json<DeliveryList>),
}

#[derive(ApiResponse)]
enum ReplayedResponse {
    /// Pending again, with a fresh count of attempts.
    #[oai(status = 200)]
    Ok(Json<DeliveryView>),
}

#[derive(ApiResponse)]
enum EventListResponse {
    #[oai(status = 200)]
    Ok(Json<EventList>),
}

fn event_error(e: EventError, trace: &Trace) -> ApiError {
    match e {
        EventError::Invalid { code, message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message, trace)
        }
        EventError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such webhook or delivery",
            trace,
        ),
        EventError::Store(e) => {
            tracing::error!(error = %e, "storage failure in an event use case");
            ApiError::internal(trace)
        }
    }
}

fn bad_state(trace: &Trace) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "state must be pending, delivered or dead",
        trace,
    )
}

fn envelope(e: &OutboxEvent) -> serde_json::Value {
    serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null)
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminWebhooksApi {
    /// Webhook subscriptions (admin)
    #[oai(path = "/admin/webhooks", method = "get")]
    async fn list(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<WebhookListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let hooks = state
            .events
            .list_webhooks()
            .await
            .map_err(|e| event_error(e, &trace))?;
        Ok(WebhookListResponse::Ok(Json(WebhookList {
            items: hooks.iter().map(WebhookView::from).collect(),
        })))
    }

    /// Subscribe a webhook (admin)
    ///
    /// Events are POSTed as JSON, signed per Standard Webhooks (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`) with the returned secret; failures are
    /// retried with back-off for about a day, then dead-lettered.
    #[oai(path = "/admin/webhooks", method = "post")]
    async fn create(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<NewWebhookBody>,
    ) -> Result<CreatedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let (hook, secret) = state
            .events
            .create_webhook(
                NewWebhook {
                    url: body.0.url,
                    event_types: body.0.event_types,
                },
                &actor.id.to_string(),
            )
            .await
            .map_err(|e| event_error(e, &trace))?;
        Ok(CreatedResponse::Created(
            Json(CreatedWebhook {
                id: hook.id,
                url: hook.url,
                event_types: hook.event_types,
                created_at: time(hook.created_at),
                secret: secret.expose(),
            }),
            "no-store".into(),
        ))
    }

    /// Delete a webhook (admin)
    #[oai(path = "/admin/webhooks/:id", method = "delete")]
    async fn delete(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<DeletedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        state
            .events
            .delete_webhook(id.0, &actor.id.to_string())
            .await
            .map_err(|e| event_error(e, &trace))?;
        Ok(DeletedResponse::Done)
    }

    /// A webhook's deliveries (admin)
    ///
    /// Newest first; `state=dead` lists the dead letters.
    #[oai(path = "/admin/webhooks/:id/deliveries", method = "get")]
    async fn deliveries(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "state", validator(max_length = 16))] filter: Query<Option<String>>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u32>,
    ) -> Result<DeliveryListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let wanted = match filter.0.as_deref() {
            None => None,
            Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| bad_state(&trace))?),
        };
        let items = state
            .events
            .deliveries(&DeliveryQuery {
                webhook_id: Some(id.0),
                event_id: None,
                state: wanted,
                limit: limit.0,
            })
            .await
            .map_err(|e| event_error(e, &trace))?;
        Ok(DeliveryListResponse::Ok(Json(DeliveryList {
            items: items.iter().map(DeliveryView::from).collect(),
        })))
    }

    /// Replay a delivery (admin)
    ///
    /// A dead-lettered (or delivered) delivery is attempted again with a fresh count of
    /// attempts; the receiver sees the same `webhook-id`.
    #[oai(path = "/admin/webhooks/deliveries/:id/replay", method = "post")]
    async fn replay(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<ReplayedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let replayed = state
            .events
            .replay(id.0, &actor.id.to_string())
            .await
            .map_err(|e| match e {
                EventError::Invalid { code, message } => {
                    ApiError::new(StatusCode::CONFLICT, code, message, &trace)
                }
                other => event_error(other, &trace),
            })?;
        Ok(ReplayedResponse::Ok(Json(DeliveryView::from(&replayed))))
    }

    /// Recent events (admin)
    ///
    /// The newest events of the outbox, optionally of one type.
    #[oai(path = "/admin/events", method = "get")]
    async fn events(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "type", validator(max_length = 64))] kind: Query<Option<String>>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u32>,
    ) -> Result<EventListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let events = state
            .events
            .recent_events(&EventQuery {
                kind: kind.0.filter(|k| !k.is_empty()),
                since: None,
                limit: limit.0,
            })
            .await
            .map_err(|e| event_error(e, &trace))?;
        Ok(EventListResponse::Ok(Json(EventList {
            items: events.iter().map(envelope).collect(),
        })))
    }
}

fn default_limit() -> u32 {
    50
}
