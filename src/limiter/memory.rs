//! The in-process limiter: GCRA state in a map, swept of stale entries as it grows.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{gcra, Decision, LimiterError, Policy, RateLimiter};

#[derive(Default)]
pub struct MemoryLimiter {
    /// key -> theoretical arrival time (ms).
    state: Mutex<HashMap<String, u64>>,
}

const SWEEP_ABOVE: usize = 100_000;

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn hit(&self, key: &str, policy: Policy, now_ms: u64) -> Result<Decision, LimiterError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.len() > SWEEP_ABOVE {
            // A tat in the past means a full budget: the entry carries no information.
            state.retain(|_, tat| *tat > now_ms);
        }
        // A known key is updated in place: only a new one costs an allocation.
        if let Some(tat) = state.get_mut(key) {
            let (decision, new_tat) = gcra(Some(*tat), policy, now_ms);
            if let Some(t) = new_tat {
                *tat = t;
            }
            return Ok(decision);
        }
        let (decision, new_tat) = gcra(None, policy, now_ms);
        if let Some(t) = new_tat {
            state.insert(key.to_string(), t);
        }
        Ok(decision)
    }

    async fn peek(&self, key: &str, policy: Policy, now_ms: u64) -> Result<Decision, LimiterError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(gcra(state.get(key).copied(), policy, now_ms).0)
    }

    async fn reset(&self, key: &str) -> Result<(), LimiterError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }
}
