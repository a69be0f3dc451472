//! The issue 7 targets that are not one scenario's rate: the raw argon2id rate that sign-ins
//! are held against, and client_credentials latency while a login storm runs. Measures and
//! reports; never decides pass or fail (timings on shared machines are noise for CI).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{json, Value};

use crate::flows::password_login;
use crate::server::proc_stat;
use crate::{percentile, run, Seed, PASSWORD};

/// client_credentials connections kept busy during the storm: a service's handful.
pub const STORM_SERVICE_CONNECTIONS: usize = 4;

/// argon2id at the server's default parameters on as many threads as the server hashes with
/// (`password.max_concurrent_hashes`, default: the CPUs), with nothing else running: the
/// ceiling a password sign-in rate can reach on this machine.
pub fn raw_argon2(seconds: u64) -> Value {
    let p = portcullis::config::PasswordSettings::default();
    let threads = p.max_concurrent_hashes.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let Ok(params) = Params::new(p.memory_kib, p.iterations, p.parallelism, None) else {
        return Value::Null;
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, done, params) = (stop.clone(), done.clone(), params.clone());
            std::thread::spawn(move || {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                while !stop.load(Ordering::Relaxed) {
                    let salt = SaltString::generate(&mut OsRng);
                    if argon.hash_password(PASSWORD.as_bytes(), &salt).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hashes = done.load(Ordering::Relaxed) as f64;
    json!({
        "memory_kib": p.memory_kib,
        "iterations": p.iterations,
        "parallelism": p.parallelism,
        "threads": threads,
        "hashes_per_sec": hashes / elapsed,
        "hashes_per_sec_per_thread": hashes / elapsed / threads as f64,
    })
}

/// Password sign-ins from `concurrency` connections and, at the same time, client_credentials
/// grants from [`STORM_SERVICE_CONNECTIONS`]: does the token endpoint keep its latency while
/// every hashing thread is busy?
pub async fn login_storm<S, F, Fut>(
    seconds: u64,
    concurrency: usize,
    seed: &Seed,
    (grant_workers, grant): (Vec<S>, F),
    pid: u32,
) -> Value
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = (S, bool)> + Send,
{
    let s = seed.clone();
    let logins = run(
        seconds,
        concurrency,
        vec![(); concurrency],
        move |(): ()| {
            let s = s.clone();
            async move { ((), password_login(&s).await) }
        },
    );
    let grants = run(seconds, STORM_SERVICE_CONNECTIONS, grant_workers, grant);
    let (_, cpu_before) = proc_stat(pid);
    let ((logins, _), (grants, _)) = tokio::join!(logins, grants);
    let (hwm, cpu_after) = proc_stat(pid);
    let cpu = (cpu_after - cpu_before) as f64 / 100.0 / seconds as f64;
    let (mut l, mut g) = (logins.latencies, grants.latencies);
    l.sort();
    g.sort();
    let secs = seconds as f64;
    eprintln!(
        "{:<22} logins {:>5.0}/s  client_credentials {:>6.0}/s p50 {:>6.2} ms p99 {:>6.2} ms  errors {}",
        "login_storm",
        l.len() as f64 / secs,
        g.len() as f64 / secs,
        percentile(&g, 0.5),
        percentile(&g, 0.99),
        logins.errors + grants.errors
    );
    json!({
        "login_connections": concurrency,
        "service_connections": STORM_SERVICE_CONNECTIONS,
        "logins_per_sec": l.len() as f64 / secs,
        "login_p99_ms": percentile(&l, 0.99),
        "login_errors": logins.errors,
        "client_credentials_per_sec": g.len() as f64 / secs,
        "client_credentials_p50_ms": percentile(&g, 0.5),
        "client_credentials_p99_ms": percentile(&g, 0.99),
        "client_credentials_errors": grants.errors,
        "errors": logins.errors + grants.errors,
        "server_cpu_cores": cpu,
        "server_peak_rss_mib": hwm as f64 / 1024.0,
    })
}
