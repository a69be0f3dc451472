//! Three `portcullis serve` processes of one deployment on one PostgreSQL database and one
//! Redis namespace (issue 8 §1): what cluster.rs shows in one process, with nothing shared
//! but the database, Redis and the configuration. Needs PostgreSQL and Redis: skipped without
//! them, failed under CI when they are down.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis::keys::MasterKey;
use serde_json::{json, Value};

use crate::common::{
    auth_url, browser, exchange, fresh_pg_database, pg_base_url, post_form, query, redis_base_url,
    sign_in_at, Landing, Served, TestClient, TestUser, VERIFIER,
};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// What every process of the deployment shares: database, Redis namespace, master key.
struct Deployment {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Deployment {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    }

    /// Runs a CLI command to completion and returns its standard output.
    fn cli(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "portcullis {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `portcullis serve` on `listen`; management on a free port.
    fn launch(&self, name: &'static str, listen: &str) -> Instance {
        let mut child = self
            .command(&["serve"])
            .env("PORTCULLIS_LISTEN", listen)
            .env("PORTCULLIS_MANAGEMENT__LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A thread drains stderr (so the server never blocks on a full pipe), passes each
        // line on, and hands back the whole log when the process ends.
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let logs = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        Instance {
            name,
            base: String::new(),
            management: String::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            child,
            lines,
            logs: Some(logs),
        }
    }
}

/// One server process; killed when dropped (its log is printed if the test failed).
struct Instance {
    name: &'static str,
    base: String,
    management: String,
    http: reqwest::Client,
    child: Child,
    lines: mpsc::Receiver<String>,
    logs: Option<std::thread::JoinHandle<String>>,
}

impl Instance {
    /// Waits (generously: the machine is shared) for the line that names the bound addresses.
    fn ready(mut self) -> Instance {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("Portcullis is listening") => {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(name))
                            .map(|a| format!("http://{a}"))
                            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                    };
                    self.base = field("addr=");
                    self.management = field("management=");
                    return self;
                }
                Ok(_) => {}
                Err(_) => panic!("instance {} did not start within 90 s", self.name),
            }
        }
    }
}

impl Served for Instance {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(logs) = self.logs.take() {
            let logs = logs.join().unwrap_or_default();
            if std::thread::panicking() {
                eprintln!("--- log of instance {} ---\n{logs}", self.name);
            }
        }
    }
}

/// A port that was free a moment ago: the issuer must name A's address before A starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn json_line(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn three_server_processes_behave_as_one_provider() {
    let (Some(pg), Some(redis)) = (pg_base_url(), redis_base_url()) else {
        eprintln!(
            "skipped: set PORTCULLIS_TEST_DATABASE_URL and PORTCULLIS_TEST_REDIS_URL \
             to run three server processes on one PostgreSQL and Redis"
        );
        return;
    };
    let database = fresh_pg_database(&pg).await;
    let port_a = free_port();
    let issuer = format!("http://127.0.0.1:{port_a}");
    let deployment = Deployment {
        dir: tempfile::tempdir().unwrap(),
        env: vec![
            ("PORTCULLIS_ISSUER", issuer.clone()),
            ("PORTCULLIS_DATABASE__URL", database),
            ("PORTCULLIS_REDIS__URL", redis),
            (
                "PORTCULLIS_REDIS__NAMESPACE",
                format!("pc-test-{}", uuid::Uuid::new_v4().simple()),
            ),
            ("PORTCULLIS_MASTER_KEY", MasterKey::generate_base64()),
            // Cheap hashing keeps the test fast.
            // Long enough that only the CLI's announcement can explain a prompt refusal.
            ("PORTCULLIS_DATABASE__CLIENT_CACHE_SECS", "60".into()),
            ("PORTCULLIS_PASSWORD__MEMORY_KIB", "64".into()),
            ("PORTCULLIS_PASSWORD__ITERATIONS", "1".into()),
            ("PORTCULLIS_RATE_LIMITS__TOKEN__LIMIT", "6".into()),
            ("PORTCULLIS_RATE_LIMITS__TOKEN__PERIOD_SECS", "60".into()),
        ],
    };

    // The clients and the user come from the operator's CLI, as in production.
    let create_client = |name: &str, grants: &[&str], scope: &str| {
        let mut args = vec![
            "client", "create", "--name", name, "--scope", scope, "--json",
        ];
        args.extend(["--redirect-uri", "https://rp.example.com/cb"]);
        for g in grants {
            args.extend(["--grant", *g]);
        }
        let created = json_line(&deployment.cli(&args, ""));
        TestClient {
            id: created["client_id"].as_str().unwrap().to_string(),
            secret: created["client_secret"].as_str().map(str::to_string),
            redirect_uri: "https://rp.example.com/cb".into(),
        }
    };
    // Creating the first client also migrates the fresh database, before the servers race.
    let client = create_client(
        "RP",
        &["authorization_code", "refresh_token"],
        "openid email offline_access",
    );
    let rs = create_client("Resource server", &["client_credentials"], "api");
    let svc = create_client("Service", &["client_credentials"], "api reports");
    let password = "correct horse battery";
    let created = json_line(&deployment.cli(
        &[
            "user",
            "create",
            "--email",
            "ada@example.org",
            "--verified",
            "--password-stdin",
            "--json",
        ],
        &format!("{password}\n"),
    ));
    let user = TestUser {
        id: created["id"].as_str().unwrap().parse().unwrap(),
        email: "ada@example.org".into(),
        password: password.into(),
    };

    // The three start together: their first-start work (signing keys) races on the database.
    let starting = [
        deployment.launch("A", &format!("127.0.0.1:{port_a}")),
        deployment.launch("B", "127.0.0.1:0"),
        deployment.launch("C", "127.0.0.1:0"),
    ];
    let [a, b, c] = starting.map(Instance::ready);
    for i in [&a, &b, &c] {
        let ready = i.http.get(format!("{}/health/ready", i.management));
        let body: Value = ready.send().await.unwrap().json().await.unwrap();
        assert_eq!(body["status"], "ready", "instance {}: {body}", i.name);
    }

    // A code issued on A is redeemed on B.
    let url = auth_url(&a, &client, &[("scope", "openid offline_access")]);
    let code = match sign_in_at(&a, &browser(), &url, &user, "allow").await {
        Landing::Client(to) => query(&to, "code").expect("code"),
        Landing::Page(status, html) => panic!("{status}: {html}"),
    };
    let (status, _, tokens) = exchange(&b, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();

    // A token issued on B validates against C's JWKS and introspects on A.
    let jwks = c.http.get(c.url("/jwks.json")).send().await.unwrap();
    let jwks: Value = jwks.json().await.unwrap();
    let kid = jwt_kid(access);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid),
        "C publishes B's signing key {kid}: {jwks}"
    );
    let info = c
        .http
        .get(c.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200, "C accepts B's token");
    let (_, body) = post_form(&a, "/introspect", &rs, &[("token", access)]).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], user.id.to_string());

    // The same refresh token sent to A and B at the same moment succeeds once.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (ra, rb) = tokio::join!(
        post_form(&a, "/token", &client, &form),
        post_form(&b, "/token", &client, &form)
    );
    assert_eq!(
        u16::from(ra.0 == 200) + u16::from(rb.0 == 200),
        1,
        "one winner: {ra:?} {rb:?}"
    );

    // A revocation on C is seen by A at once.
    let (status, _) = post_form(&c, "/revoke", &client, &[("token", access)]).await;
    assert_eq!(status, 200);
    let (_, body) = post_form(&a, "/introspect", &rs, &[("token", access)]).await;
    assert_eq!(body, json!({"active": false}));

    // Rate limits are one budget: six client_credentials grants in all, wherever they land.
    let cc = [("grant_type", "client_credentials")];
    let mut statuses = Vec::new();
    for i in [&a, &b, &c, &a, &b, &c, &a] {
        statuses.push(post_form(i, "/token", &svc, &cc).await.0);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429],
        "one budget of 6"
    );

    // A client deleted from the deployment (the CLI, next to A) is refused on B within issue
    // 8's one second: B keeps clients in memory for database.client_cache_secs (60 s here),
    // but the CLI announces the deletion through Redis and B forgets its entries when it
    // hears it.
    let out = deployment.cli(&["client", "delete", &client.id], "");
    assert!(out.contains("announced to running servers"), "{out}");
    let deleted_at = Instant::now();
    let mut last = (0, Value::Null);
    while deleted_at.elapsed() < Duration::from_secs(1) {
        last = post_form(&b, "/token", &client, &form).await;
        if last.0 == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (last.0, last.1["error"].as_str()),
        (401, Some("invalid_client")),
        "B still accepted the deleted client a second later: {}",
        last.1
    );
}

/// The `kid` in a JWT's protected header.
fn jwt_kid(jwt: &str) -> Value {
    use base64::Engine;
    let header = jwt.split('.').next().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<Value>(&raw).unwrap()["kid"].clone()
}

/// Issue 18: two `portcullis serve` processes on one PostgreSQL database share the outbox.
/// In the normal case every event reaches the webhook once (claims skip rows another
/// instance holds); when the instance delivering is killed mid-request, the delivery's lease
/// runs out and the other instance delivers it (at least once).
#[tokio::test]
async fn two_server_processes_deliver_every_event_once_and_survive_a_kill() {
    use crate::events::{receiver, Reply};
    use portcullis::events::WebhookSecret;
    let Some(pg) = pg_base_url() else {
        eprintln!("skipped: set PORTCULLIS_TEST_DATABASE_URL to run two servers on one PostgreSQL");
        return;
    };
    let database = fresh_pg_database(&pg).await;
    let port_a = free_port();
    let deployment = Deployment {
        dir: tempfile::tempdir().unwrap(),
        env: vec![
            ("PORTCULLIS_ISSUER", format!("http://127.0.0.1:{port_a}")),
            ("PORTCULLIS_DATABASE__URL", database),
            ("PORTCULLIS_MASTER_KEY", MasterKey::generate_base64()),
        ],
    };
    // Quick workers, a 4 s request timeout and a 5 s lease; the receiver is on loopback.
    let config = deployment.dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("portcullis.toml"),
        "[events]\npoll_interval_ms = 20\nretry_schedule_secs = [1, 1, 1]\njitter_percent = 0\n\
         delivery_timeout_secs = 4\nlease_secs = 5\nallow_private_targets = [\"127.0.0.0/8\"]\n",
    )
    .unwrap();
    let (url, rx) = receiver().await;
    // The operator's CLI subscribes (and migrates the fresh database before the servers start).
    let created = json_line(&deployment.cli(
        &[
            "webhook",
            "create",
            "--url",
            &url,
            "--event",
            "client.created",
            "--json",
        ],
        "",
    ));
    let secret = WebhookSecret::parse(created["secret"].as_str().unwrap()).unwrap();
    assert!(
        created["id"].as_str().is_some_and(|id| id.len() == 36),
        "{created}"
    );
    let listed = deployment.cli(&["webhook", "list", "--json"], "");
    assert!(listed.contains(created["id"].as_str().unwrap()) && !listed.contains("whsec_"));

    let starting = [
        deployment.launch("A", &format!("127.0.0.1:{port_a}")),
        deployment.launch("B", "127.0.0.1:0"),
    ];
    let [a, b] = starting.map(Instance::ready);
    let create_client = |name: &str| {
        deployment.cli(
            &[
                "client",
                "create",
                "--name",
                name,
                "--redirect-uri",
                "https://rp.example.com/cb",
                "--json",
            ],
            "",
        )
    };
    const N: usize = 8;
    for i in 0..N {
        create_client(&format!("client {i}"));
    }
    let wait_hits = |n: usize| {
        let rx = rx.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while rx.hits().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {n} deliveries",
                    rx.hits().len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_hits(N).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = rx.hits();
    let mut ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((hits.len(), ids.len()), (N, N), "each event exactly once");
    assert!(hits.iter().all(|h| secret.verify(
        &h.id,
        h.timestamp,
        h.body.as_bytes(),
        &h.signature
    )));

    // B stops; A takes the next event and is killed while the receiver holds the request.
    drop(b);
    rx.plan(&[Reply::Slow(3000)]);
    create_client("the one in flight");
    wait_hits(N + 1).await;
    drop(a);
    let b = deployment.launch("B2", "127.0.0.1:0").ready();
    // B2 takes the delivery over once A's lease has run out, and the receiver answers at once.
    wait_hits(N + 2).await;
    let hits = rx.hits();
    let (last, again) = (&hits[N], &hits[N + 1]);
    assert_eq!(
        last.id, again.id,
        "the same event, delivered again with its webhook-id"
    );
    let out = deployment.cli(
        &["webhook", "deliveries", "--state", "delivered", "--json"],
        "",
    );
    assert_eq!(out.lines().count(), N + 1, "{out}");
    drop(b);
}
