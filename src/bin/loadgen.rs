//! `loadgen`: starts Portcullis (the `portcullis` binary next to this one), seeds a client and a
//! user, and measures each scenario for a bounded time on loopback: requests/s, p50/p99
//! latency, errors, and the server's peak RSS and CPU. Prints a markdown table and JSON.
//! With `--peer node` it then does the same against node-oidc-provider (`bench/node-peer/`)
//! and prints the ratios side by side.
//!
//!   cargo run --release --bin loadgen -- --seconds 10 --concurrency 32
//!   cargo run --release --bin loadgen -- --seconds 8 --concurrency 32 --peer node
//!   cargo run --release --bin loadgen -- --seconds 8 --concurrency 32 --peer node --pin
//!   cargo run --bin loadgen -- --smoke        # a few seconds each; fails only on errors
//!
//! `--pin` runs everything twice: first with each server on CPU 0 and loadgen on CPU 1, then
//! unpinned, and reports the Portcullis/peer ratios of both runs side by side.

// The crate root's modules resolve beside it, so name this binary's own folder.
#[path = "loadgen/browser.rs"]
mod browser;
#[path = "loadgen/flows.rs"]
mod flows;
#[path = "loadgen/node_peer.rs"]
mod node_peer;
#[path = "loadgen/pin.rs"]
mod pin;
#[path = "loadgen/raw.rs"]
mod raw;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/server.rs"]
mod server;
#[path = "loadgen/targets.rs"]
mod targets;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use flows::{code_flow, password_login, sign_in_tokens, Tokens};
use server::{
    drop_bench_database, proc_stat, rss_kib, seed_es256_id_client, seed_portcullis,
    seed_rs256_client, start,
};

#[derive(Parser, Debug)]
#[command(about = "Measure Portcullis on loopback: requests/s, latency, RSS and CPU per scenario")]
struct Args {
    /// Seconds per scenario
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections per scenario
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Unmeasured seconds before each scenario (0 with --smoke)
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Measure against PostgreSQL (a fresh database is created from this URL) instead of SQLite
    #[arg(long)]
    postgres: Option<String>,
    /// Redis URL for the server (rate limits are off during the measurement either way)
    #[arg(long)]
    redis: Option<String>,
    /// Only these scenarios (comma-separated)
    #[arg(long)]
    only: Option<String>,
    /// Short run (2 s per scenario, concurrency 4) that fails on any error, never on timing
    #[arg(long)]
    smoke: bool,
    /// Write the JSON report here
    #[arg(long)]
    json: Option<PathBuf>,
    /// After Portcullis, run the same scenarios against this peer (never with --smoke)
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    /// Measure twice: pinned (each server on CPU 0, loadgen on CPU 1), then unpinned; report
    /// both sets of ratios
    #[arg(long)]
    pin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// node-oidc-provider, from bench/node-peer (needs node and npm)
    Node,
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PASSWORD: &str = "correct horse battery staple";
const REDIRECT_URI: &str = "http://localhost:3000/cb";

/// Which server a scenario talks to: the protocol requests are the same, the sign-in pages
/// are each server's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Portcullis,
    NodeOidcProvider,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Portcullis => "Portcullis",
            Flavor::NodeOidcProvider => "node-oidc-provider",
        }
    }
}

/// Endpoint URLs, read from the server's discovery document.
#[derive(Clone)]
struct Endpoints {
    authorize: String,
    token: String,
    userinfo: String,
    introspect: String,
    jwks: String,
}

impl Endpoints {
    async fn discover(base: &str) -> Result<Self, String> {
        let meta: Value = reqwest::get(format!("{base}/.well-known/openid-configuration"))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let at = |key: &str| {
            meta[key]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("discovery has no {key}"))
        };
        Ok(Self {
            authorize: at("authorization_endpoint")?,
            token: at("token_endpoint")?,
            userinfo: at("userinfo_endpoint")?,
            introspect: at("introspection_endpoint")?,
            jwks: at("jwks_uri")?,
        })
    }
}

#[derive(Clone)]
struct Seed {
    flavor: Flavor,
    base: String,
    endpoints: Endpoints,
    client_id: String,
    secret: String,
    email: String,
    /// A service client whose access tokens are RS256 (Portcullis only: the RS256 floor).
    rs256_client: Option<(String, String)>,
    /// A first-party client whose ID tokens are ES256 (Portcullis only).
    es256_id_client: Option<(String, String)>,
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
}

/// Runs `op` from `concurrency` workers for `seconds`; each worker owns a state `S`, handed
/// back at the end so a warm-up can pass its refresh tokens on to the measured run.
async fn run<S, F, Fut>(seconds: u64, concurrency: usize, init: Vec<S>, op: F) -> (Outcome, Vec<S>)
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = (S, bool)> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for state in init.into_iter().take(concurrency) {
        let (stop, op) = (stop.clone(), op.clone());
        handles.push(tokio::spawn(async move {
            let mut state = state;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (next, ok) = op(state).await;
                state = next;
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors, state)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Outcome {
        latencies: Vec::new(),
        errors: 0,
    };
    let mut states = Vec::new();
    for h in handles {
        if let Ok((lat, errors, state)) = h.await {
            out.latencies.extend(lat);
            out.errors += errors;
            states.push(state);
        }
    }
    (out, states)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.seconds = 2;
        args.concurrency = 4;
        args.warmup = 0;
    }
    match bench(&args).await {
        Ok(failed) if !failed => std::process::ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("loadgen: some requests failed");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn bench(args: &Args) -> Result<bool, String> {
    if !args.pin {
        let report = one_pass(args).await?;
        return finish(args, &report);
    }
    if pin::cores() < 2 {
        return Err("--pin needs two cores: one for the server, one for loadgen".into());
    }
    eprintln!(
        "loadgen: pinned run (servers on CPU {}, loadgen on CPU {})",
        pin::SERVER_CPU,
        pin::LOADGEN_CPU
    );
    pin::set(true)?;
    let pinned = one_pass(args).await;
    pin::set(false)?;
    let mut pinned = pinned?;
    pinned["pinning"] = json!({"server_cpu": pin::SERVER_CPU, "loadgen_cpu": pin::LOADGEN_CPU});
    eprintln!("loadgen: unpinned run");
    let unpinned = one_pass(args).await?;
    report::print_pinned_vs_unpinned(&pinned["comparison"], &unpinned["comparison"]);
    finish(args, &json!({ "pinned": pinned, "unpinned": unpinned }))
}

/// Whether any request failed, after writing the JSON report when asked.
fn finish(args: &Args, report: &Value) -> Result<bool, String> {
    let runs: Vec<&Value> = match report.get("pinned") {
        Some(pinned) => vec![pinned, &report["unpinned"]],
        None => vec![report],
    };
    let failed = runs.iter().any(|report| {
        [&report["scenarios"], &report["peer"]["scenarios"]]
            .iter()
            .flat_map(|rows| rows.as_array().into_iter().flatten())
            .chain([&report["login_storm"], &report["peer"]["login_storm"]])
            .any(|r| r["errors"].as_u64().unwrap_or(0) > 0)
    });
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(report).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(failed)
}

/// One measurement of Portcullis (and the peer, when asked): the report with its comparison.
async fn one_pass(args: &Args) -> Result<Value, String> {
    let (server, startup) = start(args).await?;
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = rss_kib(pid);
    let (client_id, secret, email) = seed_portcullis(&server)?;
    let seed = Seed {
        flavor: Flavor::Portcullis,
        base: server.base.clone(),
        endpoints: Endpoints::discover(&server.base).await?,
        client_id,
        secret,
        email,
        rs256_client: Some(seed_rs256_client(&server)?),
        es256_id_client: Some(seed_es256_id_client(&server)?),
    };
    let (rows, storm) = measure(args, &seed, pid).await?;
    // A restart finds its keys and schema in place: the start-up an operator sees every
    // time but the first (which generates eight signing keys, four of them RSA).
    let mut server = server;
    let restart = server.restart().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let restart_idle_rss = rss_kib(server.child.id());
    let database = server
        .env
        .iter()
        .find(|(k, _)| k == "PORTCULLIS_DATABASE__URL")
        .map(|(_, v)| v.clone());
    drop(server);
    if let (Some(base), Some(database)) = (&args.postgres, database) {
        drop_bench_database(base, &database).await;
    }
    let mut report = json!({
        "backend": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "seconds_per_scenario": args.seconds,
        "concurrency": args.concurrency,
        "startup_to_ready_ms": startup.as_secs_f64() * 1000.0,
        "idle_rss_mib": idle_rss as f64 / 1024.0,
        "restart_to_ready_ms": restart.as_secs_f64() * 1000.0,
        "restart_idle_rss_mib": restart_idle_rss as f64 / 1024.0,
        "scenarios": rows,
        "login_storm": storm,
    });
    let logins = report["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["scenario"] == "password_login")
        .cloned();
    if let Some(logins) = logins {
        // With Portcullis stopped, so the hashes have the machine to themselves.
        let raw = targets::raw_argon2(args.seconds.min(5));
        let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) if b > 0.0 => json!(a / b),
            _ => Value::Null,
        };
        report["password_login_vs_raw_argon2id"] = json!({
            "raw": raw,
            "ratio": ratio(&logins["rps"], &raw["hashes_per_sec"]),
            "ratio_per_core": ratio(&logins["rps_per_core"], &raw["hashes_per_sec_per_thread"]),
        });
    }
    report::print_run(Flavor::Portcullis.name(), &report);

    match args.peer {
        Some(Peer::Node) if args.smoke => {
            eprintln!("loadgen: --smoke never starts the peer; --peer node ignored");
        }
        Some(Peer::Node) => {
            let peer = measure_node_peer(args).await?;
            report::print_run(Flavor::NodeOidcProvider.name(), &peer);
            let comparison = report::compare(&report["scenarios"], &peer["scenarios"]);
            report::print_comparison(&comparison);
            report["peer"] = peer;
            report["comparison"] = comparison;
        }
        None => {}
    }

    Ok(report)
}

/// The same scenarios against node-oidc-provider, with a client and user like Portcullis's.
async fn measure_node_peer(args: &Args) -> Result<Value, String> {
    let client_id = "bench".to_string();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let email = "bench@example.org".to_string();
    let (peer, startup) = node_peer::start(&client_id, &secret, &email).await?;
    let pid = peer.child.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = rss_kib(pid);
    let seed = Seed {
        flavor: Flavor::NodeOidcProvider,
        base: peer.base.clone(),
        endpoints: Endpoints::discover(&peer.base).await?,
        client_id,
        secret,
        email,
        rs256_client: None,
        es256_id_client: None,
    };
    let (rows, storm) = measure(args, &seed, pid).await?;
    Ok(json!({
        "server": Flavor::NodeOidcProvider.name(),
        "versions": node_peer::versions(),
        "storage": "in memory (bench/node-peer/store.mjs: a map that does not evict)",
        "startup_to_ready_ms": startup.as_secs_f64() * 1000.0,
        "idle_rss_mib": idle_rss as f64 / 1024.0,
        "scenarios": rows,
        "login_storm": storm,
    }))
}

/// Runs every wanted scenario against one server (process `pid`) and answers one row each,
/// then the login storm (`Value::Null` when not wanted).
async fn measure(args: &Args, seed: &Seed, pid: u32) -> Result<(Vec<Value>, Value), String> {
    eprintln!("loadgen: {}", seed.flavor.name());
    let Tokens { families, access } = sign_in_tokens(seed, args.concurrency).await?;
    let only: Option<Vec<String>> = args
        .only
        .as_ref()
        .map(|o| o.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let mut rows = Vec::new();
    let ticks_per_sec = 100.0; // Linux USER_HZ
    let n = args.concurrency;

    macro_rules! scenario {
        ($name:expr, $init:expr, $op:expr) => {
            if wanted($name) {
                let op = $op;
                // Unmeasured first: lets node's JIT compile the peer's hot paths, and
                // treats Portcullis the same way.
                let init = match args.warmup {
                    0 => $init,
                    w => run(w, n, $init, op.clone()).await.1,
                };
                let (_, cpu_before) = proc_stat(pid);
                let (outcome, _) = run(args.seconds, n, init, op).await;
                let (hwm, cpu_after) = proc_stat(pid);
                let mut lat = outcome.latencies;
                lat.sort();
                let rps = lat.len() as f64 / args.seconds as f64;
                let cpu = (cpu_after - cpu_before) as f64 / ticks_per_sec / args.seconds as f64;
                eprintln!("{:<22} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}", $name, rps, percentile(&lat, 0.5), percentile(&lat, 0.99), outcome.errors);
                rows.push(json!({
                    "scenario": $name,
                    "requests": lat.len(),
                    "rps": rps,
                    "p50_ms": percentile(&lat, 0.5),
                    "p99_ms": percentile(&lat, 0.99),
                    "errors": outcome.errors,
                    "server_cpu_cores": cpu,
                    "rps_per_core": if cpu > 0.0 { rps / cpu } else { 0.0 },
                    "server_peak_rss_mib": hwm as f64 / 1024.0,
                }));
            }
        };
    }

    // The protocol scenarios speak raw HTTP/1.1 over one keep-alive connection per worker
    // (loadgen/raw.rs): reqwest would cost more than the server's own work here.
    let conns = |n: usize, addr: &str| (0..n).map(|_| raw::Conn::new(addr)).collect::<Vec<_>>();
    let (addr, _) = raw::request("GET", &seed.endpoints.token, None, None)?;
    let send = |req: Vec<u8>| {
        let req = Arc::new(req);
        move |mut conn: raw::Conn| {
            let req = req.clone();
            async move {
                let ok = matches!(conn.send(&req).await, Ok((200, _)));
                (conn, ok)
            }
        }
    };
    let get = |url: &str| raw::request("GET", url, None, None).map(|(_, r)| send(r));
    scenario!(
        "discovery",
        conns(n, &addr),
        get(&format!("{}/.well-known/openid-configuration", seed.base))?
    );
    scenario!("jwks", conns(n, &addr), get(&seed.endpoints.jwks)?);
    let grant = |id: &str, secret: &str| {
        raw::request(
            "POST",
            &seed.endpoints.token,
            Some(&raw::basic(id, secret)),
            Some("grant_type=client_credentials&scope=api"),
        )
        .map(|(_, r)| send(r))
    };
    scenario!(
        "client_credentials",
        conns(n, &addr),
        grant(&seed.client_id, &seed.secret)?
    );
    if let Some((id, secret)) = &seed.rs256_client {
        scenario!(
            "client_credentials_rs256",
            conns(n, &addr),
            grant(id, secret)?
        );
    }
    let rotate = |client_id: &str, secret: &str| {
        let token_url = seed.endpoints.token.clone();
        let auth = raw::basic(client_id, secret);
        move |(mut conn, token): (raw::Conn, String)| {
            let (token_url, auth) = (token_url.clone(), auth.clone());
            async move {
                let form = format!("grant_type=refresh_token&refresh_token={token}");
                let Ok((_, req)) = raw::request("POST", &token_url, Some(&auth), Some(&form))
                else {
                    return ((conn, token), false);
                };
                match conn.send(&req).await {
                    Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                        Ok(v) => {
                            let next = v["refresh_token"].as_str().unwrap_or_default().to_string();
                            ((conn, next), true)
                        }
                        Err(_) => ((conn, token), false),
                    },
                    _ => ((conn, token), false),
                }
            }
        }
    };
    let workers = |families: Vec<String>| {
        families
            .into_iter()
            .map(|t| (raw::Conn::new(&addr), t))
            .collect::<Vec<_>>()
    };
    scenario!(
        "refresh_token",
        workers(families),
        rotate(&seed.client_id, &seed.secret)
    );
    if let Some((id, secret)) = &seed.es256_id_client {
        if wanted("refresh_token_es256_id") {
            let mut es = seed.clone();
            es.client_id = id.clone();
            es.secret = secret.clone();
            let families = sign_in_tokens(&es, n).await?.families;
            scenario!(
                "refresh_token_es256_id",
                workers(families),
                rotate(id, secret)
            );
        }
    }
    {
        let (_, req) = raw::request(
            "GET",
            &seed.endpoints.userinfo,
            Some(&format!("Bearer {access}")),
            None,
        )?;
        scenario!("userinfo", conns(n, &addr), send(req));
    }
    {
        let (_, req) = raw::request(
            "POST",
            &seed.endpoints.introspect,
            Some(&raw::basic(&seed.client_id, &seed.secret)),
            Some(&format!("token={access}")),
        )?;
        let req = Arc::new(req);
        scenario!(
            "introspection",
            conns(n, &addr),
            move |mut conn: raw::Conn| {
                let req = req.clone();
                async move {
                    // An inactive answer is a 200 too: count only `"active": true` as success.
                    let ok = match conn.send(&req).await {
                        Ok((200, body)) => serde_json::from_slice::<Value>(&body)
                            .is_ok_and(|v| v["active"].as_bool() == Some(true)),
                        _ => false,
                    };
                    (conn, ok)
                }
            }
        );
    }
    {
        let s = seed.clone();
        scenario!("password_login", vec![(); n], move |(): ()| {
            let s = s.clone();
            async move { ((), password_login(&s).await) }
        });
    }
    {
        let s = seed.clone();
        scenario!("authorization_code_flow", vec![(); n], move |(): ()| {
            let s = s.clone();
            async move { ((), code_flow(&s).await.is_ok()) }
        });
    }
    let storm = if wanted("login_storm") {
        let workers = conns(targets::STORM_SERVICE_CONNECTIONS, &addr);
        let grants = grant(&seed.client_id, &seed.secret)?;
        targets::login_storm(args.seconds, n, seed, (workers, grants), pid).await
    } else {
        Value::Null
    };
    Ok((rows, storm))
}
