//! The test harness: the real server on a free port with its own fresh database (a temporary
//! SQLite file, or a new PostgreSQL database when PORTCULLIS_TEST_DATABASE_URL is set).

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::app::{AppState, Portcullis};
use portcullis::clock::{Clock, ManualClock, SystemClock};
use portcullis::config::Settings;
use portcullis::keys::MasterKey;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use tokio::sync::oneshot;

pub const PG_ENV: &str = "PORTCULLIS_TEST_DATABASE_URL";
pub const REDIS_ENV: &str = "PORTCULLIS_TEST_REDIS_URL";
const CI_DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The PostgreSQL server to test against: the env variable, or under CI the local default.
/// `None` (the test skips) only outside CI.
pub fn pg_base_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => Some(CI_DEFAULT_PG.to_string()),
        _ => None,
    }
}

/// A brand-new, empty PostgreSQL database; panics (fails the test) if the server is down.
pub async fn fresh_pg_database(base: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {base} is unreachable ({e}); start it or unset {PG_ENV}")
    });
    let name = format!("pc_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(base).expect("database URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A fresh database URL for one test, on the backend this run targets.
pub async fn fresh_database_url(dir: &Path) -> String {
    match std::env::var(PG_ENV) {
        Ok(base) if !base.is_empty() => fresh_pg_database(&base).await,
        _ => format!("sqlite://{}/portcullis.db", dir.display()),
    }
}

pub fn redis_url() -> Option<String> {
    std::env::var(REDIS_ENV).ok().filter(|u| !u.is_empty())
}

/// The Redis to test shared limits against: the env variable, or under CI the local default.
pub fn redis_base_url() -> Option<String> {
    match redis_url() {
        Some(url) => Some(url),
        None if in_ci() => Some("redis://127.0.0.1:6379".into()),
        None => None,
    }
}

/// Settings for a test instance; tests adjust them before spawning.
pub fn test_settings(dir: &Path, database_url: String) -> Settings {
    let mut s = Settings::default();
    s.database.url = database_url;
    s.master_key = Some(SecretString::from(MasterKey::generate_base64()));
    s.master_key_file = dir.join("master.key");
    s.redis.url = redis_url();
    // Tests share one Redis: each app gets its own keys.
    s.redis.namespace = format!("pc-test-{}", uuid::Uuid::new_v4().simple());
    s.management.listen = "127.0.0.1:0".into();
    s.mail.outbox_dir = dir.join("outbox");
    // Cheap hashing keeps the suite fast; production parameters are tested in unit tests.
    s.password.memory_kib = 64;
    s.password.iterations = 1;
    // Admins of the older tests sign in with a password alone; tests/it/mfa.rs turns the
    // default policy (admins must enroll) back on.
    s.accounts.mfa.required_for_roles = vec![];
    s
}

/// A running server the flow helpers talk to: an in-process [`TestApp`], or a real
/// `portcullis serve` process (tests/it/processes.rs).
pub trait Served {
    /// Its base URL, without a trailing slash.
    fn base(&self) -> &str;
    /// A client that does not follow redirects.
    fn http(&self) -> &reqwest::Client;
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }
}

impl Served for TestApp {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl<T: Served> Served for Arc<T> {
    fn base(&self) -> &str {
        (**self).base()
    }
    fn http(&self) -> &reqwest::Client {
        (**self).http()
    }
}

pub struct TestApp {
    pub base: String,
    /// The management listener (metrics, health).
    pub management: String,
    pub state: AppState,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// Keeps the temporary directory (SQLite file, key file) alive as long as the app.
    pub _dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// A server on the real clock with a fresh database.
    pub async fn spawn() -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let url = fresh_database_url(dir.path()).await;
        let settings = test_settings(dir.path(), url);
        Self::spawn_with(settings, dir, Arc::new(SystemClock)).await
    }

    /// A server on a clock the test moves.
    pub async fn spawn_with_clock(clock: ManualClock) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let url = fresh_database_url(dir.path()).await;
        let settings = test_settings(dir.path(), url);
        Self::spawn_with(settings, dir, Arc::new(clock)).await
    }

    /// A server with the given settings; the issuer becomes this server's own address.
    pub async fn spawn_with(
        settings: Settings,
        dir: Arc<tempfile::TempDir>,
        clock: Arc<dyn Clock>,
    ) -> TestApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let issuer = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        Self::spawn_on(listener, issuer, settings, dir, clock).await
    }

    /// A server whose issuer is `http://localhost:<port>`: a secure context for WebAuthn, so its
    /// relying party (RP ID `localhost`) comes from the issuer as in production.
    pub async fn spawn_localhost(
        settings: Settings,
        dir: Arc<tempfile::TempDir>,
        clock: Arc<dyn Clock>,
    ) -> TestApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let issuer = format!(
            "http://localhost:{}",
            listener.local_addr().expect("addr").port()
        );
        Self::spawn_on(listener, issuer, settings, dir, clock).await
    }

    /// Another instance of a deployment: its own port, the deployment's issuer and storage.
    pub async fn spawn_instance(
        settings: Settings,
        issuer: &str,
        dir: Arc<tempfile::TempDir>,
    ) -> TestApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut app = Self::spawn_on(
            listener,
            issuer.to_string(),
            settings,
            dir,
            Arc::new(SystemClock),
        )
        .await;
        app.base = format!("http://{}", app.settings.listen);
        app
    }

    /// A server on a listener bound beforehand (its issuer known before it starts, e.g. to
    /// register its callback at another server first).
    pub async fn spawn_on(
        listener: std::net::TcpListener,
        issuer: String,
        mut settings: Settings,
        dir: Arc<tempfile::TempDir>,
        clock: Arc<dyn Clock>,
    ) -> TestApp {
        let addr = listener.local_addr().expect("addr");
        settings.listen = addr.to_string();
        settings.issuer = issuer;
        let app = Portcullis::build_with_clock(settings.clone(), clock)
            .await
            .unwrap_or_else(|e| panic!("server failed to start: {e}"));
        let bound = app.bind_std(listener).await.expect("bind server");
        let management = format!("http://{}", bound.management_addr);
        let state = bound.state.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            bound
                .run(async {
                    let _ = rx.await;
                })
                .await
        });
        TestApp {
            management,
            base: settings.issuer.clone(),
            state,
            settings,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            _dir: dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get_json(
        &self,
        path: &str,
    ) -> (
        reqwest::StatusCode,
        reqwest::header::HeaderMap,
        serde_json::Value,
    ) {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.json().await.expect("JSON body");
        (status, headers, body)
    }

    /// `GET path` on this server.
    /// The management listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let resp = self.http.get(format!("{}/metrics", self.management));
        resp.send().await.unwrap().text().await.unwrap()
    }

    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// The status of `GET path`.
    pub async fn get_status(&self, path: &str) -> reqwest::StatusCode {
        self.get_raw(path).await.status()
    }

    /// Stops the server, waiting for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// A listener on a free port and the issuer `http://127.0.0.1:<port>` of a server to come.
pub fn reserve() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    (listener, issuer)
}

/// A user the tests sign in as.
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub password: String,
}

/// A registered client and its secret (none for public clients).
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

impl TestApp {
    pub async fn register_client(
        &self,
        reg: portcullis::clients::ClientRegistration,
    ) -> TestClient {
        use secrecy::ExposeSecret;
        let redirect_uri = reg.redirect_uris.first().cloned().unwrap_or_default();
        let r =
            portcullis::clients::register(&*self.state.store, &reg, self.state.clock.now(), "test")
                .await
                .expect("register client");
        TestClient {
            id: r.client.id,
            secret: r.secret.map(|s| s.expose_secret().to_string()),
            redirect_uri,
        }
    }

    /// A confidential client for `https://rp.example.com/cb`.
    pub async fn confidential_client(&self) -> TestClient {
        self.register_client(portcullis::clients::ClientRegistration {
            name: "Demo RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            ..Default::default()
        })
        .await
    }

    pub async fn create_user(&self, email: &str, password: &str) -> TestUser {
        let now = self.state.clock.now();
        let pw = portcullis::accounts::Password::parse(password.into(), &self.settings.password)
            .unwrap();
        let user = portcullis::store::User {
            id: uuid::Uuid::new_v4(),
            email: email.into(),
            email_verified: true,
            name: Some("Ada Lovelace".into()),
            password_hash: Some(self.state.passwords.hash(&pw).await.unwrap()),
            roles: vec!["user".into()],
            disabled: false,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        self.state.store.create_user(&user, &[]).await.unwrap();
        TestUser {
            id: user.id,
            email: email.into(),
            password: password.into(),
        }
    }
}

/// A browser: keeps cookies, does not follow redirects (tests look at each hop).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `value` of the `<input name="{name}">` in a page, HTML-unescaped.
pub fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let at = html.find(&marker)?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[at..tag_end];
    let v = tag.find("value=\"")? + 7;
    let end = v + tag[v..].find('"')?;
    Some(unescape(&tag[v..end]))
}

pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where a response redirects to.
pub fn location(resp: &reqwest::Response) -> Option<url::Url> {
    let raw = resp.headers().get("location")?.to_str().ok()?;
    url::Url::parse(raw).ok()
}

/// The value of a query parameter of `url`.
pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What the browser met after following the sign-in hops.
pub enum Landing {
    /// Redirected to the client with these query parameters.
    Client(url::Url),
    /// A page was shown (status, HTML).
    #[allow(dead_code)]
    Page(u16, String),
}

impl TestApp {
    /// Follows an authorization URL like a person would: fills the login form when it shows
    /// up, answers the consent page with `consent` ("allow"/"deny"), and stops at the client.
    pub async fn sign_in(
        &self,
        browser: &reqwest::Client,
        auth_url: &str,
        user: &TestUser,
        consent: &str,
    ) -> Landing {
        sign_in_at(self, browser, auth_url, user, consent).await
    }
}

/// [`TestApp::sign_in`] on any server whose base is the issuer.
pub async fn sign_in_at(
    server: &impl Served,
    browser: &reqwest::Client,
    auth_url: &str,
    user: &TestUser,
    consent: &str,
) -> Landing {
    let mut next = browser.get(auth_url).send().await.unwrap();
    for _ in 0..8 {
        let status = next.status().as_u16();
        if status == 303 || status == 302 {
            let to = location(&next).expect("redirect target");
            if !to.as_str().starts_with(server.base()) {
                return Landing::Client(to);
            }
            next = browser.get(to).send().await.unwrap();
            continue;
        }
        let html = next.text().await.unwrap();
        if html.contains("action=\"/login\"") && !html.contains("role=\"alert\"") {
            let form = [
                ("csrf", form_value(&html, "csrf").unwrap()),
                ("return_to", form_value(&html, "return_to").unwrap()),
                ("username", user.email.clone()),
                ("password", user.password.clone()),
            ];
            next = browser
                .post(server.url("/login"))
                .form(&form)
                .send()
                .await
                .unwrap();
        } else if html.contains("action=\"/consent\"") {
            let form = [
                ("csrf", form_value(&html, "csrf").unwrap()),
                ("return_to", form_value(&html, "return_to").unwrap()),
                ("decision", consent.to_string()),
            ];
            next = browser
                .post(server.url("/consent"))
                .form(&form)
                .send()
                .await
                .unwrap();
        } else {
            return Landing::Page(status, html);
        }
    }
    panic!("too many hops");
}

// Shared steps of the flows the tests walk through.

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An authorization URL with sane defaults, overridden (or removed, with "") by `extra`.
pub fn auth_url(app: &impl Served, client: &TestClient, extra: &[(&str, &str)]) -> String {
    let c = challenge(VERIFIER);
    let mut params: Vec<(&str, String)> = vec![
        ("client_id", client.id.clone()),
        ("redirect_uri", client.redirect_uri.clone()),
        ("response_type", "code".into()),
        ("scope", "openid email".into()),
        ("state", "st4te".into()),
        ("nonce", "n0nce".into()),
        ("code_challenge", c),
        ("code_challenge_method", "S256".into()),
    ];
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push((k, v.to_string()));
        }
    }
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    url.to_string()
}

pub async fn code_for(
    app: &TestApp,
    client: &TestClient,
    user: &TestUser,
) -> (String, reqwest::Client) {
    let b = browser();
    match app
        .sign_in(&b, &auth_url(app, client, &[]), user, "allow")
        .await
    {
        Landing::Client(to) => (query(&to, "code").expect("code"), b),
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    }
}

pub async fn exchange(
    app: &impl Served,
    client: &TestClient,
    code: &str,
    verifier: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let resp = app
        .http()
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// Signs in and exchanges the code: the token response (asserting success).
pub async fn tokens_for(
    app: &TestApp,
    client: &TestClient,
    user: &TestUser,
    scope: &str,
) -> (reqwest::Client, serde_json::Value) {
    let b = browser();
    let url = auth_url(app, client, &[("scope", scope)]);
    let code = match app.sign_in(&b, &url, user, "allow").await {
        Landing::Client(to) => query(&to, "code").expect("code"),
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    };
    let (status, _, tokens) = exchange(app, client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    (b, tokens)
}

/// A client for services: client_credentials only.
pub async fn service_client(app: &TestApp) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Service".into(),
        grant_types: vec!["client_credentials".into()],
        scope: Some("api reports".into()),
        ..Default::default()
    })
    .await
}

/// A server with settings adjusted by `tune`.
pub async fn app_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    tune(&mut settings);
    TestApp::spawn_with(settings, dir, Arc::new(SystemClock)).await
}

/// POSTs a form with the client's Basic credentials: (status, JSON body or null).
pub async fn post_form(
    app: &impl Served,
    path: &str,
    client: &TestClient,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let resp = app
        .http()
        .post(app.url(path))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// One call of the JSON API: (status, JSON body or null).
pub async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Asserts an `ErrorResponse` with this status and code; returns its message.
pub fn assert_error(
    got: &(reqwest::StatusCode, serde_json::Value),
    status: u16,
    code: &str,
) -> String {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.1);
    assert_eq!(got.1["code"], code, "body: {}", got.1);
    assert!(
        got.1["traceId"].as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        got.1
    );
    got.1["message"].as_str().unwrap_or_default().to_string()
}

/// The product's own app, which `/auth/login` issues tokens to.
pub async fn first_party(app: &TestApp) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Product app".into(),
        redirect_uris: vec!["https://app.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: Some("openid profile email offline_access".into()),
        first_party: true,
        ..Default::default()
    })
    .await
}

/// The code an authenticator app shows at `t` for a base32 key.
pub fn code_at(secret: &str, t: i64) -> String {
    let key = totp_rs::Secret::try_from_base32(secret).expect("base32 key");
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(key)
        .build_noncompliant()
        .generate(t as u64)
        .to_string()
}
