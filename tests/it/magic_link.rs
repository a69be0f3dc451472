//! Magic links over HTTP: asked for on the hosted pages and through `POST /auth/magic-link`,
//! read from the dev outbox, followed in the asking browser and in another one; single use
//! (also under two parallel clicks), expiry on a clock the test moves, the limits per address
//! and per IP, no enumeration, the feature switched off, the pending authorization request
//! continuing to a code, the second factor of an admin, and hostile JSON.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::accounts::magic_link::PATH;
use portcullis::clock::ManualClock;
use portcullis::store::AuditQuery;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::accounts::mailed_token;
use crate::common::{
    api, assert_error, auth_url, browser, code_at, exchange, form_value, location, query,
    sign_in_at, test_settings, unescape, Landing, TestApp, TestClient, VERIFIER,
};

const PASSWORD: &str = "violet staple kettle";
const T0: i64 = 1_800_000_000;

async fn magic_app(tune: impl FnOnce(&mut portcullis::config::Settings)) -> (TestApp, ManualClock) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = crate::common::fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.accounts.magic_link = true;
    // The background janitor would purge, at a moment the test does not choose, rows the
    // tests write as expired relative to the manual clock.
    settings.janitor.interval_secs = 0;
    tune(&mut settings);
    let clock = ManualClock::new(T0);
    let app = TestApp::spawn_with(settings, dir, Arc::new(clock.clone())).await;
    (app, clock)
}

async fn rp(app: &TestApp, require_mfa: bool) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Demo RP".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: Some("openid email offline_access".into()),
        require_mfa,
        ..Default::default()
    })
    .await
}

/// Asks for a link on the hosted form from the page at `form_path`: (status, HTML).
async fn ask_at(app: &TestApp, b: &reqwest::Client, form_path: &str, email: &str) -> (u16, String) {
    let page = b.get(app.url(form_path)).send().await.unwrap();
    assert_eq!(page.status(), 200, "the form shows");
    let html = page.text().await.unwrap();
    let form = [
        ("csrf", form_value(&html, "csrf").unwrap()),
        ("return_to", form_value(&html, "return_to").unwrap()),
        ("email", email.to_string()),
    ];
    let resp = b
        .post(app.url("/login/magic-link"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn ask(app: &TestApp, b: &reqwest::Client, email: &str) -> (u16, String) {
    ask_at(app, b, "/login/magic-link", email).await
}

/// Asks for a link from the login page the authorization request `url` shows.
async fn ask_during(app: &TestApp, b: &reqwest::Client, url: &str, email: &str) -> (u16, String) {
    let login = b.get(url).send().await.unwrap().text().await.unwrap();
    let return_to = form_value(&login, "return_to").unwrap();
    let path = format!(
        "/login/magic-link?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", &return_to)
            .finish()
    );
    ask_at(app, b, &path, email).await
}

async fn link_token(app: &TestApp, to: &str, nth: usize) -> String {
    mailed_token(app, to, PATH, nth).await
}

async fn follow(app: &TestApp, b: &reqwest::Client, token: &str) -> reqwest::Response {
    b.get(app.url(&format!("{PATH}?token={token}")))
        .send()
        .await
        .unwrap()
}

fn starts_session(resp: &reqwest::Response) -> bool {
    resp.headers().get_all("set-cookie").iter().any(|c| {
        c.to_str().unwrap().starts_with("portcullis-session=")
            && !c.to_str().unwrap().contains("Max-Age=0")
    })
}

/// How many mails the outbox holds for `to`, after giving queued ones time to land.
async fn mail_count(app: &TestApp, to: &str) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let Ok(entries) = std::fs::read_dir(&app.settings.mail.outbox_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
            })
        })
        .count()
}

async fn audit_kinds(app: &TestApp, kind: &str) -> Vec<Value> {
    let events = app
        .state
        .store
        .query_audit(&AuditQuery {
            kind: Some(kind.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    events.into_iter().map(|e| e.detail).collect()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_link_from_the_login_page_signs_in_once_and_continues_the_authorization_request() {
    let (app, _clock) = magic_app(|_| {}).await;
    let client = rp(&app, false).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    let url = auth_url(&app, &client, &[]);

    // The login page the authorization request shows offers the link, keeping the request.
    let login = b.get(&url).send().await.unwrap().text().await.unwrap();
    let href = login
        .split("href=\"/login/magic-link")
        .nth(1)
        .map(|rest| {
            format!(
                "/login/magic-link{}",
                unescape(rest.split('"').next().unwrap())
            )
        })
        .expect("the login page links to the form");
    assert!(login.contains("Email me a sign-in link"));
    assert!(href.contains("return_to=%2Fauthorize%3F"), "{href}");

    let (status, page) = ask_at(&app, &b, &href, &ada.email).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Check your email"), "{page}");
    let mail = &crate::accounts::mails_to(&app, &ada.email, 1).await[0];
    assert!(mail.contains("expires in 10 minutes"), "{mail}");
    assert!(mail.contains("ignore this message"), "{mail}");
    let token = link_token(&app, &ada.email, 1).await;
    assert_eq!(token.len(), 43, "256 bits, base64url");

    // Following it signs in and goes back to the authorization request.
    let resp = follow(&app, &b, &token).await;
    assert_eq!(resp.status(), 303);
    assert!(starts_session(&resp), "a fresh session");
    let resume = location(&resp).expect("back to /authorize");
    assert!(resume.path().ends_with("/authorize"), "{resume}");
    let code = match sign_in_at(&app, &b, resume.as_str(), &ada, "allow").await {
        Landing::Client(to) => query(&to, "code").expect("a code for the client"),
        Landing::Page(s, html) => panic!("stopped at a page ({s}): {html}"),
    };
    let (s, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(s, 200, "{tokens}");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        id["amr"],
        json!(["otp"]),
        "an emailed link is one factor: otp"
    );
    assert_eq!(id["acr"], "1fa");
    assert_eq!(id["sub"], ada.id.to_string());

    // The link works once.
    let again = follow(&app, &b, &token).await;
    assert_eq!(again.status(), 400);
    assert!(!starts_session(&again));
    assert!(again.text().await.unwrap().contains("already used"));
    assert_eq!(audit_kinds(&app, "magic_link.sent").await.len(), 1);
    assert_eq!(audit_kinds(&app, "magic_link.used").await.len(), 1);
    assert_eq!(
        audit_kinds(&app, "magic_link.refused").await,
        vec![json!({"reason": "used"})]
    );
    let scrape = reqwest::get(format!("{}/metrics", app.management));
    let metrics = scrape.await.unwrap().text().await.unwrap();
    for line in [
        "portcullis_magic_links_total{result=\"sent\"} 1",
        "portcullis_magic_links_total{result=\"used\"} 1",
        "portcullis_magic_links_total{result=\"refused\",reason=\"used\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn two_parallel_clicks_of_one_link_start_one_session() {
    let (app, _clock) = magic_app(|_| {}).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    ask(&app, &b, &ada.email).await;
    let token = link_token(&app, &ada.email, 1).await;
    let (one, two) = tokio::join!(follow(&app, &b, &token), follow(&app, &b, &token));
    let sessions = [&one, &two].iter().filter(|r| starts_session(r)).count();
    assert_eq!(sessions, 1, "exactly one click wins");
    let mut statuses = [one.status().as_u16(), two.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "one signed in, one refused");
}

#[tokio::test]
async fn a_link_expires_after_ten_minutes() {
    let (app, clock) = magic_app(|_| {}).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    ask(&app, &b, &ada.email).await;
    let token = link_token(&app, &ada.email, 1).await;
    clock.advance(600);
    let resp = follow(&app, &b, &token).await;
    assert_eq!(resp.status(), 400);
    assert!(!starts_session(&resp));
    assert!(resp.text().await.unwrap().contains("expired"));
    assert_eq!(
        audit_kinds(&app, "magic_link.refused").await,
        vec![json!({"reason": "expired"})]
    );

    // A new one, followed in time, works.
    ask(&app, &b, &ada.email).await;
    let token = link_token(&app, &ada.email, 2).await;
    clock.advance(599);
    let resp = follow(&app, &b, &token).await;
    assert_eq!(resp.status(), 200);
    assert!(starts_session(&resp));
}

#[tokio::test]
async fn a_link_opened_in_another_browser_is_refused_and_stays_usable_in_the_first() {
    let (app, _clock) = magic_app(|_| {}).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let asking = browser();
    ask(&app, &asking, &ada.email).await;
    let token = link_token(&app, &ada.email, 1).await;

    // Another browser, with no nonce, and one with a nonce of its own.
    let other = browser();
    let resp = follow(&app, &other, &token).await;
    assert_eq!(resp.status(), 403);
    assert!(!starts_session(&resp));
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("Open the link in the browser where you asked for it"),
        "{html}"
    );
    ask(&app, &other, "nobody@example.com").await;
    let resp = follow(&app, &other, &token).await;
    assert_eq!(resp.status(), 403, "another browser's nonce does not fit");
    assert_eq!(
        audit_kinds(&app, "magic_link.refused").await,
        vec![
            json!({"reason": "other_browser"}),
            json!({"reason": "other_browser"})
        ]
    );

    let resp = follow(&app, &asking, &token).await;
    assert_eq!(resp.status(), 200, "the refusals did not spend it");
    assert!(starts_session(&resp));
}

#[tokio::test]
async fn links_are_throttled_per_address_and_per_ip_with_the_same_answer() {
    let (app, _clock) = magic_app(|s| {
        s.accounts.magic_link_per_address.limit = 2;
        s.accounts.magic_link_per_ip.limit = 4;
    })
    .await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let bob = app.create_user("bob@example.com", PASSWORD).await;
    let cy = app.create_user("cy@example.com", PASSWORD).await;
    let b = browser();
    let mut pages = Vec::new();
    for _ in 0..3 {
        pages.push(ask(&app, &b, &ada.email).await);
    }
    assert!(
        pages.iter().all(|p| *p == pages[0]),
        "the throttled answer looks the same"
    );
    assert_eq!(pages[0].0, 200);
    assert_eq!(
        mail_count(&app, &ada.email).await,
        2,
        "the third was not sent"
    );

    assert_eq!(ask(&app, &b, &bob.email).await.0, 200);
    assert_eq!(
        mail_count(&app, &bob.email).await,
        1,
        "the IP's fourth is within its budget"
    );
    let (status, page) = ask(&app, &b, &cy.email).await;
    assert_eq!(status, 200);
    assert!(page.contains("Check your email"));
    assert_eq!(
        mail_count(&app, &cy.email).await,
        0,
        "the IP's fifth was not sent"
    );
    let throttled = audit_kinds(&app, "magic_link.throttled").await;
    assert!(
        throttled.contains(&json!({"policy": "per_address"})),
        "{throttled:?}"
    );
    assert!(
        throttled.contains(&json!({"policy": "per_ip"})),
        "{throttled:?}"
    );

    // The JSON API shares the limits and the answer.
    let got = api(
        &app,
        Method::POST,
        "/auth/magic-link",
        None,
        Some(json!({"email": ada.email})),
    )
    .await;
    assert_eq!(got.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn known_and_unknown_addresses_get_the_same_answer_and_only_known_ones_a_mail() {
    let (app, _clock) = magic_app(|_| {}).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let known = api(
        &app,
        Method::POST,
        "/auth/magic-link",
        None,
        Some(json!({"email": ada.email})),
    )
    .await;
    let unknown = api(
        &app,
        Method::POST,
        "/auth/magic-link",
        None,
        Some(json!({"email": "nobody@example.com"})),
    )
    .await;
    assert_eq!(known.0, StatusCode::ACCEPTED, "{}", known.1);
    assert_eq!(known, unknown, "same status, same body");
    assert_eq!(mail_count(&app, &ada.email).await, 1);
    assert_eq!(mail_count(&app, "nobody@example.com").await, 0);

    // The pages answer alike too (but for the address they repeat).
    let b = browser();
    let (s1, p1) = ask(&app, &b, &ada.email).await;
    let (s2, p2) = ask(&app, &b, "nobody@example.com").await;
    assert_eq!(
        (s1, p1.replace(&ada.email, "X")),
        (s2, p2.replace("nobody@example.com", "X"))
    );

    // A disabled account gets nothing either.
    let mut row = app.state.store.get_user(ada.id).await.unwrap().unwrap();
    row.disabled = true;
    app.state.store.update_user(&row, &[]).await.unwrap();
    let disabled = api(
        &app,
        Method::POST,
        "/auth/magic-link",
        None,
        Some(json!({"email": ada.email})),
    )
    .await;
    assert_eq!(disabled, unknown);
    assert_eq!(mail_count(&app, &ada.email).await, 2, "only the two before");
}

#[tokio::test]
async fn with_the_feature_off_there_is_no_link_and_the_endpoints_refuse() {
    let (app, _clock) = magic_app(|s| s.accounts.magic_link = false).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    let login = b
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!login.contains("magic-link"), "no link on the login page");
    assert!(!login.contains("sign-in link"));
    let form = b.get(app.url("/login/magic-link")).send().await.unwrap();
    assert_eq!(form.status(), 404);
    let verify = b
        .get(app.url(&format!("{PATH}?token=abc")))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 404);
    let got = api(
        &app,
        Method::POST,
        "/auth/magic-link",
        None,
        Some(json!({"email": ada.email})),
    )
    .await;
    assert_error(&got, 404, "magic_link_disabled");
    let spec = app.get_raw("/openapi.json").await.text().await.unwrap();
    assert!(
        spec.contains("\"/auth/magic-link\""),
        "documented in /openapi.json"
    );
    assert_eq!(mail_count(&app, &ada.email).await, 0);
}

#[tokio::test]
async fn an_admin_signing_in_by_link_still_passes_the_second_factor() {
    let (app, clock) = magic_app(|s| {
        s.accounts.mfa.required_for_roles = vec!["admin".into()];
    })
    .await;
    let client = rp(&app, false).await;
    let admin = app.create_user("root@example.com", PASSWORD).await;
    let mut row = app.state.store.get_user(admin.id).await.unwrap().unwrap();
    row.roles = vec!["admin".into()];
    app.state.store.update_user(&row, &[]).await.unwrap();

    let b = browser();
    let url = auth_url(&app, &client, &[]);
    ask_during(&app, &b, &url, &admin.email).await;
    let token = link_token(&app, &admin.email, 1).await;
    let resp = follow(&app, &b, &token).await;
    assert_eq!(resp.status(), 200);
    assert!(
        !starts_session(&resp),
        "no session before the second factor"
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("action=\"/login/mfa\""), "{html}");
    let key = html
        .split("id=\"totp-key\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the enrollment key")
        .to_string();

    use portcullis::clock::Clock;
    let form = [
        ("csrf", form_value(&html, "csrf").unwrap()),
        ("mfa_token", form_value(&html, "mfa_token").unwrap()),
        ("code", code_at(&key, clock.now())),
    ];
    let resp = b
        .post(app.url("/login/mfa"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the recovery codes");
    assert!(starts_session(&resp));
    let html = resp.text().await.unwrap();
    let next = html
        .split("href=\"")
        .find(|s| s.contains("/authorize"))
        .and_then(|s| s.split('"').next())
        .map(unescape)
        .expect("continue to the authorization request");
    let code = match sign_in_at(&app, &b, &next, &admin, "allow").await {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, html) => panic!("stopped at a page ({s}): {html}"),
    };
    let (s, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(s, 200, "{tokens}");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        id["amr"],
        json!(["otp", "mfa"]),
        "the link and the app: two factors"
    );
    assert_eq!(id["acr"], "mfa");
}

#[tokio::test]
async fn a_client_requiring_mfa_gets_the_second_factor_step_after_a_link() {
    let (app, _clock) = magic_app(|_| {}).await;
    let client = rp(&app, true).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    let url = auth_url(&app, &client, &[]);
    ask_during(&app, &b, &url, &ada.email).await;
    let token = link_token(&app, &ada.email, 1).await;
    let resp = follow(&app, &b, &token).await;
    assert_eq!(resp.status(), 200);
    assert!(!starts_session(&resp));
    assert!(resp.text().await.unwrap().contains("action=\"/login/mfa\""));
}

#[tokio::test]
async fn hostile_input_to_the_json_endpoint_gets_a_4xx_error_response() {
    let (app, _clock) = magic_app(|_| {}).await;
    let post = |body: Value| api(&app, Method::POST, "/auth/magic-link", None, Some(body));
    for body in [
        json!({"email": 5}),
        json!({"email": {"a": 1}}),
        json!({}),
        json!([1, 2]),
        json!({"email": null}),
    ] {
        let got = post(body.clone()).await;
        assert!(got.0.is_client_error(), "{body}: {}", got.0);
        assert!(
            got.1["code"].is_string() && got.1["traceId"].is_string(),
            "{}",
            got.1
        );
    }
    assert_error(&post(json!({})).await, 400, "invalid_request");
    let got = post(json!({"email": "x".repeat(300)})).await;
    assert_error(&got, 400, "invalid_request");
    let got = post(json!({"email": "not-an-address"})).await;
    assert_error(&got, 422, "invalid_email");
    let got = post(json!({"email": "ada@example.com", "returnTo": "https://evil.example/"})).await;
    assert_error(&got, 400, "invalid_return_to");
    let got = post(json!({"email": "ada@example.com", "returnTo": ["x"]})).await;
    assert_error(&got, 400, "invalid_request");

    // Not JSON, and a body far over the limit.
    for (ctype, body) in [
        ("application/json", "{\"email\":".to_string()),
        ("text/plain", "email=ada@example.com".to_string()),
        (
            "application/json",
            format!("{{\"email\":\"{}\"}}", "a".repeat(2_000_000)),
        ),
    ] {
        let resp = app
            .http
            .post(app.url("/auth/magic-link"))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{ctype}: {status}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["code"].is_string() && v["traceId"].is_string(), "{v}");
    }

    // A mangled link on the page is a clear 400, never a 500.
    let b = browser();
    for token in ["", "%00", &"a".repeat(5000)] {
        let resp = b
            .get(app.url(&format!("{PATH}?token={token}")))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{token:.8}: {}",
            resp.status()
        );
    }
}

/// The store port on this run's backend (PostgreSQL when PORTCULLIS_TEST_DATABASE_URL is set):
/// spending needs the nonce and an unused, unexpired link whose address is still the user's.
#[tokio::test]
async fn the_store_spends_a_link_once_and_only_with_its_nonce() {
    use portcullis::store::{MagicLink, Store};
    async fn spends(store: &dyn Store, token: &str, nonce: &str, now: i64) -> bool {
        let hash = format!("hash-{token}");
        store
            .consume_magic_link(&hash, nonce, now)
            .await
            .unwrap()
            .is_some()
    }
    async fn unspent(store: &dyn Store, token: &str) -> bool {
        let hash = format!("hash-{token}");
        let found = store.find_magic_link(&hash).await.unwrap();
        found.expect("stored").used_at.is_none()
    }
    let (app, _clock) = magic_app(|_| {}).await;
    let ada = app.create_user("ada@example.com", PASSWORD).await;
    let store = &*app.state.store;
    let link = |token: &str, expires_at| MagicLink {
        token_hash: format!("hash-{token}"),
        nonce_hash: "nonce-hash".into(),
        user_id: ada.id,
        email: "Ada@Example.com".into(),
        return_to: "/authorize?client_id=x".into(),
        created_at: 100,
        expires_at,
        used_at: None,
    };
    store.create_magic_link(&link("a", 1000)).await.unwrap();
    store.create_magic_link(&link("late", 300)).await.unwrap();
    assert!(!spends(store, "a", "other-nonce", 200).await);
    assert!(unspent(store, "a").await, "a wrong nonce spends nothing");
    let spent = store
        .consume_magic_link("hash-a", "nonce-hash", 200)
        .await
        .unwrap()
        .expect("spent once");
    assert_eq!(spent.return_to, "/authorize?client_id=x");
    assert_eq!(spent.used_at, Some(200));
    assert!(!spends(store, "a", "nonce-hash", 201).await, "once only");
    assert!(!spends(store, "late", "nonce-hash", 300).await, "expired");
    assert!(store.find_magic_link("hash-none").await.unwrap().is_none());

    // An address changed meanwhile makes the link worthless, and nothing is written.
    let moved = MagicLink {
        email: "old@example.com".into(),
        ..link("b", 1000)
    };
    store.create_magic_link(&moved).await.unwrap();
    assert!(!spends(store, "b", "nonce-hash", 200).await);
    assert!(unspent(store, "b").await);
}
