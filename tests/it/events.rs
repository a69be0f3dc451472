//! Domain events end to end: every action writes its event in the transaction of its change
//! (and a change that fails writes none), webhooks receive them signed per Standard Webhooks,
//! failures are retried then dead-lettered and replayable, internal targets are refused, and
//! the admin API and CLI manage it all.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode as PoemStatus;
use poem::web::Data;
use poem::{handler, post, EndpointExt, Request, Response, Route, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use portcullis::accounts::service::RequestMeta;
use portcullis::accounts::{Registration, UserPatch};
use portcullis::clients::ClientRegistration;
use portcullis::config::Settings;
use portcullis::events::{Event, EventType, WebhookSecret};
use portcullis::store::{AccountToken, EventQuery, StoreError, TokenPurpose, User};

use crate::common::{api, app_with, assert_error, first_party, TestApp};

const PASSWORD: &str = "violet staple kettle";

/// Fast workers: a 20 ms poll, two immediate retries, a 1 s request timeout, loopback allowed.
fn fast(s: &mut Settings) {
    s.events.poll_interval_ms = 20;
    s.events.retry_schedule_secs = vec![0, 0];
    s.events.jitter_percent = 0;
    s.events.delivery_timeout_secs = 1;
    s.events.lease_secs = 5;
    s.events.allow_private_targets = vec!["127.0.0.0/8".into()];
}

/// The outbox (of one type, or all), newest first.
async fn outbox(app: &TestApp, kind: Option<EventType>) -> Vec<portcullis::store::OutboxEvent> {
    app.state
        .store
        .recent_events(&EventQuery {
            kind: kind.map(|k| k.as_str().to_string()),
            limit: 1000,
            since: None,
        })
        .await
        .unwrap()
}

/// The types of the events in the outbox, oldest first.
async fn types(app: &TestApp) -> Vec<String> {
    let mut events = outbox(app, None).await;
    events.reverse();
    events.into_iter().map(|e| e.kind).collect()
}

async fn envelopes(app: &TestApp, kind: EventType) -> Vec<Value> {
    outbox(app, Some(kind))
        .await
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

fn meta() -> RequestMeta {
    RequestMeta {
        ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("tests".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    }
}

/// A mailed link token with a known value, as the mailer would have sent.
async fn link(app: &TestApp, user: &User, purpose: TokenPurpose, email: &str) -> String {
    let value = uuid::Uuid::new_v4().simple().to_string();
    let now = app.state.clock.now();
    app.state
        .store
        .create_account_token(&AccountToken {
            token_hash: portcullis::random::hash_secret(&value),
            purpose,
            user_id: user.id,
            email: email.into(),
            created_at: now,
            expires_at: now + 600,
            used_at: None,
        })
        .await
        .unwrap();
    value
}

async fn stored_user(app: &TestApp, id: uuid::Uuid) -> User {
    app.state.store.get_user(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn each_account_action_writes_its_event_with_the_change() {
    let app = app_with(|s| {
        s.events.workers = false;
        s.rate_limits.login_account.limit = 3;
        s.rate_limits.login_account_ip.limit = 2;
    })
    .await;
    let m = meta();
    let accounts = &app.state.accounts;

    let registered = accounts
        .register(
            &m,
            Registration {
                email: "ada@example.com",
                password: PASSWORD.into(),
                name: Some("Ada"),
            },
        )
        .await
        .unwrap();
    let user = stored_user(&app, registered.id).await;
    let token = link(&app, &user, TokenPurpose::VerifyEmail, &user.email).await;
    accounts.verify_email(&m, &token).await.unwrap();
    accounts
        .update_user_as_operator(
            &m,
            "cli",
            user.id,
            UserPatch {
                name: Some(Some("Ada L.".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let user = stored_user(&app, user.id).await;
    accounts
        .change_password(&m, &user, PASSWORD, "a brand new passphrase".into())
        .await
        .unwrap();
    let user = stored_user(&app, user.id).await;
    let reset = link(&app, &user, TokenPurpose::PasswordReset, &user.email).await;
    accounts
        .confirm_password_reset(&m, &reset, "yet another passphrase".into())
        .await
        .unwrap();
    assert!(accounts
        .sign_in(&m, "ada@example.com", "wrong one")
        .await
        .is_err());
    assert!(accounts
        .sign_in(&m, "ada@example.com", "wrong two")
        .await
        .is_err());
    let mut admin = stored_user(&app, user.id).await;
    admin.roles = vec!["admin".into()];
    accounts.delete_user(&m, &admin, user.id).await.unwrap();

    assert_eq!(
        types(&app).await,
        [
            "user.registered",
            "user.email_verified",
            "user.updated",
            "user.password_changed",
            "user.password_reset",
            "user.sign_in_failed",
            "user.sign_in_failed",
            "user.locked_out",
            "user.deleted",
        ]
    );
    let first = &envelopes(&app, EventType::UserRegistered).await[0];
    assert_eq!(first["version"], 1);
    assert_eq!(first["subject"], user.id.to_string());
    assert_eq!(first["data"]["email"], "ada@example.com");
    assert_eq!(first["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let updated = &envelopes(&app, EventType::UserUpdated).await[0];
    assert_eq!(updated["data"]["changed"], json!(["name"]));
    let failed = &envelopes(&app, EventType::UserSignInFailed).await[0];
    assert_eq!(failed["subject"], user.id.to_string());
    assert_eq!(failed["data"]["ip"], "203.0.113.9");
    // Never a secret: no hash, password or token anywhere in the outbox.
    for e in outbox(&app, None).await {
        for needle in ["argon2", PASSWORD, "passphrase", &token, &reset] {
            assert!(!e.payload.contains(needle), "{} leaks {needle}", e.payload);
        }
    }
}

#[tokio::test]
async fn client_key_session_and_refresh_actions_write_their_events() {
    let app = app_with(|s| {
        s.events.workers = false;
        s.tokens.refresh_grace_secs = 0;
    })
    .await;
    let before = types(&app).await.len();
    let admin = &app.state.client_admin;
    let created = admin
        .create(
            &ClientRegistration {
                name: "Billing".into(),
                redirect_uris: vec!["https://billing.example.com/cb".into()],
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                scope: Some("openid offline_access".into()),
                ..Default::default()
            },
            "cli",
        )
        .await
        .unwrap();
    let id = created.client.id.clone();
    admin.set_disabled(&id, true, "cli").await.unwrap();
    admin.set_disabled(&id, false, "cli").await.unwrap();
    admin.rotate_secret(&id, "cli").await.unwrap();

    // A sign-in through the pages, then reuse of a spent refresh token.
    let user = app.create_user("bob@example.com", PASSWORD).await;
    let rp = app
        .register_client(ClientRegistration {
            name: "RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scope: Some("openid offline_access".into()),
            ..Default::default()
        })
        .await;
    let (_, tokens) = crate::common::tokens_for(&app, &rp, &user, "openid offline_access").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, _) = crate::common::post_form(&app, "/token", &rp, &form).await;
    assert_eq!(status, 200);
    let (status, _) = crate::common::post_form(&app, "/token", &rp, &form).await;
    assert_eq!(status, 400, "a spent refresh token is refused");
    let ended = app
        .state
        .sessions
        .end_other_sessions(user.id, None, "cli", "admin")
        .await
        .unwrap();
    assert_eq!(ended, 1);

    app.state.keys.rotate_by(None).await.unwrap();
    let retired = app
        .state
        .store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == portcullis::store::KeyState::Retired)
        .unwrap();
    assert!(app.state.keys.revoke_by(&retired.kid, None).await.unwrap());
    admin.delete(&id, "cli").await.unwrap();

    let all = types(&app).await;
    let got: Vec<&str> = all[before..].iter().map(String::as_str).collect();
    let algs = portcullis::keys::SigningAlg::ALL.len();
    let mut want = vec![
        "client.created",
        "client.updated",
        "client.updated",
        "client.updated",
        "client.created",
        "user.signed_in",
        "token.refresh_reuse_detected",
        "session.ended",
    ];
    want.extend(std::iter::repeat_n("key.rotated", algs));
    want.extend(["key.revoked", "client.deleted"]);
    assert_eq!(got, want);
    let reuse = &envelopes(&app, EventType::TokenRefreshReuseDetected).await[0];
    assert_eq!(reuse["client"], rp.id);
    assert_eq!(reuse["subject"], user.id.to_string());
    let changes: Vec<Value> = envelopes(&app, EventType::ClientUpdated)
        .await
        .iter()
        .map(|e| e["data"]["change"].clone())
        .collect();
    assert_eq!(
        changes,
        [json!("secret_rotated"), json!("enabled"), json!("disabled")]
    );
}

#[tokio::test]
async fn a_change_that_fails_or_rolls_back_writes_no_event() {
    let app = app_with(|s| s.events.workers = false).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let before = types(&app).await;

    // A taken address: the insert fails, and its event goes with the rolled-back transaction.
    let mut twin = stored_user(&app, user.id).await;
    twin.id = uuid::Uuid::new_v4();
    twin.email = "ADA@example.com".into();
    let event = Event::new(EventType::UserRegistered, app.state.clock.now()).subject(twin.id);
    assert!(matches!(
        app.state
            .store
            .create_user(&twin, std::slice::from_ref(&event))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Registering the taken address through the service answers as usual, writes nothing.
    app.state
        .accounts
        .register(
            &meta(),
            Registration {
                email: "ada@example.com",
                password: PASSWORD.into(),
                name: None,
            },
        )
        .await
        .unwrap();
    // Changes that do not happen: an unknown user, a spent link, an unknown client.
    let mut ghost = twin.clone();
    ghost.id = uuid::Uuid::new_v4();
    assert!(!app
        .state
        .store
        .update_user(&ghost, std::slice::from_ref(&event))
        .await
        .unwrap());
    assert!(app
        .state
        .accounts
        .verify_email(&meta(), "no-such-link")
        .await
        .is_err());
    assert!(app.state.client_admin.delete("nope", "cli").await.is_err());
    assert!(!app
        .state
        .store
        .revoke_session("nope", 1, std::slice::from_ref(&event))
        .await
        .unwrap());
    assert_eq!(types(&app).await, before);
    assert!(outbox(&app, None).await.iter().all(|e| e.id != event.id));
}

// ---- webhooks ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: String,
}

/// What the receiver answers next: a status, or a status after a delay.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    Slow(u64),
}

#[derive(Clone, Default)]
pub struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Replies to give, in order; 200 once they run out.
    plan: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn plan(&self, replies: &[Reply]) {
        self.plan.lock().unwrap().extend(replies.iter().copied());
    }
}

#[handler]
async fn receive(req: &Request, body: String, rx: Data<&Receiver>) -> Response {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    rx.0.hits.lock().unwrap().push(Hit {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or(0),
        signature: header("webhook-signature"),
        body,
    });
    let next = rx.0.plan.lock().unwrap().pop_front();
    let status = match next {
        Some(Reply::Status(s)) => s,
        Some(Reply::Slow(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            200
        }
        None => 200,
    };
    Response::builder()
        .status(PoemStatus::from_u16(status).unwrap())
        .header("location", "http://127.0.0.1:1/elsewhere")
        .body("ok")
}

/// A webhook receiver on a free loopback port: its URL and what it got.
pub async fn receiver() -> (String, Receiver) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let rx = Receiver::default();
    let app = Route::new().at("/hook", post(receive)).data(rx.clone());
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}/hook"), rx)
}

/// An admin's access token (the API signs in through the first-party client).
async fn admin_token(app: &TestApp) -> String {
    first_party(app).await;
    let admin = app.create_user("root@example.com", PASSWORD).await;
    let mut stored = stored_user(app, admin.id).await;
    stored.roles = vec!["admin".into()];
    app.state.store.update_user(&stored, &[]).await.unwrap();
    let (status, body) = api(
        app,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": "root@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["accessToken"].as_str().unwrap().to_string()
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn deliveries(app: &TestApp, token: &str, hook: &str, state: &str) -> Vec<Value> {
    let (status, body) = api(
        app,
        Method::GET,
        &format!("/admin/webhooks/{hook}/deliveries?state={state}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

pub async fn new_client(app: &TestApp, name: &str) -> String {
    app.state
        .client_admin
        .create(
            &ClientRegistration {
                name: name.into(),
                redirect_uris: vec!["https://x.example.com/cb".into()],
                ..Default::default()
            },
            "cli",
        )
        .await
        .unwrap()
        .client
        .id
}

#[tokio::test]
async fn a_webhook_receives_each_wanted_event_signed_per_standard_webhooks() {
    let app = app_with(fast).await;
    let token = admin_token(&app).await;
    let (url, rx) = receiver().await;
    let (status, created) = api(
        &app,
        Method::POST,
        "/admin/webhooks",
        Some(&token),
        Some(json!({"url": url, "eventTypes": ["client.created", "client.deleted"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = created["id"].as_str().unwrap().to_string();
    let secret = WebhookSecret::parse(created["secret"].as_str().unwrap()).unwrap();
    // The secret is shown once: the list has none, and the database holds it sealed.
    let (_, list) = api(&app, Method::GET, "/admin/webhooks", Some(&token), None).await;
    assert_eq!(list["items"][0]["id"], hook.as_str());
    assert!(!list.to_string().contains("whsec_") && !list.to_string().contains("secret"));

    let (_, audit) = api(
        &app,
        Method::GET,
        "/admin/audit?type=webhook.created",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        audit["items"][0]["detail"]["webhook"],
        hook.as_str(),
        "{audit}"
    );
    assert!(audit["items"][0]["actor"].is_string());
    // The audit trail keeps the receiver's origin, not a URL that may carry a credential.
    assert!(audit["items"][0]["detail"].get("url").is_none(), "{audit}");
    assert!(audit["items"][0]["detail"]["origin"].is_string(), "{audit}");
    let id = new_client(&app, "Billing").await;
    app.create_user("not-wanted@example.com", PASSWORD).await;
    app.state.client_admin.delete(&id, "cli").await.unwrap();
    let hits = wait_for("two deliveries", async || {
        let h = rx.hits();
        (h.len() >= 2).then_some(h)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.hits().len(), 2, "only the wanted types, each once");
    let kinds: Vec<Value> = hits
        .iter()
        .map(|h| serde_json::from_str::<Value>(&h.body).unwrap()["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("client.created"), json!("client.deleted")]);
    for h in &hits {
        assert!(
            secret.verify(&h.id, h.timestamp, h.body.as_bytes(), &h.signature),
            "{h:?}"
        );
        let body: Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(body["id"], h.id.as_str(), "webhook-id is the event id");
        assert_eq!(body["subject"], id.as_str());
        assert!((h.timestamp - app.state.clock.now()).abs() < 60);
        let tampered = h.body.replace("client", "klient");
        assert!(!secret.verify(&h.id, h.timestamp, tampered.as_bytes(), &h.signature));
    }
    let done = deliveries(&app, &token, &hook, "delivered").await;
    assert_eq!(done.len(), 2);
    assert_eq!(done[0]["attempts"], 1);

    // The recent events through the API.
    let (status, events) = api(
        &app,
        Method::GET,
        "/admin/events?type=client.created&limit=5",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert!(events["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["subject"] == id.as_str()));
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_dead_lettered_and_can_be_replayed() {
    let app = app_with(fast).await;
    let token = admin_token(&app).await;
    let (url, rx) = receiver().await;
    // A 500, a timeout (the 1 s limit), a redirect (never followed): three attempts, all failed.
    rx.plan(&[Reply::Status(500), Reply::Slow(2500), Reply::Status(302)]);
    let (_, created) = api(
        &app,
        Method::POST,
        "/admin/webhooks",
        Some(&token),
        Some(json!({"url": url, "eventTypes": ["client.created"]})),
    )
    .await;
    let hook = created["id"].as_str().unwrap().to_string();
    new_client(&app, "Flaky").await;
    let dead = wait_for("a dead letter", async || {
        let d = deliveries(&app, &token, &hook, "dead").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["lastStatus"], 302);
    let hits = rx.hits();
    assert_eq!(hits.len(), 3, "the redirect target was never called");
    assert!(
        hits.iter().all(|h| h.id == hits[0].id),
        "one webhook-id for every attempt"
    );
    assert!(deliveries(&app, &token, &hook, "pending").await.is_empty());

    // Replay: attempted again, delivered (the receiver answers 200 now).
    let delivery = dead[0]["id"].as_str().unwrap();
    let (status, replayed) = api(
        &app,
        Method::POST,
        &format!("/admin/webhooks/deliveries/{delivery}/replay"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["state"], "pending");
    wait_for("the replayed delivery", async || {
        let d = deliveries(&app, &token, &hook, "delivered").await;
        (!d.is_empty()).then_some(())
    })
    .await;
    assert_eq!(rx.hits().len(), 4);
    // A pending delivery cannot be replayed; an unknown one is not found.
    let again = api(
        &app,
        Method::POST,
        &format!("/admin/webhooks/deliveries/{}/replay", uuid::Uuid::new_v4()),
        Some(&token),
        None,
    )
    .await;
    assert_error(&again, 404, "not_found");
}

#[tokio::test]
async fn internal_targets_are_refused_unless_allowed() {
    let app = app_with(|s| {
        fast(s);
        s.events.allow_private_targets = vec![];
    })
    .await;
    let token = admin_token(&app).await;
    let (url, rx) = receiver().await;
    for target in [
        url.clone(),
        "http://10.0.0.8/hook".into(),
        "http://[::1]:8080/hook".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "ftp://hooks.example.com/x".into(),
    ] {
        let got = api(
            &app,
            Method::POST,
            "/admin/webhooks",
            Some(&token),
            Some(json!({"url": target})),
        )
        .await;
        assert_error(&got, 422, "invalid_url");
    }
    let got = api(
        &app,
        Method::POST,
        "/admin/webhooks",
        Some(&token),
        Some(json!({"url": "https://hooks.example.com/x", "eventTypes": ["user.exploded"]})),
    )
    .await;
    assert_error(&got, 422, "invalid_event_type");
    // Hostile input gets a 4xx ErrorResponse, never a 500.
    let raw = app
        .http
        .post(app.url("/admin/webhooks"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let long = format!("https://hooks.example.com/{}", "a".repeat(3000));
    let got = api(
        &app,
        Method::POST,
        "/admin/webhooks",
        Some(&token),
        Some(json!({"url": long})),
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let got = api(
        &app,
        Method::POST,
        "/admin/webhooks/deliveries/not-a-uuid/replay",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let hook = uuid::Uuid::new_v4();
    let got = api(
        &app,
        Method::GET,
        &format!("/admin/webhooks/{hook}/deliveries?state=bogus"),
        Some(&token),
        None,
    )
    .await;
    assert_error(&got, 400, "invalid_request");
    let got = api(
        &app,
        Method::DELETE,
        &format!("/admin/webhooks/{hook}"),
        Some(&token),
        None,
    )
    .await;
    assert_error(&got, 404, "not_found");
    // A name that resolves to loopback passes registration but is refused at connect time.
    let by_name = url.replace("127.0.0.1", "localhost");
    let (status, created) = api(
        &app,
        Method::POST,
        "/admin/webhooks",
        Some(&token),
        Some(json!({"url": by_name})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = created["id"].as_str().unwrap().to_string();
    new_client(&app, "Probe").await;
    let dead = wait_for("the refused delivery to die", async || {
        let d = deliveries(&app, &token, &hook, "dead").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    let error = dead[0]["lastError"].as_str().unwrap();
    assert!(error.contains("private, loopback or link-local"), "{error}");
    assert!(rx.hits().is_empty(), "nothing reached the internal address");
}

#[tokio::test]
async fn the_webhook_routes_need_the_admin_role() {
    let app = app_with(fast).await;
    let product = first_party(&app).await;
    let eve = app.create_user("eve@example.com", PASSWORD).await;
    let (_, body) = api(
        &app,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": "eve@example.com", "password": PASSWORD})),
    )
    .await;
    let user = body["accessToken"].as_str().unwrap().to_string();
    // A sign-in through the API is written with its refresh family.
    let signed_in = &envelopes(&app, EventType::UserSignedIn).await[0];
    assert_eq!(signed_in["subject"], eve.id.to_string());
    assert_eq!(signed_in["client"], product.id.as_str());
    assert_eq!(signed_in["data"]["via"], "api");
    for (method, path) in [
        (Method::GET, "/admin/webhooks"),
        (Method::POST, "/admin/webhooks"),
        (Method::GET, "/admin/events"),
    ] {
        let got = api(
            &app,
            method.clone(),
            path,
            Some(&user),
            Some(json!({"url": "https://x.example.com"})),
        )
        .await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{path}: {}", got.1);
        let anonymous = api(
            &app,
            method,
            path,
            None,
            Some(json!({"url": "https://x.example.com"})),
        )
        .await;
        assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (_, spec) = api(&app, Method::GET, "/openapi.json", None, None).await;
    for path in [
        "/admin/webhooks",
        "/admin/webhooks/{id}/deliveries",
        "/admin/events",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} in /openapi.json");
    }
}

#[tokio::test]
async fn second_factor_changes_write_their_events() {
    let app = app_with(|s| s.events.workers = false).await;
    let m = meta();
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let user = stored_user(&app, user.id).await;
    let enrollment = app.state.mfa.begin_totp(&user).await.unwrap();
    let code = crate::common::code_at(&enrollment.secret, app.state.clock.now());
    app.state.mfa.confirm_totp(&m, &user, &code).await.unwrap();
    app.state
        .mfa
        .remove_factor(&m, &user, enrollment.factor_id)
        .await
        .unwrap();
    // An admin's reset of a user with no factor left removes nothing and says nothing.
    app.state.mfa.reset(&m, None, &user).await.unwrap();
    assert_eq!(types(&app).await, ["user.mfa_enrolled", "user.mfa_removed"]);
    let enrolled = &envelopes(&app, EventType::UserMfaEnrolled).await[0];
    assert_eq!(enrolled["data"]["kind"], "totp");
    assert_eq!(
        enrolled["data"]["factorId"],
        enrollment.factor_id.to_string()
    );
    assert!(!enrolled.to_string().contains(&enrollment.secret));
}

#[tokio::test]
async fn delivery_metrics_count_written_delivered_and_dead_lettered_events() {
    let app = app_with(fast).await;
    let (url, rx) = receiver().await;
    rx.plan(&[Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
    let (hook, _) = app
        .state
        .events
        .create_webhook(
            portcullis::events::NewWebhook {
                url,
                event_types: vec!["client.created".into()],
            },
            "test",
        )
        .await
        .unwrap();
    new_client(&app, "one").await;
    wait_for("the dead letter", async || {
        let dead = app
            .state
            .events
            .deliveries(&portcullis::store::DeliveryQuery {
                webhook_id: Some(hook.id),
                state: Some(portcullis::store::DeliveryState::Dead),
                event_id: None,
                limit: 10,
            })
            .await
            .unwrap();
        (!dead.is_empty()).then_some(())
    })
    .await;
    new_client(&app, "two").await;
    wait_for("the second delivery", async || {
        (rx.hits().len() == 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = app.metrics_text().await;
    for line in [
        "portcullis_events_total{type=\"client.created\"} 2",
        "portcullis_webhook_deliveries_total{result=\"retried\"} 2",
        "portcullis_webhook_deliveries_total{result=\"dead_lettered\"} 1",
        "portcullis_webhook_deliveries_total{result=\"delivered\"} 1",
        "portcullis_webhook_delivery_duration_seconds_count 4",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}

#[tokio::test]
async fn parallel_claims_never_share_a_delivery_and_a_lapsed_lease_frees_it() {
    let app = app_with(|s| {
        s.events.workers = false;
        s.events.allow_private_targets = vec!["127.0.0.0/8".into()];
    })
    .await;
    let store = app.state.store.clone();
    app.state
        .events
        .create_webhook(
            portcullis::events::NewWebhook {
                url: "http://127.0.0.1:9/hook".into(),
                event_types: vec![],
            },
            "test",
        )
        .await
        .unwrap();
    let now = app.state.clock.now() + 5;
    let events: Vec<Event> = (0..40)
        .map(|i| Event::new(EventType::UserSignInFailed, now).data(json!({"n": i})))
        .collect();
    store.record_events(&events).await.unwrap();
    // Two fan-outs at once make one delivery per event.
    let (a, b) = tokio::join!(store.fan_out_events(now, 25), store.fan_out_events(now, 25));
    let mut fanned = a.unwrap().len() + b.unwrap().len();
    fanned += store.fan_out_events(now, 25).await.unwrap().len();
    assert_eq!(fanned, 40);
    let claims = (0..4).map(|i| {
        let store = store.clone();
        async move {
            store
                .claim_deliveries(&format!("claimer-{i}"), now, 60, 40)
                .await
                .unwrap()
        }
    });
    let claimed: Vec<_> = futures_util::future::join_all(claims).await;
    let mut ids: Vec<uuid::Uuid> = claimed.iter().flatten().map(|d| d.id).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (total, ids.len()),
        (40, 40),
        "each delivery claimed exactly once"
    );
    // Nothing is due again while the leases run; once they lapse (an instance died), all is.
    assert!(store
        .claim_deliveries("late", now + 59, 60, 100)
        .await
        .unwrap()
        .is_empty());
    let retaken = store
        .claim_deliveries("late", now + 60, 60, 100)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 40);
    assert!(retaken.iter().all(|d| d.attempts == 2));
    // The first claimer's result no longer counts: the claim is someone else's now.
    let (claimer, first) = claimed
        .iter()
        .enumerate()
        .find_map(|(i, c)| c.first().map(|d| (format!("claimer-{i}"), d)))
        .unwrap();
    let result = portcullis::store::AttemptResult {
        status: Some(200),
        error: None,
        now: now + 61,
        next: portcullis::store::NextStep::Delivered,
    };
    assert!(!store
        .finish_delivery(first.id, &claimer, &result)
        .await
        .unwrap());
    assert!(store
        .finish_delivery(first.id, "late", &result)
        .await
        .unwrap());
    // Only an event nobody waits for goes when its retention ends (and, with a stream, only
    // once streamed).
    assert_eq!(store.purge_events(now + 1, true, 100).await.unwrap(), 0);
    assert_eq!(store.purge_events(now + 1, false, 100).await.unwrap(), 1);
    assert_eq!(outbox(&app, None).await.len(), 39);
}

#[test]
fn the_readme_documents_every_event_type() {
    let readme = include_str!("../../README.md");
    for t in EventType::ALL {
        let row = format!("| `{}` | {} |", t.as_str(), t.describe());
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
}
