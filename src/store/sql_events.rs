//! The event outbox, webhook subscriptions and deliveries: the port and its one SQL body for
//! both adapters (see `sql.rs`). Other store methods write their events with
//! `insert_events` inside their own transaction, so a change and its event commit together.
//! Claiming work is one statement: PostgreSQL skips rows another instance has locked
//! (`FOR UPDATE SKIP LOCKED`); SQLite has one writer, which serialises claims by itself.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, Timestamp};
use crate::events::Event;

/// A webhook subscription. The signing secret is held sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event type names; empty: every type.
    pub event_types: Vec<String>,
    pub secret_sealed: Vec<u8>,
    pub created_at: Timestamp,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted under a lease).
    Pending,
    Delivered,
    /// Dead-lettered: every attempt failed; replayable.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    /// The HTTP status of the last attempt, if the receiver answered.
    pub last_status: Option<i64>,
    /// Why the last attempt failed (never the body sent).
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// A delivery claimed for one attempt, with what the attempt needs.
#[derive(Clone)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub event_id: Uuid,
    /// The event's JSON envelope: the request body.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub created_at: Timestamp,
}

impl fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("event_id", &self.event_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub status: Option<i64>,
    pub error: Option<String>,
    pub now: Timestamp,
    /// Delivered, retry at this time, or dead-lettered.
    pub next: NextStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(Timestamp),
    Dead,
}

/// An event as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: Uuid,
    pub kind: String,
    pub occurred_at: Timestamp,
    /// The JSON envelope.
    pub payload: String,
    pub fanned_out_at: Option<Timestamp>,
    pub streamed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub kind: Option<String>,
    pub since: Option<Timestamp>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub webhook_id: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub state: Option<DeliveryState>,
    pub limit: u32,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes events that accompany no other change (a refused sign-in, a lockout).
    async fn record_events(&self, events: &[Event]) -> StoreResult<()>;
    /// The newest events first.
    async fn recent_events(&self, query: &EventQuery) -> StoreResult<Vec<OutboxEvent>>;
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()>;
    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<Webhook>>;
    /// Oldest first.
    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>>;
    /// Deletes the subscription with its deliveries; false if there is none.
    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool>;
    /// In one transaction: takes up to `batch` events not fanned out yet (skipping those
    /// another instance holds), makes a pending delivery for each webhook that wants one and
    /// existed when it occurred, and marks them fanned out. Returns the events' types.
    async fn fan_out_events(&self, now: Timestamp, batch: u32) -> StoreResult<Vec<String>>;
    /// Claims up to `batch` due deliveries for `holder` until `now + lease_secs`, counting an
    /// attempt on each. A delivery whose lease ran out (its instance died) is due again; of
    /// two instances claiming together each row goes to one.
    async fn claim_deliveries(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        batch: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records an attempt's result, only while `holder` still holds the claim.
    async fn finish_delivery(
        &self,
        id: Uuid,
        holder: &str,
        result: &AttemptResult,
    ) -> StoreResult<bool>;
    /// Newest first.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<Delivery>>;
    /// Makes a dead (or delivered) delivery pending again with a fresh count of attempts;
    /// false if it is pending already or does not exist.
    async fn replay_delivery(&self, id: Uuid, now: Timestamp) -> StoreResult<bool>;
    /// Events not yet added to the stream, oldest first.
    async fn unstreamed_events(&self, batch: u32) -> StoreResult<Vec<OutboxEvent>>;
    async fn mark_streamed(&self, ids: &[Uuid], now: Timestamp) -> StoreResult<()>;
    /// Deletes events that occurred before `before`, fanned out, with no pending delivery
    /// (and, with `keep_unstreamed`, already streamed); at most `batch`. Returns how many.
    async fn purge_events(
        &self,
        before: Timestamp,
        keep_unstreamed: bool,
        batch: u32,
    ) -> StoreResult<u64>;
}

macro_rules! impl_sql_event_store {
    ($store:ty, $db:ty, $backend:literal, $lock:literal) => {
        use $crate::events::Event;
        use $crate::store::{
            AttemptResult, ClaimedDelivery, Delivery, DeliveryQuery, DeliveryState, EventQuery,
            EventStore, NextStep, OutboxEvent, Webhook,
        };

        /// Writes `events` on `conn`: called inside the transaction of the change they describe.
        async fn insert_events(
            conn: &mut <$db as sqlx::Database>::Connection,
            events: &[Event],
        ) -> StoreResult<()> {
            for e in events {
                sqlx::query(
                    "INSERT INTO events (id, type, occurred_at, payload) VALUES ($1, $2, $3, $4)",
                )
                .bind(e.id)
                .bind(e.kind.as_str())
                .bind(e.occurred_at)
                .bind(e.to_json())
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        /// Runs `query` and writes `events` in one transaction, committed only when the query
        /// changed exactly one row (so a change that did not happen emits nothing).
        async fn execute_one_with_events<'q>(
            writer: &sqlx::Pool<$db>,
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            events: &[Event],
        ) -> StoreResult<bool> {
            let mut tx = writer.begin().await?;
            let done = query.execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            insert_events(&mut tx, events).await?;
            tx.commit().await?;
            Ok(true)
        }

        const OUTBOX_COLUMNS: &str = "id, type, occurred_at, payload, fanned_out_at, streamed_at";
        const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.type, d.state, \
            d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at, \
            d.delivered_at";

        fn outbox_from_row(row: &DbRow) -> StoreResult<OutboxEvent> {
            Ok(OutboxEvent {
                id: row.try_get("id")?,
                kind: row.try_get("type")?,
                occurred_at: row.try_get("occurred_at")?,
                payload: row.try_get("payload")?,
                fanned_out_at: row.try_get("fanned_out_at")?,
                streamed_at: row.try_get("streamed_at")?,
            })
        }

        fn webhook_from_row(row: &DbRow) -> StoreResult<Webhook> {
            Ok(Webhook {
                id: row.try_get("id")?,
                url: row.try_get("url")?,
                event_types: list_from_json("event_types", row.try_get("event_types")?)?,
                secret_sealed: row.try_get("secret_sealed")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn delivery_from_row(row: &DbRow) -> StoreResult<Delivery> {
            let state: String = row.try_get("state")?;
            Ok(Delivery {
                id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("type")?,
                state: DeliveryState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
                attempts: row.try_get("attempts")?,
                next_attempt_at: row.try_get("next_attempt_at")?,
                last_status: row.try_get("last_status")?,
                last_error: row.try_get("last_error")?,
                created_at: row.try_get("created_at")?,
                delivered_at: row.try_get("delivered_at")?,
            })
        }

        #[async_trait]
        impl EventStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn record_events(&self, events: &[Event]) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn recent_events(&self, q: &EventQuery) -> StoreResult<Vec<OutboxEvent>> {
                let sql = format!(
                    "SELECT {OUTBOX_COLUMNS} FROM events WHERE ($1 IS NULL OR type = $1) \
                     AND ($2 IS NULL OR occurred_at >= $2) ORDER BY id DESC LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(q.kind.as_deref())
                    .bind(q.since)
                    .bind(i64::from(q.limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(outbox_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_webhook(&self, w: &Webhook) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO webhooks (id, url, event_types, secret_sealed, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(w.id)
                .bind(&w.url)
                .bind(list_to_json(&w.event_types))
                .bind(&w.secret_sealed)
                .bind(w.created_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<Webhook>> {
                let row = sqlx::query(
                    "SELECT id, url, event_types, secret_sealed, created_at FROM webhooks \
                     WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(webhook_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>> {
                let rows = sqlx::query(
                    "SELECT id, url, event_types, secret_sealed, created_at FROM webhooks \
                     ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(webhook_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn fan_out_events(&self, now: Timestamp, batch: u32) -> StoreResult<Vec<String>> {
                // Writes first (the claim), so SQLite takes its write lock at once and
                // PostgreSQL skips the events another instance is fanning out.
                let mut tx = self.writer.begin().await?;
                let sql = format!(
                    "UPDATE events SET fanned_out_at = $1 WHERE id IN (SELECT id FROM events \
                     WHERE fanned_out_at IS NULL ORDER BY id LIMIT $2 {}) \
                     RETURNING id, type, occurred_at",
                    $lock
                );
                let mut events = Vec::new();
                for row in sqlx::query(&sql)
                    .bind(now)
                    .bind(i64::from(batch))
                    .fetch_all(&mut *tx)
                    .await?
                {
                    let id: Uuid = row.try_get("id")?;
                    let kind: String = row.try_get("type")?;
                    let occurred_at: Timestamp = row.try_get("occurred_at")?;
                    events.push((id, kind, occurred_at));
                }
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                events.sort_by_key(|(id, _, _)| *id);
                let hooks: Vec<Webhook> = sqlx::query(
                    "SELECT id, url, event_types, secret_sealed, created_at FROM webhooks",
                )
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(webhook_from_row)
                .collect::<StoreResult<_>>()?;
                for (id, kind, occurred_at) in &events {
                    for hook in hooks
                        .iter()
                        .filter(|h| h.wants(kind) && h.created_at <= *occurred_at)
                    {
                        sqlx::query(
                            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, \
                             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $4) \
                             ON CONFLICT (webhook_id, event_id) DO NOTHING",
                        )
                        .bind(Uuid::now_v7())
                        .bind(hook.id)
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(events.into_iter().map(|(_, kind, _)| kind).collect())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn claim_deliveries(
                &self,
                holder: &str,
                now: Timestamp,
                lease_secs: i64,
                batch: u32,
            ) -> StoreResult<Vec<ClaimedDelivery>> {
                let sql = format!(
                    "UPDATE webhook_deliveries SET leased_by = $1, lease_until = $2, \
                     attempts = attempts + 1 WHERE id IN (SELECT id FROM webhook_deliveries \
                     WHERE state = 'pending' AND next_attempt_at <= $3 \
                     AND (lease_until IS NULL OR lease_until <= $3) \
                     ORDER BY next_attempt_at LIMIT $4 {})",
                    $lock
                );
                let claimed = sqlx::query(&sql)
                    .bind(holder)
                    .bind(now + lease_secs)
                    .bind(now)
                    .bind(i64::from(batch))
                    .execute(&self.writer)
                    .await?;
                if claimed.rows_affected() == 0 {
                    return Ok(Vec::new());
                }
                let rows = sqlx::query(
                    "SELECT d.id, d.webhook_id, d.event_id, d.attempts, d.created_at, w.url, \
                     w.secret_sealed, e.payload FROM webhook_deliveries d \
                     JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id \
                     WHERE d.leased_by = $1 AND d.state = 'pending' ORDER BY d.id",
                )
                .bind(holder)
                .fetch_all(&self.writer)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ClaimedDelivery {
                            id: row.try_get("id")?,
                            webhook_id: row.try_get("webhook_id")?,
                            url: row.try_get("url")?,
                            secret_sealed: row.try_get("secret_sealed")?,
                            event_id: row.try_get("event_id")?,
                            payload: row.try_get("payload")?,
                            attempts: row.try_get("attempts")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn finish_delivery(
                &self,
                id: Uuid,
                holder: &str,
                r: &AttemptResult,
            ) -> StoreResult<bool> {
                let (state, next_at, delivered_at) = match r.next {
                    NextStep::Delivered => (DeliveryState::Delivered, r.now, Some(r.now)),
                    NextStep::RetryAt(at) => (DeliveryState::Pending, at, None),
                    NextStep::Dead => (DeliveryState::Dead, r.now, None),
                };
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, \
                     delivered_at = $3, last_status = $4, last_error = $5, leased_by = NULL, \
                     lease_until = NULL WHERE id = $6 AND leased_by = $7",
                )
                .bind(state.as_str())
                .bind(next_at)
                .bind(delivered_at)
                .bind(r.status)
                .bind(r.error.as_deref())
                .bind(id)
                .bind(holder)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_deliveries(&self, q: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
                     JOIN events e ON e.id = d.event_id WHERE ($1 IS NULL OR d.webhook_id = $1) \
                     AND ($2 IS NULL OR d.event_id = $2) AND ($3 IS NULL OR d.state = $3) \
                     ORDER BY d.id DESC LIMIT $4"
                );
                let rows = sqlx::query(&sql)
                    .bind(q.webhook_id)
                    .bind(q.event_id)
                    .bind(q.state.map(DeliveryState::as_str))
                    .bind(i64::from(q.limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(delivery_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<Delivery>> {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
                     JOIN events e ON e.id = d.event_id WHERE d.id = $1"
                );
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(delivery_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn replay_delivery(&self, id: Uuid, now: Timestamp) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                     next_attempt_at = $1, delivered_at = NULL, leased_by = NULL, \
                     lease_until = NULL WHERE id = $2 AND state <> 'pending'",
                )
                .bind(now)
                .bind(id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn unstreamed_events(&self, batch: u32) -> StoreResult<Vec<OutboxEvent>> {
                let sql = format!(
                    "SELECT {OUTBOX_COLUMNS} FROM events WHERE streamed_at IS NULL \
                     ORDER BY id LIMIT $1"
                );
                let rows = sqlx::query(&sql)
                    .bind(i64::from(batch))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(outbox_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn mark_streamed(&self, ids: &[Uuid], now: Timestamp) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                for id in ids {
                    sqlx::query("UPDATE events SET streamed_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn purge_events(
                &self,
                before: Timestamp,
                keep_unstreamed: bool,
                batch: u32,
            ) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ev \
                     WHERE ev.occurred_at < $1 AND ev.fanned_out_at IS NOT NULL \
                     AND (NOT $2 OR ev.streamed_at IS NOT NULL) \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                     WHERE d.event_id = ev.id AND d.state = 'pending') LIMIT $3)",
                )
                .bind(before)
                .bind(keep_unstreamed)
                .bind(i64::from(batch))
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(super) use impl_sql_event_store;
