//! Process metrics in the Prometheus text format (0.0.4): labelled counters, gauges and
//! latency histograms, kept in memory and rendered on demand by the management listener.
//! Label values are chosen by the code (route names, grant types, client ids), never raw
//! request input, so cardinality stays bounded.
//!
//! Recording takes no mutex: the per-request HTTP series are atomics in a table indexed by
//! route and status, and other series are atomics found under a shared read lock (the write
//! lock is taken once per new label set).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The routes HTTP metrics are labelled with; any other path counts as `other`.
pub const ROUTES: [&str; 42] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/jwks.json",
    "/authorize",
    "/token",
    "/revoke",
    "/introspect",
    "/userinfo",
    "/login",
    "/consent",
    "/end_session",
    "/static/portcullis.css",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/",
    "/register",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
    "/auth/me",
    "/auth/change-password",
    "/auth/password-reset/request",
    "/auth/password-reset/confirm",
    "/auth/verify-email",
    "/auth/verify-email/resend",
    "/users",
    "/admin/audit",
    "/openapi.json",
    "/par",
    "/device_authorization",
    "/device",
    "/device/confirm",
    "/connect/register",
    "/upstream/{id}/start",
    "/upstream/{id}/callback",
    "/upstream/link",
    "/users/{id}",
];
const OTHER_ROUTE: usize = ROUTES.len();
/// Every `/users/{id}` path counts as this route.
const USERS_ID: usize = ROUTES.len() - 1;
const _: () = assert!(matches!(ROUTES[USERS_ID].as_bytes(), b"/users/{id}"));
const ROUTE_LABELS: usize = ROUTES.len() + 1;

/// The metrics label of a request path, as an index into [`ROUTES`] (or `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(usize);

impl Route {
    pub fn of(path: &str) -> Route {
        if path.starts_with("/users/") {
            return Route(USERS_ID);
        }
        // Each client's configuration endpoint counts as the registration endpoint.
        if path.starts_with("/connect/register/") {
            return Route::of("/connect/register");
        }
        // Every provider's start and callback count as one route each.
        let path = match path.strip_prefix("/upstream/") {
            Some(rest) if rest.ends_with("/start") => "/upstream/{id}/start",
            Some(rest) if rest.ends_with("/callback") => "/upstream/{id}/callback",
            _ => path,
        };
        Route(
            ROUTES
                .iter()
                .position(|r| *r == path)
                .unwrap_or(OTHER_ROUTE),
        )
    }

    pub fn label(self) -> &'static str {
        ROUTES.get(self.0).copied().unwrap_or("other")
    }
}

/// HTTP status codes 100..=599, one counter each (hyper never sends another).
const STATUSES: usize = 500;

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    /// Nanoseconds, so that the sum is an integer atomic too.
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // Buckets are cumulative (`le`): only the first that holds the value is counted here,
        // rendering adds them up.
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(c) = self.counts.get(i) {
                c.fetch_add(1, Relaxed);
            }
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

struct HttpSeries {
    /// `[route][status - 100]`
    requests: Vec<AtomicU64>,
    durations: Vec<Histogram>,
}

impl Default for HttpSeries {
    fn default() -> Self {
        HttpSeries {
            requests: (0..ROUTE_LABELS * STATUSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            durations: (0..ROUTE_LABELS).map(|_| Histogram::default()).collect(),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

enum Value {
    Counter(AtomicU64),
    Histogram(Histogram),
}

struct Series {
    name: &'static str,
    labels: Labels,
    value: Arc<Value>,
}

impl Series {
    fn is(&self, name: &str, labels: &[(&'static str, &str)]) -> bool {
        self.name == name
            && self.labels.len() == labels.len()
            && self
                .labels
                .iter()
                .zip(labels)
                .all(|((k, v), (k2, v2))| k == k2 && v == v2)
    }
}

#[derive(Default)]
pub struct Metrics {
    http: HttpSeries,
    /// Keyed by a hash of name and labels; the vector holds the (rare) collisions.
    series: RwLock<HashMap<u64, Vec<Series>>>,
}

/// Help texts of every series, so the exposition documents itself.
const HELP: [(&str, &str, &str); 22] = [
    (
        "portcullis_http_requests_total",
        "counter",
        "HTTP requests by route and status.",
    ),
    (
        "portcullis_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by route.",
    ),
    (
        "portcullis_tokens_issued_total",
        "counter",
        "Tokens issued by the token endpoint, by grant and client.",
    ),
    (
        "portcullis_logins_total",
        "counter",
        "Password sign-ins by result.",
    ),
    (
        "portcullis_refresh_reuse_detected_total",
        "counter",
        "Refresh token reuse detections (families revoked).",
    ),
    (
        "portcullis_rate_limit_rejections_total",
        "counter",
        "Requests answered 429 by a rate limit.",
    ),
    (
        "portcullis_password_hash_duration_seconds",
        "histogram",
        "argon2id hashing and verification time.",
    ),
    (
        "portcullis_janitor_removed_total",
        "counter",
        "Expired rows deleted by the janitor.",
    ),
    (
        "portcullis_key_rotations_total",
        "counter",
        "Scheduled signing key rotations by algorithm.",
    ),
    (
        "portcullis_mfa_verifications_total",
        "counter",
        "Second-factor and passkey checks by method and result.",
    ),
    (
        "portcullis_mfa_changes_total",
        "counter",
        "Second factors enrolled, removed or reset, by kind.",
    ),
    (
        "portcullis_par_requests_total",
        "counter",
        "Pushed authorization requests (RFC 9126) accepted, or refused by error.",
    ),
    (
        "portcullis_par_request_uris_total",
        "counter",
        "Request URIs brought to /authorize: consumed by a code, expired, reused or unknown.",
    ),
    (
        "portcullis_device_codes_total",
        "counter",
        "Device authorization codes (RFC 8628) by event: issued, approved, denied, expired.",
    ),
    (
        "portcullis_client_registrations_total",
        "counter",
        "Dynamic client registrations (RFC 7591) by mode and result.",
    ),
    (
        "portcullis_client_registration_management_total",
        "counter",
        "Reads, updates and deletions of dynamic registrations (RFC 7592), and unused clients expired, by result.",
    ),
    (
        "portcullis_magic_links_total",
        "counter",
        "Sign-in links by result (sent, unknown, throttled, used, refused) and refusal reason.",
    ),
    (
        "portcullis_upstream_sign_ins_total",
        "counter",
        "Upstream sign-ins (\"Sign in with ...\") by provider and result: success, created, linked, link_required, or the refusal reason.",
    ),
    (
        "portcullis_events_total",
        "counter",
        "Domain events written to the outbox, by type (counted when fanned out).",
    ),
    (
        "portcullis_webhook_deliveries_total",
        "counter",
        "Webhook delivery attempts by result: delivered, retried, dead_lettered.",
    ),
    (
        "portcullis_webhook_delivery_duration_seconds",
        "histogram",
        "Webhook delivery request latency.",
    ),
    (
        "portcullis_events_streamed_total",
        "counter",
        "Events added to the Redis stream.",
    ),
];

fn key(name: &str, labels: &[(&'static str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

impl Metrics {
    /// One served request: its route, status and latency.
    pub fn http_request(&self, route: Route, status: u16, elapsed: Duration) {
        let status = usize::from(status.clamp(100, 599)) - 100;
        if let Some(c) = self.http.requests.get(route.0 * STATUSES + status) {
            c.fetch_add(1, Relaxed);
        }
        if let Some(h) = self.http.durations.get(route.0) {
            h.observe(elapsed);
        }
    }

    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        if let Value::Counter(c) = &*self.series(name, labels, false) {
            c.fetch_add(n, Relaxed);
        }
    }

    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], elapsed: Duration) {
        if let Value::Histogram(h) = &*self.series(name, labels, true) {
            h.observe(elapsed);
        }
    }

    /// The series of `name` and `labels`, made on first use.
    fn series(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        histogram: bool,
    ) -> Arc<Value> {
        let k = key(name, labels);
        {
            let map = self.series.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map
                .get(&k)
                .and_then(|v| v.iter().find(|s| s.is(name, labels)))
            {
                return s.value.clone();
            }
        }
        let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
        let bucket = map.entry(k).or_default();
        if let Some(s) = bucket.iter().find(|s| s.is(name, labels)) {
            return s.value.clone();
        }
        let value = Arc::new(if histogram {
            Value::Histogram(Histogram::default())
        } else {
            Value::Counter(AtomicU64::new(0))
        });
        bucket.push(Series {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value: value.clone(),
        });
        value
    }

    /// The exposition text, with point-in-time gauges supplied by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        use std::fmt::Write;
        // A snapshot of the labelled series, sorted by name and labels for a stable output.
        let mut series: Vec<(&'static str, Labels, Arc<Value>)> = {
            let map = self.series.read().unwrap_or_else(|p| p.into_inner());
            map.values()
                .flatten()
                .map(|s| (s.name, s.labels.clone(), s.value.clone()))
                .collect()
        };
        for (r, route) in ROUTES.iter().chain(["other"].iter()).enumerate() {
            for s in 0..STATUSES {
                let n = self
                    .http
                    .requests
                    .get(r * STATUSES + s)
                    .map_or(0, |c| c.load(Relaxed));
                if n > 0 {
                    let c = AtomicU64::new(n);
                    series.push((
                        "portcullis_http_requests_total",
                        vec![
                            ("route", route.to_string()),
                            ("status", (s + 100).to_string()),
                        ],
                        Arc::new(Value::Counter(c)),
                    ));
                }
            }
        }
        series.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut out = String::new();
        let fmt_labels = |labels: &Labels, extra: Option<(&str, String)>| {
            let mut parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", parts.join(","))
            }
        };
        let histogram = |out: &mut String, n: &str, labels: &Labels, h: &Histogram| {
            // Read while requests are recorded: `count` first, and buckets capped at it, so
            // that the exposition stays monotonic (le="5" never above +Inf).
            let count = h.count.load(Relaxed);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.counts.get(i).map_or(0, |c| c.load(Relaxed));
                cumulative = cumulative.min(count);
                let _ = writeln!(
                    out,
                    "{n}_bucket{} {cumulative}",
                    fmt_labels(labels, Some(("le", bound.to_string())))
                );
            }
            let sum = h.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{n}_bucket{} {count}",
                fmt_labels(labels, Some(("le", "+Inf".into())))
            );
            let _ = writeln!(out, "{n}_sum{} {sum}", fmt_labels(labels, None));
            let _ = writeln!(out, "{n}_count{} {count}", fmt_labels(labels, None));
        };
        for (name, kind, help) in HELP {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            let mut any = false;
            for (n, labels, value) in series.iter().filter(|(n, _, _)| *n == name) {
                any = true;
                match &**value {
                    Value::Counter(c) => {
                        let _ =
                            writeln!(out, "{n}{} {}", fmt_labels(labels, None), c.load(Relaxed));
                    }
                    Value::Histogram(h) => histogram(&mut out, n, labels, h),
                }
            }
            if name == "portcullis_http_request_duration_seconds" {
                for (r, route) in ROUTES.iter().chain(["other"].iter()).enumerate() {
                    if let Some(h) = self.http.durations.get(r) {
                        if h.count.load(Relaxed) > 0 {
                            histogram(&mut out, name, &vec![("route", route.to_string())], h);
                        }
                    }
                }
            } else if kind == "counter" && !any {
                let _ = writeln!(out, "{name} 0");
            }
        }
        for (name, help, value) in gauges {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.count("portcullis_logins_total", &[("result", "failure")]);
        m.count("portcullis_logins_total", &[("result", "failure")]);
        m.count("portcullis_logins_total", &[("result", "success")]);
        m.http_request(Route::of("/token"), 200, Duration::from_millis(3));
        m.http_request(Route::of("/token"), 200, Duration::from_millis(30));
        m.http_request(Route::of("/nowhere"), 404, Duration::from_millis(1));
        m.observe(
            "portcullis_password_hash_duration_seconds",
            &[("op", "verify")],
            Duration::from_millis(40),
        );
        let text = m.render(&[("portcullis_up", "Up.", 1.0)]);
        assert!(text.contains("portcullis_logins_total{result=\"failure\"} 2"));
        assert!(text.contains("portcullis_logins_total{result=\"success\"} 1"));
        assert!(text.contains(
            "portcullis_http_request_duration_seconds_bucket{route=\"/token\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "portcullis_http_request_duration_seconds_bucket{route=\"/token\",le=\"0.05\"} 2"
        ));
        assert!(text.contains(
            "portcullis_http_request_duration_seconds_bucket{route=\"/token\",le=\"0.001\"} 0"
        ));
        assert!(text.contains("portcullis_http_request_duration_seconds_count{route=\"/token\"} 2"));
        assert!(text.contains("portcullis_http_requests_total{route=\"/token\",status=\"200\"} 2"));
        assert!(text.contains("portcullis_http_requests_total{route=\"other\",status=\"404\"} 1"));
        assert!(text.contains(
            "portcullis_password_hash_duration_seconds_bucket{op=\"verify\",le=\"0.05\"} 1"
        ));
        assert!(text.contains("portcullis_tokens_issued_total 0"));
        assert!(text.contains("# TYPE portcullis_up gauge\nportcullis_up 1"));
    }

    #[test]
    fn parallel_recording_loses_nothing() {
        let m = Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.count("portcullis_tokens_issued_total", &[("grant", "x")]);
                        m.http_request(Route::of("/jwks.json"), 200, Duration::ZERO);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render(&[]);
        assert!(text.contains("portcullis_tokens_issued_total{grant=\"x\"} 4000"));
        assert!(text
            .contains("portcullis_http_requests_total{route=\"/jwks.json\",status=\"200\"} 4000"));
    }
}
