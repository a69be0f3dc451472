//! Webhook subscriptions and one delivery attempt: validating a target, sealing its secret,
//! signing the request (Standard Webhooks), and deciding what follows a failure (the retry
//! schedule with jitter, then the dead-letter state). Listings and replay for the API and CLI.

use std::time::Instant;

use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use super::signing::WebhookSecret;
use super::{ssrf, EventService, EventType};
use crate::store::{
    AttemptResult, AuditEvent, ClaimedDelivery, Delivery, DeliveryQuery, EventQuery, NextStep,
    OutboxEvent, StoreError, Timestamp, Webhook,
};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Input that breaks a rule; `code` is machine-readable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("not found")]
    NotFound,
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

fn invalid(code: &'static str, message: impl Into<String>) -> EventError {
    EventError::Invalid {
        code,
        message: message.into(),
    }
}

/// What an operator asks for.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    pub url: String,
    /// Event type names; empty: every type.
    pub event_types: Vec<String>,
}

/// The associated data a webhook's secret is sealed with: it opens for that webhook only.
fn seal_context(id: Uuid) -> Vec<u8> {
    let mut context = b"webhook-secret:".to_vec();
    context.extend_from_slice(id.as_bytes());
    context
}

impl EventService {
    /// Registers a subscription and returns it with its secret (shown once, never again).
    /// Receivers often carry a credential in the URL's path or query: logs and the audit
    /// trail get its origin only.
    #[tracing::instrument(skip_all)]
    pub async fn create_webhook(
        &self,
        new: NewWebhook,
        actor: &str,
    ) -> Result<(Webhook, WebhookSecret), EventError> {
        let url = url::Url::parse(&new.url)
            .map_err(|e| invalid("invalid_url", format!("the URL does not parse: {e}")))?;
        if new.url.len() > 2000 || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "invalid_url",
                "the URL must be at most 2000 characters, without user or password",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("invalid_url", "the URL must not have a fragment"));
        }
        ssrf::check_url(&url, &self.allowed).map_err(|m| invalid("invalid_url", m))?;
        let mut types = Vec::new();
        for name in &new.event_types {
            let Some(t) = EventType::parse(name) else {
                return Err(invalid(
                    "invalid_event_type",
                    format!("unknown event type {name:?} (see the catalogue in README \"Events\")"),
                ));
            };
            if !types.contains(&t.as_str().to_string()) {
                types.push(t.as_str().to_string());
            }
        }
        let secret = WebhookSecret::generate();
        let id = Uuid::now_v7();
        let webhook = Webhook {
            id,
            url: url.to_string(),
            event_types: types,
            secret_sealed: self.master.seal(&seal_context(id), secret.bytes()),
            created_at: self.clock.now(),
        };
        self.store.create_webhook(&webhook).await?;
        let origin = url.origin().ascii_serialization();
        let detail = json!({"webhook": id, "origin": origin, "eventTypes": webhook.event_types});
        self.audit("webhook.created", actor, detail).await?;
        Ok((webhook, secret))
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, EventError> {
        Ok(self.store.list_webhooks().await?)
    }

    pub async fn delete_webhook(&self, id: Uuid, actor: &str) -> Result<(), EventError> {
        if !self.store.delete_webhook(id).await? {
            return Err(EventError::NotFound);
        }
        self.audit("webhook.deleted", actor, json!({"webhook": id}))
            .await
    }

    async fn audit(
        &self,
        kind: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), EventError> {
        let mut event = AuditEvent::new(kind, self.clock.now());
        event.actor = Some(actor.to_string());
        event.detail = detail;
        Ok(self.store.record_audit(&event).await?)
    }

    pub async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, EventError> {
        Ok(self.store.list_deliveries(query).await?)
    }

    pub async fn recent_events(&self, query: &EventQuery) -> Result<Vec<OutboxEvent>, EventError> {
        Ok(self.store.recent_events(query).await?)
    }

    /// Sends a dead-lettered (or delivered) delivery again, from a fresh count of attempts.
    pub async fn replay(&self, delivery: Uuid, actor: &str) -> Result<Delivery, EventError> {
        let Some(found) = self.store.get_delivery(delivery).await? else {
            return Err(EventError::NotFound);
        };
        if !self
            .store
            .replay_delivery(delivery, self.clock.now())
            .await?
        {
            return Err(invalid(
                "already_pending",
                "the delivery is pending already: it will be attempted on schedule",
            ));
        }
        self.audit(
            "webhook.replayed",
            actor,
            json!({"delivery": delivery, "event": found.event_id}),
        )
        .await?;
        Ok(self.store.get_delivery(delivery).await?.unwrap_or(found))
    }

    /// The wait before the retry that follows failed attempt number `attempts` (1-based), or
    /// `None` when that was the last attempt (dead letter).
    pub(super) fn retry_wait(&self, attempts: i64) -> Option<i64> {
        let index = usize::try_from(attempts.max(1) - 1).ok()?;
        let base = *self.settings.retry_schedule_secs.get(index)? as i64;
        let spread = base * self.settings.jitter_percent as i64 / 100;
        let jitter = if spread > 0 {
            rand::thread_rng().gen_range(-spread..=spread)
        } else {
            0
        };
        Some((base + jitter).max(0))
    }

    /// One attempt of a claimed delivery; never fails (a failure is a result to record).
    pub(super) async fn attempt(&self, d: &ClaimedDelivery) -> AttemptResult {
        let started = Instant::now();
        let outcome = self.send(d).await;
        let now = self.clock.now();
        self.metrics.observe(
            "portcullis_webhook_delivery_duration_seconds",
            &[],
            started.elapsed(),
        );
        let (status, error) = match outcome {
            Ok(status) if (200..300).contains(&status) => {
                self.metrics.count(
                    "portcullis_webhook_deliveries_total",
                    &[("result", "delivered")],
                );
                return AttemptResult {
                    status: Some(status),
                    error: None,
                    now,
                    next: NextStep::Delivered,
                };
            }
            Ok(status) => (Some(status), format!("the receiver answered {status}")),
            Err(e) => (None, e),
        };
        let next = match self.retry_wait(d.attempts) {
            Some(wait) => NextStep::RetryAt(now + wait),
            None => NextStep::Dead,
        };
        let result = if next == NextStep::Dead {
            "dead_lettered"
        } else {
            "retried"
        };
        self.metrics
            .count("portcullis_webhook_deliveries_total", &[("result", result)]);
        tracing::info!(
            delivery = %d.id, webhook = %d.webhook_id, attempt = d.attempts, error = %error,
            "webhook delivery failed; {}", if next == NextStep::Dead { "dead-lettered" } else { "will retry" }
        );
        AttemptResult {
            status,
            error: Some(error),
            now,
            next,
        }
    }

    /// Signs and posts the event; the receiver's status, or why there was none.
    async fn send(&self, d: &ClaimedDelivery) -> Result<i64, String> {
        let url = url::Url::parse(&d.url).map_err(|e| format!("bad URL: {e}"))?;
        ssrf::check_url(&url, &self.allowed)?;
        let secret = self
            .master
            .open(&seal_context(d.webhook_id), &d.secret_sealed)
            .map(WebhookSecret::from_bytes)
            .map_err(|_| "the webhook secret cannot be opened (master key changed?)".to_string())?;
        let msg_id = d.event_id.to_string();
        let timestamp = self.clock.now();
        let signature = secret.sign(&msg_id, timestamp, d.payload.as_bytes());
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await
            .map_err(describe)?;
        Ok(i64::from(response.status().as_u16()))
    }

    /// Deliveries claimed and attempted in this round (for tests and the worker).
    pub(super) async fn deliver_due(
        &self,
        instance: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        // A claim of its own each round: rows of an earlier round whose result could not be
        // recorded stay with their lease until it runs out, and are not attempted twice.
        let holder = &format!("{instance}/{}", Uuid::new_v4());
        let claimed = self
            .store
            .claim_deliveries(
                holder,
                now,
                self.settings.lease_secs as i64,
                self.settings.batch,
            )
            .await?;
        let attempts = claimed.iter().map(|d| async move {
            let result = self.attempt(d).await;
            if let Err(e) = self.store.finish_delivery(d.id, holder, &result).await {
                tracing::warn!(error = %e, delivery = %d.id, "could not record a delivery attempt; it will be retried when its lease ends");
            }
        });
        futures_util::future::join_all(attempts).await;
        Ok(claimed.len())
    }
}

/// Why a request failed, without the URL's query (kept short for the delivery log).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", detail.chars().take(200).collect::<String>())
    }
}
