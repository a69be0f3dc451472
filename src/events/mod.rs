//! Domain events: the catalogue, webhook subscriptions with signed, retried deliveries, and
//! the Redis stream. Events are written by the store in the transaction of their change (the
//! outbox); this room decides who gets them, how often to try, and signs what is sent.
//! Never sends a secret, never follows a redirect, never calls an internal address unasked.

mod catalogue;
mod settings;
pub mod signing;
pub mod ssrf;
mod stream;
mod webhooks;
pub mod worker;

use std::sync::Arc;

pub use catalogue::{Event, EventType, SCHEMA_VERSION};
pub use settings::EventSettings;
pub use signing::WebhookSecret;
pub use webhooks::{EventError, NewWebhook};

use crate::cache::RedisHandle;
use crate::clock::Clock;
use crate::keys::MasterKey;
use crate::metrics::Metrics;
use crate::store::Store;

/// The event use cases (webhook management, replay, listings) and the delivery workers.
/// Built once in `app.rs` (and by the CLI, without workers).
pub struct EventService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    settings: EventSettings,
    metrics: Arc<Metrics>,
    redis: Option<Arc<RedisHandle>>,
    http: reqwest::Client,
    allowed: Vec<ipnet::IpNet>,
}

impl EventService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        settings: EventSettings,
        metrics: Arc<Metrics>,
        redis: Option<Arc<RedisHandle>>,
    ) -> Result<EventService, String> {
        let allowed = settings.allowed_networks();
        let http = ssrf::delivery_client(
            allowed.clone(),
            std::time::Duration::from_secs(settings.delivery_timeout_secs),
        )?;
        Ok(EventService {
            store,
            clock,
            master,
            settings,
            metrics,
            redis,
            http,
            allowed,
        })
    }

    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }
}
