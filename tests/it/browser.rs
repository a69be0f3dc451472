//! A real browser through the hosted pages: headless Chromium, driven over WebDriver
//! (chromedriver, which the test starts itself), signs a user in on the login page, allows the
//! consent page and ends up at the client's redirect URI with a code. The harness here also
//! serves `browser_passkeys.rs`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/install-browser`). Without them the
//! test skips, except under CI, where it fails.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{query, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SKIP: &str = "skipped: chromedriver not installed (run .ci/install-browser)";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Where test artifacts (the screenshot, chromedriver's log) go.
pub(crate) fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// chromedriver, or `None` when the test should skip (it panics instead under CI).
pub(crate) fn find_chromedriver() -> Option<PathBuf> {
    let driver = std::env::var_os("CHROMEDRIVER")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMEDRIVER));
    let missing = [driver.as_path(), Path::new(CHROMIUM)]
        .into_iter()
        .find(|p| !p.is_file());
    match missing {
        None => Some(driver),
        Some(p) if in_ci() => panic!(
            "{} is missing, and under CI the browser test must run: \
             call .ci/install-browser before the tests",
            p.display()
        ),
        Some(_) => {
            println!("{SKIP}");
            None
        }
    }
}

/// A running chromedriver. Dropping it (also while a failing test unwinds) kills its whole
/// process group: chromedriver and any Chromium it started.
pub(crate) struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port and waits until it answers; tries a few ports in case
    /// another process takes the free one first.
    pub(crate) async fn start(binary: &Path, log: &Path) -> ChromeDriver {
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log_file = File::create(log).expect("chromedriver log file");
            let child = Command::new(binary)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file"))
                .stderr(log_file)
                // Its own process group, so Drop can end the browsers along with it.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut driver = ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            match driver.wait_until_ready(Duration::from_secs(15)).await {
                Ok(()) => return driver,
                Err(e) => last_error = e,
            }
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("chromedriver did not come up: {last_error}\n--- its log ---\n{log}");
    }

    async fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let http = reqwest::Client::new();
        let status = format!("{}/status", self.url);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(format!("chromedriver exited ({exit})"));
            }
            if let Ok(resp) = http.get(&status).send().await {
                if let Ok(body) = resp.json::<Value>().await {
                    if body["value"]["ready"] == json!(true) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no answer from {status} within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile in `profile`.
pub(crate) async fn connect(driver: &ChromeDriver, profile: &Path) -> Client {
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--window-size=1280,900".into(),
        // Nothing but loopback resolves: no lookup leaves the machine, and the client's
        // redirect URI fails at once instead of waiting on DNS.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("starting a Chromium session: {e}"))
}

/// PKCE (RFC 7636): a verifier and its S256 challenge.
fn pkce_pair() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Polls the browser's address until it starts with `prefix`. The page there need not load:
/// Chromium reports the URL of a navigation that failed, too.
pub(crate) async fn wait_for_url_prefix(
    client: &Client,
    prefix: &str,
    timeout: Duration,
) -> url::Url {
    let deadline = Instant::now() + timeout;
    loop {
        let current = client.current_url().await;
        match &current {
            Ok(url) if url.as_str().starts_with(prefix) => return url.clone(),
            _ if Instant::now() > deadline => {
                panic!(
                    "the browser did not reach {prefix} within {timeout:?}; it is at {current:?}"
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn a_real_browser_signs_in_through_login_and_consent() {
    let Some(chromedriver) = find_chromedriver() else {
        return;
    };
    let artifacts = artifacts_dir();
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;

    let (verifier, challenge) = pkce_pair();
    let state = uuid::Uuid::new_v4().simple().to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut authorize = url::Url::parse(&app.url("/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", &client.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    // Declared before the driver, so the profile is removed only after Chromium is gone.
    let profile = tempfile::tempdir().expect("profile dir");
    let driver = ChromeDriver::start(&chromedriver, &artifacts.join("chromedriver.log")).await;
    let browser = connect(&driver, profile.path()).await;

    // The login page.
    browser
        .goto(authorize.as_str())
        .await
        .expect("open /authorize");
    let username = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input[name=username]"))
        .await
        .expect("the login page's username field");
    let title = browser.title().await.expect("page title");
    assert!(
        title.contains("Sign in"),
        "the login page's title is {title:?}"
    );
    username.send_keys(&user.email).await.expect("type email");
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("the password field")
        .send_keys(&user.password)
        .await
        .expect("type password");
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    std::fs::write(artifacts.join("login-page.png"), &png).expect("write login-page.png");
    browser
        .find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("click sign in");

    // The consent page.
    let allow = match browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("button[name=decision][value=allow]"))
        .await
    {
        Ok(button) => button,
        Err(e) => panic!(
            "no consent page after signing in ({e}); the browser is at {:?}",
            browser.current_url().await
        ),
    };
    // The click may report an error for the navigation to the unreachable client; where the
    // browser ends up is what counts.
    let _ = allow.click().await;

    // The client's redirect URI, which does not exist here: only its address matters.
    let back = wait_for_url_prefix(&browser, &client.redirect_uri, Duration::from_secs(20)).await;
    browser.close().await.expect("close the browser session");
    drop(driver);

    assert_eq!(query(&back, "state").as_deref(), Some(state.as_str()));
    assert_eq!(query(&back, "iss").as_deref(), Some(app.base.as_str()));
    let code = query(&back, "code").expect("a code in the redirect");

    // The code is real: it redeems for tokens with the PKCE verifier.
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    let status = resp.status();
    let body: Value = resp.json().await.expect("token response JSON");
    assert_eq!(status, 200, "token response: {body}");
    assert!(body["id_token"].is_string(), "no ID token: {body}");
    app.stop().await;
}
