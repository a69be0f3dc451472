//! The optional Redis connection (a reconnecting connection manager), shared by the rate
//! limiter and the token deny-list. Absent when no Redis URL is configured.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

pub struct RedisHandle {
    client: redis::Client,
    namespace: String,
    manager: OnceCell<ConnectionManager>,
}

impl RedisHandle {
    /// Parses the URL; the connection itself is made on first use, so start-up does not fail
    /// (or hang) while Redis is down.
    pub fn new(url: &str, namespace: &str) -> Result<RedisHandle, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        Ok(RedisHandle {
            client,
            namespace: namespace.to_string(),
            manager: OnceCell::new(),
        })
    }

    /// `namespace:kind:rest`.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.namespace)
    }

    pub async fn connection(&self) -> Result<ConnectionManager, String> {
        let manager = tokio::time::timeout(
            Duration::from_secs(2),
            self.manager.get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(1))
                    .set_response_timeout(Duration::from_millis(500))
                    .set_number_of_retries(2)
                    .set_max_delay(1000);
                ConnectionManager::new_with_config(self.client.clone(), config)
            }),
        )
        .await
        .map_err(|_| "Redis did not answer within 2s".to_string())?
        .map_err(|e| format!("Redis unreachable: {}", e.kind_description()))?;
        Ok(manager.clone())
    }

    /// The channel instances use to tell each other that shared state changed.
    fn events_channel(&self) -> String {
        format!("{}:events", self.namespace)
    }

    /// Tells every instance that `event` happened (e.g. "keys": re-read the signing keys).
    #[tracing::instrument(name = "redis", skip_all, fields(db.system = "redis", db.operation = "PUBLISH", otel.kind = "client"))]
    pub async fn publish(&self, event: &str) -> Result<(), String> {
        let mut conn = self.connection().await?;
        redis::cmd("PUBLISH")
            .arg(self.events_channel())
            .arg(event)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("Redis PUBLISH failed: {}", e.kind_description()))
    }

    /// A stream of the events other instances publish.
    pub async fn subscribe(&self) -> Result<redis::aio::PubSubStream, String> {
        let mut pubsub =
            tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
                .await
                .map_err(|_| "Redis did not answer within 2s".to_string())?
                .map_err(|e| format!("Redis unreachable: {}", e.kind_description()))?;
        pubsub
            .subscribe(self.events_channel())
            .await
            .map_err(|e| format!("Redis SUBSCRIBE failed: {}", e.kind_description()))?;
        Ok(pubsub.into_on_message())
    }

    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| "Redis did not answer PING within 2s".to_string())?
        .map(|_| ())
        .map_err(|e| format!("Redis PING failed: {}", e.kind_description()))
    }
}

/// The span of one Redis call, for traces: the command, never its keys or values.
pub fn span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "redis",
        db.system = "redis",
        db.operation = operation,
        otel.kind = "client"
    )
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    /// The error's category only: a Redis error text can echo the URL and its password.
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}
