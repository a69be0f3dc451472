//! The node-oidc-provider peer (`bench/node-peer/`): installs it when `node_modules` is
//! missing, starts it on loopback with the same client and user loadgen gives Portcullis,
//! and drives its sign-in pages. Never used by `--smoke`, so CI needs no node.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::browser::Browser;
use crate::flows::location;
use crate::server::free_port;
use crate::{Seed, PASSWORD};

/// The peer's directory, found from the source tree loadgen was built from.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/node-peer"))
}

pub struct NodePeer {
    pub child: Child,
    pub base: String,
    /// Holds the peer's stderr, shown if it fails to start.
    logs: tempfile::TempDir,
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool_version(tool: &str) -> Result<String, String> {
    let out = Command::new(tool)
        .arg("--version")
        .output()
        .map_err(|e| format!("--peer node needs `{tool}` on PATH ({e})"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `npm ci` (the lock file is committed) when the dependencies are not installed yet.
fn ensure_installed() -> Result<(), String> {
    let dir = dir();
    if dir.join("node_modules").is_dir() {
        return Ok(());
    }
    tool_version("npm")?;
    eprintln!("loadgen: installing the node peer in {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("npm ci failed in {}", dir.display()));
    }
    Ok(())
}

/// What was measured: node's version and the installed oidc-provider's.
pub fn versions() -> Value {
    let installed = std::fs::read_to_string(dir().join("node_modules/oidc-provider/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default();
    json!({
        "oidc_provider": installed,
        "node": tool_version("node").unwrap_or_default(),
    })
}

/// Starts the peer and waits until its discovery document answers. The client and the user
/// are given on stdin, so the secret and the password stay out of argv and the environment.
pub async fn start(
    client_id: &str,
    secret: &str,
    email: &str,
) -> Result<(NodePeer, Duration), String> {
    tool_version("node")?;
    ensure_installed()?;
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(logs.path().join("stderr")).map_err(|e| e.to_string())?;
    let port = free_port();
    let settings = json!({
        "port": port,
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uri": crate::REDIRECT_URI,
        "email": email,
        "password": PASSWORD,
    });
    let started = Instant::now();
    let mut child = crate::pin::server_command("node")
        .arg("server.mjs")
        .current_dir(dir())
        .env("NODE_ENV", "production")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(settings.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let stdout = child.stdout.take();
    let peer = NodePeer {
        child,
        base: format!("http://127.0.0.1:{port}"),
        logs,
    };
    // The peer prints one line once it listens; read it off the async runtime.
    let listening = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(30), listening)
        .await
        .map_err(|_| "the node peer did not listen within 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    if !line.starts_with("listening") {
        let log = std::fs::read_to_string(peer.logs.path().join("stderr")).unwrap_or_default();
        return Err(format!("the node peer did not start:\n{log}"));
    }
    let http = reqwest::Client::new();
    for _ in 0..400 {
        let ready = http
            .get(format!("{}/.well-known/openid-configuration", peer.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok((peer, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err("the node peer did not answer discovery within 2 s of listening".into())
}

/// From the authorization response (a redirect to the peer's interaction page) to the
/// redirect that resumes the authorization: the page, then the password form. Answers the
/// `Location` of that last response.
pub async fn sign_in(
    b: &Browser,
    seed: &Seed,
    authorize: reqwest::Response,
) -> Result<String, String> {
    let page = location(&authorize).ok_or("authorize did not redirect to the sign-in page")?;
    let page = url::Url::parse(&page).map_err(|e| e.to_string())?;
    let html = b
        .send(b.get(page.as_str()))
        .await?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let action = form_action(&html).ok_or("no sign-in form")?;
    let action = page.join(&action).map_err(|e| e.to_string())?;
    let resp = b
        .send(
            b.post(action.as_str())
                .form(&[("username", seed.email.as_str()), ("password", PASSWORD)]),
        )
        .await?;
    if resp.status() != reqwest::StatusCode::SEE_OTHER {
        return Err(format!("sign-in answered {}", resp.status()));
    }
    location(&resp).ok_or_else(|| "sign-in did not redirect".into())
}

fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let at = form.find("action=\"")? + 8;
    Some(form[at..at + form[at..].find('"')?].replace("&#38;", "&"))
}
