//! Process metrics in the Prometheus text format (0.0.4): labelled counters, gauges and
//! latency histograms, kept in memory and rendered on demand by the management listener.
//! Label values are chosen by the code (route names, grant types, client ids), never raw
//! request input, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Families {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    families: Mutex<Families>,
}

/// Help texts of every series, so the exposition documents itself.
const HELP: [(&str, &str, &str); 9] = [
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
];

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        *self.lock().counters.entry(key).or_default() += n;
    }

    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        let mut f = self.lock();
        let h = f.histograms.entry(key).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The exposition text, with point-in-time gauges supplied by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let f = self.lock();
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
        for (name, kind, help) in HELP {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            if kind == "counter" {
                let mut any = false;
                for ((n, labels), v) in f.counters.iter().filter(|((n, _), _)| *n == name) {
                    any = true;
                    out.push_str(&format!("{n}{} {v}\n", fmt_labels(labels, None)));
                }
                if !any {
                    out.push_str(&format!("{name} 0\n"));
                }
            } else {
                for ((n, labels), h) in f.histograms.iter().filter(|((n, _), _)| *n == name) {
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        out.push_str(&format!(
                            "{n}_bucket{} {}\n",
                            fmt_labels(labels, Some(("le", bound.to_string()))),
                            h.counts[i]
                        ));
                    }
                    out.push_str(&format!(
                        "{n}_bucket{} {}\n",
                        fmt_labels(labels, Some(("le", "+Inf".into()))),
                        h.count
                    ));
                    out.push_str(&format!("{n}_sum{} {}\n", fmt_labels(labels, None), h.sum));
                    out.push_str(&format!(
                        "{n}_count{} {}\n",
                        fmt_labels(labels, None),
                        h.count
                    ));
                }
            }
        }
        for (name, help, value) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
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
        m.observe(
            "portcullis_http_request_duration_seconds",
            &[("route", "/token")],
            Duration::from_millis(3),
        );
        let text = m.render(&[("portcullis_up", "Up.", 1.0)]);
        assert!(text.contains("portcullis_logins_total{result=\"failure\"} 2"));
        assert!(text.contains(
            "portcullis_http_request_duration_seconds_bucket{route=\"/token\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "portcullis_http_request_duration_seconds_bucket{route=\"/token\",le=\"0.001\"} 0"
        ));
        assert!(text.contains("portcullis_http_request_duration_seconds_count{route=\"/token\"} 1"));
        assert!(text.contains("portcullis_tokens_issued_total 0"));
        assert!(text.contains("# TYPE portcullis_up gauge\nportcullis_up 1"));
    }
}
