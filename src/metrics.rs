//! A few process metrics in the Prometheus text format. (The full set and a separate
//! management listener come with the operations work.)

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub rate_limit_rejections: AtomicU64,
    pub login_failures: AtomicU64,
    pub login_successes: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `degraded` is the rate limiter's Redis fallback state.
    pub fn render(&self, degraded: bool, redis_configured: bool) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        };
        counter(
            "portcullis_rate_limit_rejections_total",
            "Requests answered 429 by a rate limit.",
            get(&self.rate_limit_rejections),
        );
        counter(
            "portcullis_logins_failed_total",
            "Failed password sign-ins.",
            get(&self.login_failures),
        );
        counter(
            "portcullis_logins_succeeded_total",
            "Successful password sign-ins.",
            get(&self.login_successes),
        );
        out.push_str(&format!(
            "# HELP portcullis_rate_limit_degraded 1 while Redis is configured but unreachable and limits are per instance.\n\
             # TYPE portcullis_rate_limit_degraded gauge\nportcullis_rate_limit_degraded {}\n",
            u8::from(degraded)
        ));
        out.push_str(&format!(
            "# HELP portcullis_redis_configured 1 when a Redis URL is configured.\n\
             # TYPE portcullis_redis_configured gauge\nportcullis_redis_configured {}\n",
            u8::from(redis_configured)
        ));
        out
    }
}
