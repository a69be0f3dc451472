//! `[events]`: the outbox workers, webhook deliveries and the Redis stream (the keys are
//! documented in config/portcullis.example.toml; `Settings::validate` calls `validate`).

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Run the workers (fan-out, webhook deliveries, stream) in this process. Events are
    /// written either way; they wait in the outbox for an instance that delivers.
    pub workers: bool,
    /// How often an idle worker looks for new events and due deliveries.
    pub poll_interval_ms: u64,
    /// Waits before each retry of a failed delivery; after the last, the delivery is
    /// dead-lettered. The default spreads 8 attempts over about 24 hours.
    pub retry_schedule_secs: Vec<u64>,
    /// Each wait is shortened or lengthened by a random share of up to this many percent, so
    /// that retries of many deliveries do not arrive together.
    pub jitter_percent: u64,
    /// Timeout of one delivery request (connect, send, answer).
    pub delivery_timeout_secs: u64,
    /// How long a claimed delivery stays with its instance; if the instance dies, another
    /// takes it over after this. Longer than `delivery_timeout_secs`.
    pub lease_secs: u64,
    /// Events fanned out, and deliveries claimed, per round.
    pub batch: u32,
    /// Webhook targets in these networks (CIDRs) are allowed although private, loopback or
    /// link-local; by default every such target is refused (SSRF).
    pub allow_private_targets: Vec<String>,
    /// With a stream name, every event is also `XADD`ed to this Redis stream (the Redis of
    /// `redis.url`) for consumer groups.
    pub redis_stream: Option<String>,
    /// Approximate bound of the stream (`MAXLEN ~`).
    pub stream_maxlen: u64,
    /// Events are kept this long once nothing waits for them.
    pub retention_secs: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            workers: true,
            poll_interval_ms: 1000,
            // 5 s, 5 min, 30 min, 2 h, 5 h, 8 h, 8 h: about 23.6 h from the first attempt.
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18_000, 28_800, 28_800],
            jitter_percent: 20,
            delivery_timeout_secs: 10,
            lease_secs: 60,
            batch: 50,
            allow_private_targets: Vec::new(),
            redis_stream: None,
            stream_maxlen: 100_000,
            retention_secs: 7 * 86_400,
        }
    }
}

fn invalid(key: &'static str, value: impl ToString, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

impl EventSettings {
    /// The allowed private networks, parsed (validation refused any that do not parse).
    pub fn allowed_networks(&self) -> Vec<ipnet::IpNet> {
        self.allow_private_targets
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    }

    pub fn validate(&self, redis_url: Option<&str>) -> Result<(), ConfigError> {
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err(invalid(
                "events.poll_interval_ms",
                self.poll_interval_ms,
                "10 to 60000 milliseconds",
            ));
        }
        if self.retry_schedule_secs.len() > 30
            || self.retry_schedule_secs.iter().any(|s| *s > 86_400)
        {
            return Err(invalid(
                "events.retry_schedule_secs",
                format!("{:?}", self.retry_schedule_secs),
                "at most 30 waits of at most 86400 seconds each",
            ));
        }
        if self.jitter_percent > 100 {
            return Err(invalid(
                "events.jitter_percent",
                self.jitter_percent,
                "0 to 100",
            ));
        }
        if !(1..=120).contains(&self.delivery_timeout_secs) {
            return Err(invalid(
                "events.delivery_timeout_secs",
                self.delivery_timeout_secs,
                "1 to 120 seconds",
            ));
        }
        if self.lease_secs <= self.delivery_timeout_secs || self.lease_secs > 3600 {
            return Err(invalid(
                "events.lease_secs",
                self.lease_secs,
                "more than events.delivery_timeout_secs, at most 3600 seconds",
            ));
        }
        if !(1..=1000).contains(&self.batch) {
            return Err(invalid("events.batch", self.batch, "1 to 1000"));
        }
        if let Some(bad) = self
            .allow_private_targets
            .iter()
            .find(|c| c.parse::<ipnet::IpNet>().is_err())
        {
            return Err(invalid(
                "events.allow_private_targets",
                bad,
                "CIDR networks such as \"127.0.0.0/8\" or \"::1/128\"",
            ));
        }
        if let Some(stream) = &self.redis_stream {
            if stream.is_empty() || stream.len() > 200 || stream.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "events.redis_stream",
                    stream,
                    "a Redis key name without spaces, e.g. \"portcullis:events\"",
                ));
            }
            if redis_url.is_none() {
                return Err(invalid(
                    "events.redis_stream",
                    stream,
                    "a stream on a configured Redis: set redis.url too",
                ));
            }
        }
        if self.stream_maxlen == 0 {
            return Err(invalid("events.stream_maxlen", 0, "at least 1"));
        }
        let window: u64 = self.retry_schedule_secs.iter().sum();
        if self.retention_secs < window.max(3600) {
            return Err(invalid(
                "events.retention_secs",
                self.retention_secs,
                "at least an hour and at least the whole retry schedule",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(tune: impl FnOnce(&mut EventSettings), redis: Option<&str>) -> String {
        let mut s = EventSettings::default();
        tune(&mut s);
        match s.validate(redis) {
            Err(ConfigError::Invalid { key, .. }) => key.to_string(),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn defaults_pass_and_bad_values_name_their_key() {
        assert!(EventSettings::default().validate(None).is_ok());
        let window: u64 = EventSettings::default().retry_schedule_secs.iter().sum();
        assert!(
            (20 * 3600..=26 * 3600).contains(&window),
            "about a day: {window}"
        );
        assert_eq!(
            refused(
                |s| s.allow_private_targets = vec!["10.0.0.0/33".into()],
                None
            ),
            "events.allow_private_targets"
        );
        assert_eq!(
            refused(|s| s.redis_stream = Some("events".into()), None),
            "events.redis_stream"
        );
        assert_eq!(refused(|s| s.lease_secs = 10, None), "events.lease_secs");
        assert_eq!(
            refused(|s| s.poll_interval_ms = 0, None),
            "events.poll_interval_ms"
        );
        assert_eq!(
            refused(|s| s.retention_secs = 60, None),
            "events.retention_secs"
        );
        let s = EventSettings {
            redis_stream: Some("portcullis:events".into()),
            ..EventSettings::default()
        };
        assert!(s.validate(Some("redis://127.0.0.1")).is_ok());
    }
}
