//! The Portcullis under test: a `portcullis serve` process on loopback with a fresh SQLite or
//! PostgreSQL database, seeded through the CLI, restarted on demand, and read from /proc.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Args, PASSWORD, REDIRECT_URI};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) bin: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

pub(crate) fn proc_stat(pid: u32) -> (u64, u64) {
    // (peak RSS in KiB, CPU ticks user+system)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (hwm, ticks)
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn start(args: &Args) -> Result<(Server, Duration), String> {
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("portcullis");
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it first (cargo build --release)",
            bin.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let db = match &args.postgres {
        Some(url) => fresh_pg(url).await?,
        None => format!("sqlite://{}/bench.db", dir.path().display()),
    };
    let mut env = vec![
        ("PORTCULLIS_LISTEN".to_string(), format!("127.0.0.1:{port}")),
        ("PORTCULLIS_ISSUER".into(), base.clone()),
        ("PORTCULLIS_MANAGEMENT__LISTEN".into(), "127.0.0.1:0".into()),
        ("PORTCULLIS_DATABASE__URL".into(), db),
        ("PORTCULLIS_RATE_LIMITS__ENABLED".into(), "false".into()),
        ("PORTCULLIS_LOG__LEVEL".into(), "warn".into()),
        (
            "PORTCULLIS_MASTER_KEY_FILE".into(),
            format!("{}/master.key", dir.path().display()),
        ),
    ];
    if let Some(redis) = &args.redis {
        env.push(("PORTCULLIS_REDIS__URL".into(), redis.clone()));
    }
    let started = Instant::now();
    let child = serve(&bin, dir.path(), &env)?;
    let server = Server {
        child,
        base,
        dir,
        env,
        bin,
    };
    server.wait_ready().await?;
    Ok((server, started.elapsed()))
}

pub(crate) fn serve(
    bin: &std::path::Path,
    dir: &std::path::Path,
    env: &[(String, String)],
) -> Result<Child, String> {
    crate::pin::server_command(bin)
        .arg("serve")
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())
}

/// Drops the database `fresh_pg` made for this run (its server is stopped by now); a failure
/// only warns.
pub(crate) async fn drop_bench_database(base: &str, database: &str) {
    use sqlx::Connection;
    let name = url::Url::parse(database)
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    // Only a name fresh_pg made: pc_bench_ and a hex uuid, so quoting it is safe.
    let ours = name
        .strip_prefix("pc_bench_")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !ours {
        return;
    }
    let dropped = match sqlx::PgConnection::connect(base).await {
        Ok(mut conn) => sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = dropped {
        eprintln!("loadgen: could not drop the benchmark database {name}: {e}");
    }
}

pub(crate) async fn fresh_pg(base: &str) -> Result<String, String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .map_err(|e| e.to_string())?;
    let name = format!("pc_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut url = url::Url::parse(base).map_err(|e| e.to_string())?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

impl Server {
    pub(crate) async fn wait_ready(&self) -> Result<(), String> {
        let http = reqwest::Client::new();
        for _ in 0..1000 {
            if let Ok(r) = http.get(format!("{}/health/ready", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err("the server did not become ready within 2 s".into())
    }

    /// Stops the server and starts it again on the same database and keys: the time from
    /// spawning the process to `/health/ready` answering, with nothing left to generate.
    pub(crate) async fn restart(&mut self) -> Result<Duration, String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = Instant::now();
        self.child = serve(&self.bin, self.dir.path(), &self.env)?;
        self.wait_ready().await?;
        Ok(started.elapsed())
    }

    pub(crate) fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Seeds Portcullis through its CLI: the first-party client and the user.
pub(crate) fn seed_portcullis(server: &Server) -> Result<(String, String, String), String> {
    let created = server.cli(
        &[
            "client",
            "create",
            "--name",
            "bench",
            "--redirect-uri",
            REDIRECT_URI,
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--grant",
            "client_credentials",
            "--scope",
            "openid profile email offline_access api",
            "--first-party",
            "--json",
        ],
        None,
    )?;
    let created: Value = serde_json::from_str(created.trim()).map_err(|e| e.to_string())?;
    let email = "bench@example.org".to_string();
    server.cli(
        &[
            "user",
            "create",
            "--email",
            &email,
            "--verified",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )?;
    let field = |k: &str| created[k].as_str().unwrap_or_default().to_string();
    Ok((field("client_id"), field("client_secret"), email))
}

/// The `client_id` and `client_secret` of `client create --json`'s answer.
fn id_and_secret(created: &str) -> Result<(String, String), String> {
    let created: Value = serde_json::from_str(created.trim()).map_err(|e| e.to_string())?;
    let field = |k: &str| created[k].as_str().unwrap_or_default().to_string();
    Ok((field("client_id"), field("client_secret")))
}

/// A first-party client like the main one whose ID tokens are signed ES256: refresh rotation
/// without the RS256 signature.
pub(crate) fn seed_es256_id_client(server: &Server) -> Result<(String, String), String> {
    let created = server.cli(
        &[
            "client",
            "create",
            "--name",
            "bench-es256-id",
            "--redirect-uri",
            REDIRECT_URI,
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--scope",
            "openid profile email offline_access",
            "--id-token-alg",
            "ES256",
            "--first-party",
            "--json",
        ],
        None,
    )?;
    id_and_secret(&created)
}

/// A client_credentials-only client whose access tokens are signed RS256.
pub(crate) fn seed_rs256_client(server: &Server) -> Result<(String, String), String> {
    let created = server.cli(
        &[
            "client",
            "create",
            "--name",
            "bench-rs256",
            "--grant",
            "client_credentials",
            "--scope",
            "api",
            "--access-token-alg",
            "RS256",
            "--json",
        ],
        None,
    )?;
    id_and_secret(&created)
}
