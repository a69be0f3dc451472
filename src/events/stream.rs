//! The Redis stream: each event is `XADD`ed (bounded by `MAXLEN ~`) for consumer groups, and
//! marked streamed only after Redis accepted it. While Redis is down events wait in the outbox
//! and flow, in order, when it returns. One instance at a time streams (a lease), so the
//! stream keeps the outbox's order; a crash between `XADD` and marking repeats an entry, which
//! its `id` field lets a consumer drop.

use super::EventService;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error("{0}")]
    Redis(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventService {
    /// Streams the next batch of events; returns how many went.
    pub(super) async fn stream_pending(&self, holder: &str) -> Result<usize, StreamError> {
        let (Some(stream), Some(redis)) = (&self.settings.redis_stream, &self.redis) else {
            return Ok(0);
        };
        let now = self.clock.now();
        if !self
            .store
            .try_lease(
                "events.stream",
                holder,
                now,
                self.settings.lease_secs as i64,
            )
            .await?
        {
            return Ok(0);
        }
        let events = self.store.unstreamed_events(self.settings.batch).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut conn = redis.connection().await.map_err(StreamError::Redis)?;
        let mut sent = Vec::with_capacity(events.len());
        let mut failure = None;
        for e in &events {
            let added = redis::cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.settings.stream_maxlen)
                .arg("*")
                .arg("id")
                .arg(e.id.to_string())
                .arg("type")
                .arg(&e.kind)
                .arg("event")
                .arg(&e.payload)
                .query_async::<String>(&mut conn)
                .await;
            match added {
                Ok(_) => sent.push(e.id),
                Err(err) => {
                    failure = Some(format!("Redis XADD failed: {err}"));
                    break;
                }
            }
        }
        if !sent.is_empty() {
            self.store.mark_streamed(&sent, self.clock.now()).await?;
            self.metrics
                .add("portcullis_events_streamed_total", &[], sent.len() as u64);
        }
        match failure {
            Some(f) => Err(StreamError::Redis(f)),
            None => Ok(sent.len()),
        }
    }
}
