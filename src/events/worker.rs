//! The delivery loop every instance runs (with `events.workers`): fan new events out to
//! their webhooks, attempt due deliveries, feed the stream, and now and then purge what
//! nobody waits for. Work is claimed in the store, so instances never double it.

use std::sync::Arc;
use std::time::Duration;

use super::EventService;

/// Rounds between purges of old events.
const PURGE_EVERY: u64 = 600;

impl EventService {
    /// One round of every job; answers whether there was work (then the next round starts
    /// at once).
    pub async fn work_once(&self, holder: &str) -> bool {
        let now = self.clock.now();
        let mut busy = false;
        match self.store.fan_out_events(now, self.settings.batch).await {
            Ok(kinds) => {
                busy |= kinds.len() as u32 == self.settings.batch;
                for kind in &kinds {
                    self.metrics
                        .count("portcullis_events_total", &[("type", kind.as_str())]);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not fan out events; will retry"),
        }
        // The claim's lease counts from the moment of the claim, not from the round's start.
        match self.deliver_due(holder, self.clock.now()).await {
            Ok(n) => busy |= n > 0,
            Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries; will retry"),
        }
        match self.stream_pending(holder).await {
            Ok(n) => busy |= n as u32 == self.settings.batch,
            Err(e) => tracing::debug!(error = %e, "events wait in the outbox for the stream"),
        }
        busy
    }

    /// Deletes events past their retention in batches of 1000 until none is left (at most
    /// 100 batches a call), so the purge keeps up with a busy server.
    async fn purge(&self) {
        let before = self.clock.now() - self.settings.retention_secs as i64;
        let keep_unstreamed = self.settings.redis_stream.is_some();
        let mut removed = 0u64;
        for _ in 0..100 {
            match self.store.purge_events(before, keep_unstreamed, 1000).await {
                Ok(n) => {
                    removed += n;
                    if n < 1000 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge old events");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "purged delivered events past their retention");
        }
    }
}

/// Runs the workers until the task is aborted.
pub async fn run(events: Arc<EventService>) {
    if !events.settings.workers {
        return;
    }
    let holder = uuid::Uuid::new_v4().to_string();
    let idle = Duration::from_millis(events.settings.poll_interval_ms);
    let mut round: u64 = 0;
    loop {
        round = round.wrapping_add(1);
        if round % PURGE_EVERY == 1 {
            events.purge().await;
        }
        if !events.work_once(&holder).await {
            tokio::time::sleep(idle).await;
        }
    }
}
