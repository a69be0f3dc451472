//! `portcullis webhook ...`: subscribe, list, delete webhooks, read their deliveries and
//! replay dead letters — the `EventService` use cases the admin API (`/admin/webhooks`) calls.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use super::{show_time, CliError};
use crate::app;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::events::{EventError, EventService, NewWebhook};
use crate::store::{Delivery, DeliveryQuery, DeliveryState};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Subscribe a URL to events; prints its signing secret (whsec_...) once
    Create {
        /// Where events are POSTed (private addresses need events.allow_private_targets)
        #[arg(long)]
        url: String,
        /// An event type to receive (repeat for several; none: every type)
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// Print {"id": ..., "secret": ...}
        #[arg(long)]
        json: bool,
    },
    /// List subscriptions
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a subscription and its deliveries
    Delete { id: Uuid },
    /// List deliveries, newest first (of one webhook, in one state)
    Deliveries {
        /// Only this webhook's
        #[arg(long)]
        webhook: Option<Uuid>,
        /// pending, delivered or dead
        #[arg(long)]
        state: Option<String>,
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Attempt a dead-lettered (or delivered) delivery again
    Replay { delivery: Uuid },
}

/// The audit trail's actor for changes made here.
const ACTOR: &str = "cli";

/// The event service without workers (the running servers deliver).
pub(super) async fn service(settings: &Settings) -> Result<EventService, CliError> {
    let store = app::open_store(settings).await?;
    let master = app::master_key(settings)?;
    EventService::new(
        store,
        Arc::new(SystemClock),
        master,
        settings.events.clone(),
        Arc::default(),
        None,
    )
    .map_err(CliError::Failed)
}

fn failed(e: EventError) -> CliError {
    match e {
        EventError::Invalid { .. } | EventError::NotFound => CliError::BadInput(e.to_string()),
        EventError::Store(e) => CliError::Failed(e.to_string()),
    }
}

pub async fn run(cmd: WebhookCommand, settings: &Settings) -> Result<(), CliError> {
    let events = service(settings).await?;
    match cmd {
        WebhookCommand::Create {
            url,
            events: types,
            json,
        } => {
            let (hook, secret) = events
                .create_webhook(
                    NewWebhook {
                        url,
                        event_types: types,
                    },
                    ACTOR,
                )
                .await
                .map_err(failed)?;
            if json {
                println!("{}", json!({"id": hook.id, "secret": secret.expose()}));
            } else {
                println!("webhook {} for {}", hook.id, hook.url);
                println!(
                    "secret: {} (shown once; give it to the receiver)",
                    secret.expose()
                );
            }
            Ok(())
        }
        WebhookCommand::List { json } => {
            let hooks = events.list_webhooks().await.map_err(failed)?;
            if json {
                let items: Vec<_> = hooks
                    .iter()
                    .map(|h| json!({"id": h.id, "url": h.url, "eventTypes": h.event_types, "createdAt": h.created_at}))
                    .collect();
                println!("{}", serde_json::Value::from(items));
                return Ok(());
            }
            println!("{:<36}  {:<21} {:<40} EVENTS", "ID", "CREATED", "URL");
            for h in hooks {
                let types = if h.event_types.is_empty() {
                    "*".to_string()
                } else {
                    h.event_types.join(",")
                };
                println!(
                    "{:<36}  {:<21} {:<40} {types}",
                    h.id,
                    show_time(h.created_at),
                    h.url
                );
            }
            Ok(())
        }
        WebhookCommand::Delete { id } => {
            events.delete_webhook(id, ACTOR).await.map_err(failed)?;
            println!("deleted webhook {id}");
            Ok(())
        }
        WebhookCommand::Deliveries {
            webhook,
            state,
            limit,
            json,
        } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
                    CliError::BadInput(format!(
                        "--state {s:?}: expected pending, delivered or dead"
                    ))
                })?),
            };
            let list = events
                .deliveries(&DeliveryQuery {
                    webhook_id: webhook,
                    event_id: None,
                    state,
                    limit: limit.clamp(1, 10_000),
                })
                .await
                .map_err(failed)?;
            for d in &list {
                print_delivery(d, json);
            }
            Ok(())
        }
        WebhookCommand::Replay { delivery } => {
            let d = events.replay(delivery, ACTOR).await.map_err(failed)?;
            println!("delivery {} of event {} is pending again", d.id, d.event_id);
            Ok(())
        }
    }
}

fn print_delivery(d: &Delivery, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "id": d.id, "webhookId": d.webhook_id, "eventId": d.event_id,
                "eventType": d.event_type, "state": d.state.as_str(), "attempts": d.attempts,
                "nextAttemptAt": d.next_attempt_at, "lastStatus": d.last_status,
                "lastError": d.last_error, "deliveredAt": d.delivered_at,
            })
        );
        return;
    }
    println!(
        "{}  {:<9} {:<28} attempts={} {}{}",
        d.id,
        d.state.as_str(),
        d.event_type,
        d.attempts,
        d.last_status
            .map(|s| format!("status={s} "))
            .unwrap_or_default(),
        d.last_error.as_deref().unwrap_or("")
    );
}
