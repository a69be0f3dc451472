//! The operator's command line, run as a real process.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis::store;
use serde_json::Value;

use crate::common::fresh_database_url;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A working directory and database for CLI runs, with no other configuration.
pub struct Cli {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl Cli {
    pub async fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database_url(dir.path()).await;
        Cli { dir, db }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORTCULLIS_DATABASE__URL", &self.db)
            .env("PORTCULLIS_PASSWORD__MEMORY_KIB", "64")
            .env("PORTCULLIS_PASSWORD__ITERATIONS", "1");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
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
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    async fn client_count(&self) -> usize {
        store::open(&self.db, 1)
            .await
            .unwrap()
            .list_clients()
            .await
            .unwrap()
            .len()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn client_create_json_prints_one_object_and_list_shows_it() {
    let cli = Cli::new().await;
    let out = cli.run(&[
        "client",
        "create",
        "--name",
        "demo",
        "--redirect-uri",
        "http://localhost:3000/cb",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.trim().lines().count(), 1, "exactly one line: {text}");
    let created: Value = serde_json::from_str(text.trim()).unwrap();
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert!(secret.len() >= 43, "a 256-bit secret");
    assert_eq!(created.as_object().unwrap().len(), 2);

    let list = cli.run(&["client", "list"]);
    assert!(list.status.success());
    assert!(stdout(&list).contains(id) && stdout(&list).contains("demo"));
    let show = cli.run(&["client", "show", id, "--json"]);
    let shown: Value = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["http://localhost:3000/cb"])
    );
    assert!(
        !stdout(&show).contains(secret),
        "the secret is never shown again"
    );

    // Only its hash is stored.
    let stored = store::open(&cli.db, 1)
        .await
        .unwrap()
        .get_client(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secret_hash.as_deref(),
        Some(portcullis::random::hash_secret(secret).as_str())
    );

    let public = cli.run(&[
        "client",
        "create",
        "--name",
        "spa",
        "--public",
        "--redirect-uri",
        "https://spa.example.com/cb",
        "--json",
    ]);
    let public: Value = serde_json::from_str(stdout(&public).trim()).unwrap();
    assert!(public.get("client_secret").is_none());

    let del = cli.run(&["client", "delete", id]);
    assert!(del.status.success());
    assert_eq!(cli.client_count().await, 1);
    let again = cli.run(&["client", "delete", id]);
    assert_eq!(again.status.code(), Some(2));
}

#[tokio::test]
async fn client_list_check_names_confidential_clients_with_loopback_redirect_uris() {
    let cli = Cli::new().await;
    let create = |name: &str, uri: &str, public: bool| {
        let mut args = vec![
            "client",
            "create",
            "--name",
            name,
            "--redirect-uri",
            uri,
            "--json",
        ];
        if public {
            args.push("--public");
        }
        let out = cli.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let created: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        created["client_id"].as_str().unwrap().to_string()
    };
    let web = create("web", "https://app.example.com/cb", false);
    let ok = cli.run(&["client", "list", "--check"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok:"), "{}", stdout(&ok));

    let dev = create("dev web", "http://localhost:7777/cb", false);
    let native = create("native", "http://127.0.0.1/cb", true);
    let out = cli.run(&["client", "list", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one URI of one client: {text}");
    assert!(
        text.contains(&dev) && text.contains("http://localhost:7777/cb"),
        "{text}"
    );
    assert!(
        text.contains("once per port") && text.contains("--public"),
        "says what to do: {text}"
    );
    assert!(!text.contains(&native) && !text.contains(&web), "{text}");

    let json = cli.run(&["client", "list", "--check", "--json"]);
    let notices: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        notices,
        serde_json::json!([{
            "client_id": dev,
            "name": "dev web",
            "redirect_uri": "http://localhost:7777/cb",
        }])
    );
}

#[tokio::test]
async fn bad_client_input_exits_2_with_a_clear_message_and_writes_nothing() {
    let cli = Cli::new().await;
    let cases: [(&[&str], &str); 6] = [
        (&["--redirect-uri", "/callback"], "not an absolute URI"),
        (
            &["--redirect-uri", "https://app.example.com/cb#frag"],
            "fragment",
        ),
        (
            &["--redirect-uri", "http://app.example.com/cb"],
            "--allow-insecure-redirect",
        ),
        (
            &[
                "--redirect-uri",
                "https://app.example.com/cb",
                "--grant",
                "password",
            ],
            "unknown grant \"password\"",
        ),
        (
            &["--public", "--grant", "client_credentials"],
            "public client",
        ),
        (&[], "at least one --redirect-uri"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["client", "create", "--name", "bad"];
        args.extend_from_slice(extra);
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
    assert_eq!(cli.client_count().await, 0, "nothing written");
    let ok = cli.run(&[
        "client",
        "create",
        "--name",
        "test",
        "--redirect-uri",
        "http://app.test/cb",
        "--allow-insecure-redirect",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin_and_refuses_duplicates() {
    let cli = Cli::new().await;
    let args = [
        "user",
        "create",
        "--email",
        "Ada@Example.org",
        "--name",
        "Ada",
        "--role",
        "admin",
        "--verified",
        "--password-stdin",
        "--json",
    ];
    let out = cli.run_with_stdin(&args, "correct horse battery\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(created["email"], "Ada@Example.org");

    let store = store::open(&cli.db, 1).await.unwrap();
    let user = store
        .find_user_by_email("ada@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.roles, vec!["admin"]);
    assert!(user.email_verified);
    let hash = user.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"));

    let dup = cli.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "ada@example.ORG",
            "--password-stdin",
        ],
        "another password\n",
    );
    assert_eq!(dup.status.code(), Some(2));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));

    for (args, input, expected) in [
        (
            vec![
                "user",
                "create",
                "--email",
                "not-an-email",
                "--password-stdin",
            ],
            "long enough pw\n",
            "not an email",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "b@example.org",
                "--password-stdin",
            ],
            "short\n",
            "at least 8",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "c@example.org",
                "--role",
                "root",
                "--password-stdin",
            ],
            "long enough pw\n",
            "unknown role",
        ),
    ] {
        let out = cli.run_with_stdin(&args, input);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        store.list_users().await.unwrap().len(),
        1,
        "nothing written"
    );
    let list = cli.run(&["user", "list"]);
    assert!(stdout(&list).contains("Ada@Example.org"));
}

#[tokio::test]
async fn keys_rotate_promotes_the_next_key() {
    let cli = Cli::new().await;
    let list: Value = serde_json::from_str(&stdout(&cli.run(&["keys", "list", "--json"]))).unwrap();
    let next_es = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "ES256" && k["state"] == "next")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli.run(&["keys", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("ES256: {next_es} is now the active key")));
    let list: Value = serde_json::from_str(&stdout(&cli.run(&["keys", "list", "--json"]))).unwrap();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["alg"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        for state in ["retired", "active", "next"] {
            assert_eq!(
                states.iter().filter(|s| **s == (alg, state)).count(),
                1,
                "{states:?}"
            );
        }
    }
    assert!(
        cli.dir.path().join("data/master.key").exists(),
        "a master key was generated for the CLI"
    );
}

#[tokio::test]
async fn invalid_configuration_names_the_key_the_value_and_the_expectation() {
    let cli = Cli::new().await;
    let out = cli
        .command(&["migrate"])
        .env("PORTCULLIS_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("`listen`") && err.contains("nowhere") && err.contains("127.0.0.1:8080"),
        "{err}"
    );

    let out = cli
        .command(&["migrate"])
        .env("PORTCULLIS_ISSUER", "http://id.example.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`issuer`"), "{}", stderr(&out));

    let out = cli
        .command(&["migrate"])
        .env("PORTCULLIS_TOKENS__ACCESS_TOKEN_TTL_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("tokens.access_token_ttl_secs"),
        "{}",
        stderr(&out)
    );

    let out = cli
        .command(&["migrate"])
        .env("PORTCULLIS_MASTER_KEY", "too-short")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("master_key") || err.contains("master key"),
        "{err}"
    );

    // A typo in the TOML file is refused, not ignored.
    let file = cli.dir.path().join("typo.toml");
    std::fs::write(&file, "isuer = \"https://id.example.com\"\n").unwrap();
    let out = cli
        .command(&["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("isuer"), "{}", stderr(&out));

    let out = cli
        .command(&["--config", "missing.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.toml"));
}

#[tokio::test]
async fn serve_with_no_configuration_starts_on_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing but a free port: the defaults must do the rest.
    let (addr, child) = start_serve(dir.path(), &[]);
    let http = reqwest::Client::new();
    let disco: Value = http
        .get(format!("http://{addr}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], "http://localhost:8080");
    let jwks: Value = http
        .get(format!("http://{addr}/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 8);
    assert!(dir.path().join("data/portcullis.db").exists());
    let key_file = dir.path().join("data/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let output = stop(child);
    assert!(
        output.status.success(),
        "graceful exit on SIGTERM: {:?}",
        output.status
    );
    let logs = stderr(&output);
    assert!(logs.contains("production must supply"), "{logs}");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(!logs.contains(key.trim()), "the master key is never logged");

    // A restart in the same place keeps the keys.
    let (addr, child) = start_serve(dir.path(), &[]);
    let again: Value = http
        .get(format!("http://{addr}/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, jwks);
    stop(child);
}

// The child is handed to the caller, whose `stop` waits for it.
#[allow(clippy::zombie_processes)]
fn start_serve(dir: &Path, extra_env: &[(&str, &str)]) -> (String, std::process::Child) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_MANAGEMENT__LISTEN", "127.0.0.1:0")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not announce its address:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains("Portcullis is listening") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap()
                .to_string();
            // Keep draining stderr so the server never blocks on a full pipe.
            let handle = std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
                seen + &rest
            });
            STDERR.with(|s| s.borrow_mut().push(handle));
            return (addr, child);
        }
    }
}

thread_local! {
    static STDERR: std::cell::RefCell<Vec<std::thread::JoinHandle<String>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sends SIGTERM and collects the exit status and everything the server logged.
fn stop(mut child: std::process::Child) -> Output {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let logs = STDERR
        .with(|s| s.borrow_mut().pop())
        .map(|h| h.join().unwrap())
        .unwrap_or_default();
    Output {
        status,
        stdout: Vec::new(),
        stderr: logs.into_bytes(),
    }
}

/// What one OTLP export request carried: its path and its (protobuf) body.
type Export = (String, Vec<u8>);

#[derive(Clone, Default)]
struct Collected(std::sync::Arc<std::sync::Mutex<Vec<Export>>>);

#[poem::handler]
fn collect(req: &poem::Request, body: Vec<u8>, got: poem::web::Data<&Collected>) -> &'static str {
    got.0
         .0
        .lock()
        .unwrap()
        .push((req.uri().path().to_string(), body));
    ""
}

/// One span as the collector received it.
#[derive(Debug)]
struct ExportedSpan {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<(String, String)>,
}

impl ExportedSpan {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes OTLP/HTTP protobuf export requests into their spans.
fn decode_spans(bodies: &[Vec<u8>]) -> Vec<ExportedSpan> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    let mut spans = Vec::new();
    for body in bodies {
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for scope in request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
        {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .into_iter()
                    .map(|kv| {
                        let value = match kv.value.and_then(|v| v.value) {
                            Some(Any::StringValue(s)) => s,
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key, value)
                    })
                    .collect();
                spans.push(ExportedSpan {
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes,
                });
            }
        }
    }
    spans
}

/// Whether `span` descends from `ancestor` (through the parents the collector received).
fn descends_from(spans: &[ExportedSpan], span: &ExportedSpan, ancestor: &ExportedSpan) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..spans.len() {
        if parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(p) => parent = p.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_a_collector_is_configured() {
    use poem::EndpointExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let got = Collected::default();
    let app = poem::Route::new()
        .at("/v1/traces", poem::post(collect))
        .data(got.clone());
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let (addr, child) = start_serve(
        dir.path(),
        &[
            ("PORTCULLIS_TELEMETRY__OTLP_ENDPOINT", collector.as_str()),
            ("PORTCULLIS_PASSWORD__MEMORY_KIB", "64"),
            ("PORTCULLIS_PASSWORD__ITERATIONS", "1"),
        ],
    );
    let resp = reqwest::get(format!("http://{addr}/jwks.json"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A sign-in attempt: a database lookup and a password hash, in the request's trace.
    let browser = crate::common::browser();
    let page = browser
        .get(format!("http://{addr}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::common::form_value(&page, "csrf").expect("CSRF field");
    let password = "not-the-password-7f3a";
    let login = browser
        .post(format!("http://{addr}/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "nobody@example.org"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert!(login.status().is_client_error(), "{}", login.status());
    let output = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert!(output.status.success());
    // Shutting down flushes the batch.
    let exported = got.0.lock().unwrap().clone();
    assert!(
        exported
            .iter()
            .any(|(path, body)| path == "/v1/traces" && !body.is_empty()),
        "no spans reached the collector: {:?}\n{}",
        exported
            .iter()
            .map(|(p, b)| (p, b.len()))
            .collect::<Vec<_>>(),
        stderr(&output)
    );
    let bodies: Vec<Vec<u8>> = exported.into_iter().map(|(_, body)| body).collect();
    assert!(
        !bodies
            .iter()
            .any(|b| b.windows(password.len()).any(|w| w == password.as_bytes())),
        "the password never reaches a span"
    );
    let spans = decode_spans(&bodies);
    let request = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && s.attribute("path") == Some("/login")
                && s.attribute("method") == Some("POST")
        })
        .unwrap_or_else(|| panic!("no span for POST /login: {spans:#?}"));
    let in_request = |name: &str| {
        spans.iter().find(|s| {
            s.name == name && s.trace_id == request.trace_id && descends_from(&spans, s, request)
        })
    };
    let db = in_request("find_user_by_email")
        .unwrap_or_else(|| panic!("no database span under the request: {spans:#?}"));
    assert_eq!(db.attribute("db.system"), Some("sqlite"));
    assert!(
        in_request("password.verify").is_some(),
        "no hashing span under the request: {spans:#?}"
    );
    // The hash itself runs on a hashing thread, still in the request's trace.
    assert!(
        in_request("argon2").is_some(),
        "no argon2 span under the request: {spans:#?}"
    );
}

#[tokio::test]
async fn a_taken_port_stops_start_up_with_the_setting_to_change() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_MANAGEMENT__LISTEN", &taken)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("management.listen") && err.contains("PORTCULLIS_MANAGEMENT__LISTEN"),
        "{err}"
    );
    drop(busy);
}

#[tokio::test]
async fn audit_tail_prints_the_newest_events_oldest_first() {
    let cli = Cli::new().await;
    for name in ["first", "second"] {
        let out = cli.run(&[
            "client",
            "create",
            "--name",
            name,
            "--grant",
            "client_credentials",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli.run(&["audit", "tail", "-n", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.iter().all(|l| l.contains("client.created")), "{text}");
    let json = cli.run(&[
        "audit",
        "tail",
        "-n",
        "1",
        "--json",
        "--type",
        "client.created",
    ]);
    let event: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(event["kind"], "client.created");
    assert!(!stdout(&json).contains("secret"), "no secret in the trail");
    let none = cli.run(&["audit", "tail", "--type", "login.failed"]);
    assert!(none.status.success() && stdout(&none).is_empty());
}

#[tokio::test]
async fn require_mfa_clients_and_user_reset_mfa() {
    let cli = Cli::new().await;
    let out = cli.run(&[
        "client",
        "create",
        "--name",
        "Payroll",
        "--redirect-uri",
        "https://payroll.example.com/cb",
        "--require-mfa",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let store = store::open(&cli.db, 1).await.unwrap();
    let client = store
        .get_client(created["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(client.require_mfa);

    let out = cli.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "ada@example.org",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let user = store
        .find_user_by_email("ada@example.org")
        .await
        .unwrap()
        .unwrap();
    let factor = store::MfaFactor {
        id: uuid::Uuid::now_v7(),
        user_id: user.id,
        kind: store::FactorKind::Totp,
        name: "Authenticator app".into(),
        secret_sealed: Some(vec![0; 8]),
        last_step: None,
        credential_id: None,
        credential: None,
        confirmed_at: Some(1),
        created_at: 1,
        last_used_at: None,
    };
    store.create_factor(&factor).await.unwrap();
    store
        .replace_recovery_codes(user.id, &["h".to_string()], 1)
        .await
        .unwrap();

    let out = cli.run(&["user", "reset-mfa", "--email", "ADA@example.org"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("removed 1 second factor"),
        "{}",
        stdout(&out)
    );
    assert!(store.list_factors(user.id).await.unwrap().is_empty());
    assert_eq!(store.count_recovery_codes(user.id).await.unwrap(), 0);
    let audit = store.recent_audit(5).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == "mfa.reset" && e.actor.as_deref() == Some("cli")));

    let out = cli.run(&["user", "reset-mfa", "--email", "nobody@example.org"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no user has the address"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn resources_are_registered_listed_given_to_clients_and_deleted() {
    let cli = Cli::new().await;
    let out = cli.run(&[
        "resource",
        "create",
        "--identifier",
        "https://orders.example.com",
        "--scope",
        "orders:read",
        "--scope",
        "orders:write",
        "--access-token-lifetime",
        "300",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created["scopes"],
        serde_json::json!(["orders:read", "orders:write"])
    );
    // Refused input exits 2 and names the problem.
    for bad in [
        vec!["--identifier", "orders", "--scope", "x"],
        vec!["--identifier", "https://a.example.com"],
        vec![
            "--identifier",
            "https://a.example.com",
            "--scope",
            "x",
            "--access-token-lifetime",
            "1",
        ],
        vec!["--identifier", "https://orders.example.com", "--scope", "x"],
    ] {
        let mut args = vec!["resource", "create"];
        args.extend(bad.iter().copied());
        let out = cli.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli.run(&["resource", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A client is allowed registered resources only.
    let client = |resource: &str| {
        cli.run(&[
            "client",
            "create",
            "--name",
            "batch",
            "--grant",
            "client_credentials",
            "--scope",
            "orders:read",
            "--resource",
            resource,
            "--dpop-bound",
            "--json",
        ])
    };
    assert_eq!(client("https://unknown.example.com").status.code(), Some(2));
    let out = client("https://orders.example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli.run(&["client", "show", &id, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["resources"],
        serde_json::json!(["https://orders.example.com"])
    );
    assert_eq!(shown["dpop_bound_access_tokens"], true);
    let out = cli.run(&[
        "client",
        "update",
        &id,
        "--no-resources",
        "--dpop-bound",
        "false",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cli
        .run(&["resource", "delete", "https://orders.example.com"])
        .status
        .success());
    assert_eq!(
        cli.run(&["resource", "delete", "https://orders.example.com"])
            .status
            .code(),
        Some(2)
    );
}
