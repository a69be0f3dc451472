//! Markdown tables for one server's run and for the side-by-side comparison with a peer.
//! Only formats what was measured; decides nothing about pass or fail.

use serde_json::{json, Value};

/// What differs between the Portcullis and node-oidc-provider versions of a scenario
/// (bench/README.md has the long form).
fn difference(scenario: &str) -> &'static str {
    match scenario {
        "discovery" => "",
        "jwks" => "same key set (2 each of RS256, PS256, ES256, EdDSA)",
        "client_credentials" => "both sign an ES256 JWT; the peer stores nothing",
        "client_credentials_rs256" => "Portcullis only: the same grant with RS256 access tokens",
        "refresh_token" => "peer rotates in memory, Portcullis in its database",
        "refresh_token_es256_id" => {
            "Portcullis with ES256 ID tokens against the peer's refresh_token (RS256 ID tokens)"
        }
        "userinfo" => "peer: opaque token read from memory; Portcullis: ES256 JWT + database",
        "introspection" => "peer: opaque token read from memory; Portcullis: ES256 JWT + database",
        "password_login" => "argon2id at the same parameters; peer needs 3 requests, Portcullis 2",
        "authorization_code_flow" => "peer has one more redirect (its interaction page)",
        _ => "",
    }
}

fn num(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or(0.0)
}

fn ratio(ours: f64, theirs: f64) -> Value {
    if ours > 0.0 && theirs > 0.0 {
        json!(ours / theirs)
    } else {
        Value::Null
    }
}

pub fn print_run(server: &str, report: &Value) {
    println!("\n### {server}\n");
    println!("| scenario | req/s | req/s per server core | p50 ms | p99 ms | errors | server peak RSS MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in report["scenarios"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {:.1} |",
            r["scenario"].as_str().unwrap_or(""),
            num(r, "rps"),
            num(r, "rps_per_core"),
            num(r, "p50_ms"),
            num(r, "p99_ms"),
            r["errors"],
            num(r, "server_peak_rss_mib"),
        );
    }
    println!(
        "\nstart-up to ready: {:.0} ms; idle RSS: {:.1} MiB",
        num(report, "startup_to_ready_ms"),
        num(report, "idle_rss_mib"),
    );
    if report.get("restart_to_ready_ms").is_some() {
        println!(
            "restart to ready (keys and schema in place): {:.0} ms; idle RSS after it: {:.1} MiB",
            num(report, "restart_to_ready_ms"),
            num(report, "restart_idle_rss_mib"),
        );
    }
    let storm = &report["login_storm"];
    if storm.is_object() {
        println!(
            "login storm ({} sign-in connections, {} client_credentials connections): {:.0} sign-ins/s; \
             client_credentials {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; errors {}",
            storm["login_connections"],
            storm["service_connections"],
            num(storm, "logins_per_sec"),
            num(storm, "client_credentials_per_sec"),
            num(storm, "client_credentials_p50_ms"),
            num(storm, "client_credentials_p99_ms"),
            storm["errors"],
        );
    }
    let vs = &report["password_login_vs_raw_argon2id"];
    if vs.is_object() {
        let raw = &vs["raw"];
        println!(
            "raw argon2id (m={} KiB, t={}, p={}) on {} threads, server stopped: {:.1} hashes/s \
             ({:.1} per thread); password_login / raw: {} (per core: {})",
            raw["memory_kib"],
            raw["iterations"],
            raw["parallelism"],
            raw["threads"],
            num(raw, "hashes_per_sec"),
            num(raw, "hashes_per_sec_per_thread"),
            vs["ratio"]
                .as_f64()
                .map_or("n/a".into(), |r| format!("{r:.2}")),
            vs["ratio_per_core"]
                .as_f64()
                .map_or("n/a".into(), |r| format!("{r:.2}")),
        );
    }
}

/// One entry per Portcullis scenario: both rates, Portcullis/peer ratios (null when the peer
/// did not run the scenario or either side had errors: failed requests are no rate), and
/// what differs.
pub fn compare(ours: &Value, theirs: &Value) -> Value {
    let theirs: Vec<&Value> = theirs.as_array().into_iter().flatten().collect();
    let rows: Vec<Value> = ours
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let name = o["scenario"].as_str().unwrap_or("");
            // The ES256-ID-token rotation is set against the peer's one refresh scenario.
            let peer_name = match name {
                "refresh_token_es256_id" => "refresh_token",
                other => other,
            };
            let t = theirs
                .iter()
                .find(|t| t["scenario"].as_str() == Some(peer_name));
            let (t_rps, t_core, t_rss, t_errors) = t.map_or((0.0, 0.0, 0.0, 0), |t| {
                (
                    num(t, "rps"),
                    num(t, "rps_per_core"),
                    num(t, "server_peak_rss_mib"),
                    t["errors"].as_u64().unwrap_or(0),
                )
            });
            let clean = t.is_some() && t_errors == 0 && o["errors"].as_u64() == Some(0);
            let ratio = |a: f64, b: f64| if clean { ratio(a, b) } else { Value::Null };
            json!({
                "scenario": name,
                "portcullis_rps": num(o, "rps"),
                "peer_rps": t_rps,
                "ratio_rps": ratio(num(o, "rps"), t_rps),
                "portcullis_rps_per_core": num(o, "rps_per_core"),
                "peer_rps_per_core": t_core,
                "ratio_rps_per_core": ratio(num(o, "rps_per_core"), t_core),
                "portcullis_p99_ms": num(o, "p99_ms"),
                "peer_p99_ms": t.map_or(0.0, |t| num(t, "p99_ms")),
                "portcullis_peak_rss_mib": num(o, "server_peak_rss_mib"),
                "peer_peak_rss_mib": t_rss,
                "peer_errors": t_errors,
                "differs": difference(name),
            })
        })
        .collect();
    Value::Array(rows)
}

fn times(v: &Value) -> String {
    v.as_f64().map_or("n/a".into(), |r| format!("{r:.2}×"))
}

pub fn print_comparison(rows: &Value) {
    println!("\n### Portcullis / node-oidc-provider\n");
    println!("| scenario | Portcullis req/s | peer req/s | ratio | Portcullis req/s per core | peer req/s per core | ratio per core | p99 ms (P / peer) | what differs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in rows.as_array().into_iter().flatten() {
        println!(
            "| {} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {} | {:.2} / {:.2} | {} |",
            r["scenario"].as_str().unwrap_or(""),
            num(r, "portcullis_rps"),
            num(r, "peer_rps"),
            times(&r["ratio_rps"]),
            num(r, "portcullis_rps_per_core"),
            num(r, "peer_rps_per_core"),
            times(&r["ratio_rps_per_core"]),
            num(r, "portcullis_p99_ms"),
            num(r, "peer_p99_ms"),
            r["differs"].as_str().unwrap_or(""),
        );
    }
}

/// `--pin`: each scenario's Portcullis/peer ratio with both servers on one core (per core and
/// overall are then the same measure), beside the ratios of the unpinned run.
pub fn print_pinned_vs_unpinned(pinned: &Value, unpinned: &Value) {
    println!("\n### Portcullis / node-oidc-provider, pinned and unpinned\n");
    println!("| scenario | pinned: Portcullis req/s | pinned: peer req/s | pinned ratio | unpinned ratio | unpinned ratio per core |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let unpinned: Vec<&Value> = unpinned.as_array().into_iter().flatten().collect();
    for p in pinned.as_array().into_iter().flatten() {
        let name = p["scenario"].as_str().unwrap_or("");
        let u = unpinned
            .iter()
            .find(|u| u["scenario"].as_str() == Some(name));
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} |",
            name,
            num(p, "portcullis_rps"),
            num(p, "peer_rps"),
            times(&p["ratio_rps"]),
            u.map_or("n/a".into(), |u| times(&u["ratio_rps"])),
            u.map_or("n/a".into(), |u| times(&u["ratio_rps_per_core"])),
        );
    }
}
