//! Accounts: the first-party JSON API, the hosted account pages, the outbox, roles, the admin
//! guard, soft delete and the audit trail — over HTTP against the real server.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{
    app_with, assert_error, auth_url, browser, form_value, tokens_for, TestApp, TestClient,
};

const PASSWORD: &str = "violet staple kettle";

async fn first_party(app: &TestApp) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Product app".into(),
        redirect_uris: vec!["https://app.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: Some("openid profile email offline_access roles".into()),
        first_party: true,
        ..Default::default()
    })
    .await
}

/// One API call: (status, JSON body or null, x-request-id).
async fn api(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        request_id,
    )
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, v, _) = api(app, Method::POST, path, None, Some(body)).await;
    (s, v)
}

/// Decodes quoted-printable text (RFC 2045 §6.7) well enough to read our own mail.
fn unquote(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded messages in the outbox addressed to `to`, waiting up to 5 s for `at_least`.
pub(crate) async fn mails_to(app: &TestApp, to: &str, at_least: usize) -> Vec<String> {
    let dir = app.settings.mail.outbox_dir.clone();
    for _ in 0..100 {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut paths: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect();
            paths.sort();
            for p in paths {
                let text = unquote(&std::fs::read_to_string(p).unwrap());
                if text
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
                {
                    found.push(text);
                }
            }
        }
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {at_least} mail(s) to {to} in {}", dir.display());
}

/// The token of the newest link to `path` mailed to `to`.
pub(crate) async fn mailed_token(app: &TestApp, to: &str, path: &str, nth: usize) -> String {
    let mails = mails_to(app, to, nth).await;
    let needle = format!("{path}?token=");
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.contains(&needle))
        .unwrap_or_else(|| panic!("no {path} link mailed to {to}"));
    let start = mail.find(&needle).unwrap() + needle.len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    post(
        app,
        "/auth/login",
        json!({"email": email, "password": password}),
    )
    .await
}

/// A signed-in user with these roles: (user id, access token, refresh token).
async fn signed_in(app: &TestApp, email: &str, roles: &[&str]) -> (uuid::Uuid, String, String) {
    let user = app.create_user(email, PASSWORD).await;
    let mut stored = app.state.store.get_user(user.id).await.unwrap().unwrap();
    stored.roles = roles.iter().map(|r| r.to_string()).collect();
    app.state.store.update_user(&stored, &[]).await.unwrap();
    let (status, body) = login(app, email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        user.id,
        body["accessToken"].as_str().unwrap().to_string(),
        body["refreshToken"].as_str().unwrap().to_string(),
    )
}

async fn live_users(app: &TestApp) -> usize {
    app.state.store.list_users().await.unwrap().len()
}

#[tokio::test]
async fn register_verify_sign_in_refresh_and_me_through_the_api() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (status, body) = post(
        &app,
        "/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["name"], "Ada");
    assert!(body["id"].as_str().is_some() && body["createdAt"].as_str().is_some());
    assert!(body.get("passwordHash").is_none() && body.get("roles").is_none());

    // Unverified: the right password is told to verify first; a wrong one is not.
    assert_error(
        &login(&app, "ada@example.com", PASSWORD).await,
        403,
        "email_not_verified",
    );
    assert_error(
        &login(&app, "ada@example.com", "wrong password!").await,
        401,
        "invalid_credentials",
    );

    let token = mailed_token(&app, "ada@example.com", "/verify-email", 1).await;
    assert_eq!(token.len(), 43, "256 bits, base64url");
    let verified = post(&app, "/auth/verify-email", json!({"token": token})).await;
    assert_eq!(verified.0, StatusCode::NO_CONTENT);
    assert_error(
        &post(&app, "/auth/verify-email", json!({"token": token})).await,
        400,
        "invalid_token",
    );

    let (status, tokens) = login(&app, "ADA@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["tokenType"], "Bearer");
    assert!(tokens["expiresIn"].as_u64().unwrap() > 0);
    let access = tokens["accessToken"].as_str().unwrap();
    assert_eq!(claims(access)["roles"], json!(["user"]));

    let (status, me, _) = api(&app, Method::GET, "/auth/me", Some(access), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["emailVerified"], true);
    assert_eq!(me["roles"], json!(["user"]));

    // Refresh rotates; the spent token is reuse and kills the family.
    let first = tokens["refreshToken"].as_str().unwrap();
    let (status, rotated) = post(&app, "/auth/refresh", json!({"refreshToken": first})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["refreshToken"].as_str().unwrap();
    assert_ne!(first, second);
    let new_access = rotated["accessToken"].as_str().unwrap();
    assert_eq!(
        api(&app, Method::GET, "/auth/me", Some(new_access), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": first})).await,
        401,
        "invalid_refresh_token",
    );
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": second})).await,
        401,
        "invalid_refresh_token",
    );
    let denied = api(&app, Method::GET, "/auth/me", Some(new_access), None).await;
    assert_error(&(denied.0, denied.1), 401, "invalid_token");
}

#[tokio::test]
async fn registration_rejects_bad_input_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let reg =
        |email: &str, password: &str| json!({"email": email, "password": password, "name": "X"});
    assert_error(
        &post(&app, "/auth/register", reg("not-an-email", PASSWORD)).await,
        422,
        "invalid_email",
    );
    let msg = assert_error(
        &post(&app, "/auth/register", reg("a@example.com", "Password1")).await,
        422,
        "weak_password",
    );
    assert!(msg.contains("common"), "{msg}");
    assert_error(
        &post(&app, "/auth/register", reg("a@example.com", "short")).await,
        422,
        "weak_password",
    );
    assert_error(
        &post(
            &app,
            "/auth/register",
            reg("longname@example.com", "LongName@example.com"),
        )
        .await,
        422,
        "weak_password",
    );
    assert_error(
        &post(
            &app,
            "/auth/register",
            reg("a@example.com", &"x".repeat(129)),
        )
        .await,
        422,
        "weak_password",
    );
    let long_name =
        json!({"email": "a@example.com", "password": PASSWORD, "name": "n".repeat(150)});
    assert_error(
        &post(&app, "/auth/register", long_name).await,
        422,
        "invalid_name",
    );
    // Malformed requests: the framework's rejections use the same error shape.
    assert_error(
        &post(&app, "/auth/register", json!({"email": "a@example.com"})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post(
            &app,
            "/auth/register",
            json!({"email": {"x": 1}, "password": PASSWORD}),
        )
        .await,
        400,
        "invalid_request",
    );
    let raw = app
        .http
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["code"], "invalid_request");
    let text = app
        .http
        .post(app.url("/auth/register"))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::BAD_REQUEST);
    assert_eq!(live_users(&app).await, 0, "nothing half-written");
}

#[tokio::test]
async fn a_taken_address_answers_like_success_and_mails_the_owner() {
    let app = TestApp::spawn().await;
    let owner = app.create_user("owner@example.com", PASSWORD).await;
    let (status, body) = post(
        &app,
        "/auth/register",
        json!({"email": "Owner@Example.com", "password": "another good phrase", "name": "Mallory"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(
        body["id"],
        owner.id.to_string(),
        "the owner's id is not revealed"
    );
    assert_eq!(live_users(&app).await, 1);
    let mails = mails_to(&app, "owner@example.com", 1).await;
    assert!(mails[0].contains("already has one"), "{}", mails[0]);
    // The owner's password still works.
    assert_eq!(
        login(&app, "owner@example.com", PASSWORD).await.0,
        StatusCode::NOT_FOUND,
        "no first-party client yet"
    );
}

#[tokio::test]
async fn token_issuance_needs_a_first_party_client() {
    let app = TestApp::spawn().await;
    app.create_user("ada@example.com", PASSWORD).await;
    let msg = assert_error(
        &login(&app, "ada@example.com", PASSWORD).await,
        404,
        "first_party_client_missing",
    );
    assert!(
        msg.contains("--first-party") && msg.contains("authorization code"),
        "{msg}"
    );
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": "x"})).await,
        404,
        "first_party_client_missing",
    );
}

#[tokio::test]
async fn sign_in_failures_read_the_same() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    app.create_user("ada@example.com", PASSWORD).await;
    let unknown = assert_error(
        &login(&app, "nobody@example.com", PASSWORD).await,
        401,
        "invalid_credentials",
    );
    let wrong = assert_error(
        &login(&app, "ada@example.com", "not the password").await,
        401,
        "invalid_credentials",
    );
    let garbage = assert_error(
        &login(&app, "not an email", "x").await,
        401,
        "invalid_credentials",
    );
    assert_eq!(unknown, wrong);
    assert_eq!(unknown, garbage);
    // Disabled users fail the same way.
    let (id, _, _) = signed_in(&app, "bob@example.com", &["user"]).await;
    let mut bob = app.state.store.get_user(id).await.unwrap().unwrap();
    bob.disabled = true;
    app.state.store.update_user(&bob, &[]).await.unwrap();
    assert_eq!(
        assert_error(
            &login(&app, "bob@example.com", PASSWORD).await,
            401,
            "invalid_credentials"
        ),
        unknown
    );
}

#[tokio::test]
async fn login_attempts_are_throttled_with_retry_after() {
    let app = app_with(|s| {
        s.rate_limits.login_account_ip = portcullis::limiter::Policy {
            limit: 2,
            period_secs: 300,
        }
    })
    .await;
    first_party(&app).await;
    app.create_user("ada@example.com", PASSWORD).await;
    for _ in 0..2 {
        assert_error(
            &login(&app, "ada@example.com", "bad guess one").await,
            401,
            "invalid_credentials",
        );
    }
    let resp = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn logout_revokes_the_family_and_its_access_tokens() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (_, access, refresh) = signed_in(&app, "ada@example.com", &["user"]).await;
    assert_eq!(
        post(&app, "/auth/logout", json!({"refreshToken": refresh}))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": refresh})).await,
        401,
        "invalid_refresh_token",
    );
    let me = api(&app, Method::GET, "/auth/me", Some(&access), None).await;
    assert_error(&(me.0, me.1), 401, "invalid_token");
    // Unknown tokens: 204 as well (RFC 7009 §2.2 style); missing field: 400.
    assert_eq!(
        post(&app, "/auth/logout", json!({"refreshToken": "nope"}))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &post(&app, "/auth/logout", json!({})).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn me_needs_a_valid_user_token() {
    let app = TestApp::spawn().await;
    let none = api(&app, Method::GET, "/auth/me", None, None).await;
    assert_error(&(none.0, none.1), 401, "invalid_token");
    let junk = api(&app, Method::GET, "/auth/me", Some("junk"), None).await;
    assert_error(&(junk.0, junk.1), 401, "invalid_token");
    // A client_credentials token speaks for no user.
    let service = crate::common::service_client(&app).await;
    let (_, tokens) = crate::common::post_form(
        &app,
        "/token",
        &service,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let at = tokens["access_token"].as_str().unwrap();
    let client_token = api(&app, Method::GET, "/auth/me", Some(at), None).await;
    assert_error(&(client_token.0, client_token.1), 401, "invalid_token");
}

#[tokio::test]
async fn password_reset_by_mail_signs_out_everywhere() {
    let clock = portcullis::clock::ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    first_party(&app).await;
    let (_, access, refresh) = signed_in(&app, "ada@example.com", &["user"]).await;

    // Unknown and malformed addresses answer exactly like known ones.
    for email in ["nobody@example.com", "ada@example.com", "not an email"] {
        let (status, body) = post(
            &app,
            "/auth/password-reset/request",
            json!({"email": email}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body, Value::Null);
    }
    let token = mailed_token(&app, "ada@example.com", "/reset-password", 1).await;
    // A weak password is refused and the link stays usable.
    let weak = post(
        &app,
        "/auth/password-reset/confirm",
        json!({"token": token, "password": "qwertyuiop"}),
    )
    .await;
    assert_error(&weak, 422, "weak_password");
    let done = post(
        &app,
        "/auth/password-reset/confirm",
        json!({"token": token, "password": "a brand new phrase"}),
    )
    .await;
    assert_eq!(done.0, StatusCode::NO_CONTENT, "{}", done.1);
    assert_error(
        &post(
            &app,
            "/auth/password-reset/confirm",
            json!({"token": token, "password": "yet another phrase"}),
        )
        .await,
        400,
        "invalid_token",
    );
    // Signed out everywhere: the refresh family and the access token are dead.
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": refresh})).await,
        401,
        "invalid_refresh_token",
    );
    let me = api(&app, Method::GET, "/auth/me", Some(&access), None).await;
    assert_eq!(me.0, StatusCode::UNAUTHORIZED);
    assert_error(
        &login(&app, "ada@example.com", PASSWORD).await,
        401,
        "invalid_credentials",
    );
    assert_eq!(
        login(&app, "ada@example.com", "a brand new phrase").await.0,
        StatusCode::OK
    );

    // A link expires after 30 minutes.
    post(
        &app,
        "/auth/password-reset/request",
        json!({"email": "ada@example.com"}),
    )
    .await;
    let late = mailed_token(&app, "ada@example.com", "/reset-password", 2).await;
    clock.advance(31 * 60);
    assert_error(
        &post(
            &app,
            "/auth/password-reset/confirm",
            json!({"token": late, "password": "too late phrase"}),
        )
        .await,
        400,
        "invalid_token",
    );
    assert_error(
        &post(
            &app,
            "/auth/password-reset/confirm",
            json!({"token": "", "password": "x"}),
        )
        .await,
        400,
        "invalid_token",
    );
}

#[tokio::test]
async fn two_confirms_of_one_reset_link_succeed_once() {
    let app = TestApp::spawn().await;
    app.create_user("ada@example.com", PASSWORD).await;
    post(
        &app,
        "/auth/password-reset/request",
        json!({"email": "ada@example.com"}),
    )
    .await;
    let token = mailed_token(&app, "ada@example.com", "/reset-password", 1).await;
    let tries = (0..6).map(|i| {
        let body = json!({"token": token, "password": format!("racing phrase number {i}")});
        let app = &app;
        async move { post(app, "/auth/password-reset/confirm", body).await.0 }
    });
    let statuses = futures_util::future::join_all(tries).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::NO_CONTENT || *s == StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_revokes_everything() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (_, access, refresh) = signed_in(&app, "ada@example.com", &["user"]).await;
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let wrong = api(
        &app,
        Method::POST,
        "/auth/change-password",
        Some(&access),
        Some(change("nope nope", "a new phrase here")),
    )
    .await;
    assert_error(&(wrong.0, wrong.1), 401, "invalid_credentials");
    let weak = api(
        &app,
        Method::POST,
        "/auth/change-password",
        Some(&access),
        Some(change(PASSWORD, "ada@example.com")),
    )
    .await;
    assert_error(&(weak.0, weak.1), 422, "weak_password");
    let ok = api(
        &app,
        Method::POST,
        "/auth/change-password",
        Some(&access),
        Some(change(PASSWORD, "a new phrase here")),
    )
    .await;
    assert_eq!(ok.0, StatusCode::NO_CONTENT, "{}", ok.1);
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": refresh})).await,
        401,
        "invalid_refresh_token",
    );
    assert_eq!(
        api(&app, Method::GET, "/auth/me", Some(&access), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "ada@example.com", "a new phrase here").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_admin_route_is_guarded() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (user_id, user_token, _) = signed_in(&app, "user@example.com", &["user"]).await;
    let (_, expert_token, _) = signed_in(&app, "expert@example.com", &["expert"]).await;
    let (admin_id, admin_token, _) = signed_in(&app, "admin@example.com", &["admin"]).await;
    let other = format!("/users/{admin_id}");
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/users".into(), None),
        (Method::GET, "/admin/audit".into(), None),
        (Method::GET, other.clone(), None),
        (
            Method::PATCH,
            format!("/users/{user_id}"),
            Some(json!({"roles": ["admin"]})),
        ),
        (
            Method::PATCH,
            format!("/users/{user_id}"),
            Some(json!({"disabled": true})),
        ),
        (
            Method::PATCH,
            other.clone(),
            Some(json!({"name": "Mallory"})),
        ),
        (Method::DELETE, other.clone(), None),
    ];
    for (method, path, body) in &routes {
        let anon = api(&app, method.clone(), path, None, body.clone()).await;
        assert_error(&(anon.0, anon.1), 401, "invalid_token");
        for token in [&user_token, &expert_token] {
            let got = api(&app, method.clone(), path, Some(token), body.clone()).await;
            assert_error(&(got.0, got.1), 403, "forbidden");
        }
    }
    // The admin passes each guard (delete last).
    for (method, path, body) in &routes {
        let got = api(&app, method.clone(), path, Some(&admin_token), body.clone()).await;
        assert!(got.0.is_success(), "{method} {path}: {} {}", got.0, got.1);
    }
}

#[tokio::test]
async fn admins_list_filter_update_and_soft_delete_users() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (_, admin, _) = signed_in(&app, "admin@example.com", &["admin"]).await;
    let (bob_id, bob_token, bob_refresh) = signed_in(&app, "bob@example.org", &["user"]).await;
    for i in 0..3 {
        app.create_user(&format!("user{i}@example.com"), PASSWORD)
            .await;
    }
    let list = |q: &str| {
        let path = format!("/users{q}");
        let app = &app;
        let admin = admin.clone();
        async move { api(app, Method::GET, &path, Some(&admin), None).await }
    };
    let (status, page, _) = list("?page=1&perPage=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (
            page["total"].as_u64(),
            page["items"].as_array().unwrap().len()
        ),
        (Some(5), 2)
    );
    let (_, page3, _) = list("?page=3&perPage=2").await;
    assert_eq!(page3["items"].as_array().unwrap().len(), 1);
    let (_, by_email, _) = list("?email=EXAMPLE.ORG").await;
    assert_eq!(by_email["items"][0]["email"], "bob@example.org");
    let (_, admins, _) = list("?role=admin").await;
    assert_eq!(admins["total"], 1);
    let bad = list("?perPage=0").await;
    assert_error(&(bad.0, bad.1), 400, "invalid_request");
    let bad = list("?page=abc").await;
    assert_error(&(bad.0, bad.1), 400, "invalid_request");

    // Users read and rename themselves, but not their roles.
    let bob_path = format!("/users/{bob_id}");
    let own = api(&app, Method::GET, &bob_path, Some(&bob_token), None).await;
    assert_eq!(own.1["email"], "bob@example.org");
    let renamed = api(
        &app,
        Method::PATCH,
        &bob_path,
        Some(&bob_token),
        Some(json!({"name": "Robert"})),
    )
    .await;
    assert_eq!(
        (renamed.0, renamed.1["name"].clone()),
        (StatusCode::OK, json!("Robert"))
    );
    let cleared = api(
        &app,
        Method::PATCH,
        &bob_path,
        Some(&bob_token),
        Some(json!({"name": null})),
    )
    .await;
    assert_eq!(cleared.1["name"], Value::Null);
    let self_promote = api(
        &app,
        Method::PATCH,
        &bob_path,
        Some(&bob_token),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_error(&(self_promote.0, self_promote.1), 403, "forbidden");

    let unknown_role = api(
        &app,
        Method::PATCH,
        &bob_path,
        Some(&admin),
        Some(json!({"roles": ["wizard"]})),
    )
    .await;
    assert_error(&(unknown_role.0, unknown_role.1), 422, "invalid_role");
    let promoted = api(
        &app,
        Method::PATCH,
        &bob_path,
        Some(&admin),
        Some(json!({"roles": ["expert", "user"]})),
    )
    .await;
    assert_eq!(promoted.1["roles"], json!(["expert", "user"]));
    let not_a_uuid = api(&app, Method::GET, "/users/not-a-uuid", Some(&admin), None).await;
    assert_error(&(not_a_uuid.0, not_a_uuid.1), 400, "invalid_request");
    let missing = api(
        &app,
        Method::GET,
        &format!("/users/{}", uuid::Uuid::new_v4()),
        Some(&admin),
        None,
    )
    .await;
    assert_error(&(missing.0, missing.1), 404, "not_found");

    // Soft delete: gone from the API, signed out, address still reserved.
    assert_eq!(
        api(&app, Method::DELETE, &bob_path, Some(&admin), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let again = api(&app, Method::DELETE, &bob_path, Some(&admin), None).await;
    assert_error(&(again.0, again.1), 404, "not_found");
    let gone = api(&app, Method::GET, &bob_path, Some(&admin), None).await;
    assert_error(&(gone.0, gone.1), 404, "not_found");
    assert_eq!(list("").await.1["total"], 4);
    assert_eq!(
        api(&app, Method::GET, "/auth/me", Some(&bob_token), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_error(
        &post(&app, "/auth/refresh", json!({"refreshToken": bob_refresh})).await,
        401,
        "invalid_refresh_token",
    );
    assert_error(
        &login(&app, "bob@example.org", PASSWORD).await,
        401,
        "invalid_credentials",
    );
    let row = app.state.store.get_user(bob_id).await.unwrap().unwrap();
    assert!(row.deleted_at.is_some(), "the row stays");
    let hijack = post(
        &app,
        "/auth/register",
        json!({"email": "bob@example.org", "password": "hijack attempt phrase"}),
    )
    .await;
    assert_eq!(hijack.0, StatusCode::CREATED);
    assert!(app
        .state
        .store
        .find_user_by_email("bob@example.org")
        .await
        .unwrap()
        .unwrap()
        .deleted_at
        .is_some());
}

#[tokio::test]
async fn the_audit_trail_records_who_did_what_and_filters() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (admin_id, admin, _) = signed_in(&app, "admin@example.com", &["admin"]).await;
    let (bob_id, _, _) = signed_in(&app, "bob@example.com", &["user"]).await;
    let failed = app
        .http
        .post(app.url("/auth/login"))
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"email": "bob@example.com", "password": "wrong wrong"}))
        .send()
        .await
        .unwrap();
    let failed_body: Value = failed.json().await.unwrap();
    let failed_trace = failed_body["traceId"].as_str().unwrap().to_string();
    api(
        &app,
        Method::PATCH,
        &format!("/users/{bob_id}"),
        Some(&admin),
        Some(json!({"roles": ["expert"]})),
    )
    .await;
    api(
        &app,
        Method::DELETE,
        &format!("/users/{bob_id}"),
        Some(&admin),
        None,
    )
    .await;

    let (status, page, _) = api(
        &app,
        Method::GET,
        "/admin/audit?type=login.failed",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let event = &page["items"][0];
    assert_eq!(event["type"], "login.failed");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["userAgent"], "audit-test/1.0");
    assert_eq!(event["traceId"], failed_trace.as_str());
    let text = page.to_string();
    assert!(
        !text.contains("wrong wrong") && !text.contains("password"),
        "{text}"
    );

    let (_, about_bob, _) = api(
        &app,
        Method::GET,
        &format!("/admin/audit?user={bob_id}"),
        Some(&admin),
        None,
    )
    .await;
    let kinds: Vec<&str> = about_bob["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"user.deleted"), "{kinds:?}");
    assert!(
        kinds.contains(&"user.roles_changed") && kinds.contains(&"login.succeeded"),
        "{kinds:?}"
    );
    let deleted = &about_bob["items"][0];
    assert_eq!(deleted["actor"], admin_id.to_string());
    let (_, future, _) = api(
        &app,
        Method::GET,
        "/admin/audit?since=2999-01-01T00:00:00Z",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(future["items"].as_array().unwrap().len(), 0);
    let bad = api(
        &app,
        Method::GET,
        "/admin/audit?since=yesterday",
        Some(&admin),
        None,
    )
    .await;
    assert_error(&(bad.0, bad.1), 400, "invalid_request");
}

#[tokio::test]
async fn the_openapi_document_and_swagger_ui_are_served() {
    let app = TestApp::spawn().await;
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/me",
        "/auth/password-reset/request",
        "/auth/password-reset/confirm",
        "/auth/verify-email",
        "/auth/verify-email/resend",
        "/users",
        "/users/{id}",
        "/admin/audit",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
    assert!(spec["components"]["schemas"].get("ErrorResponse").is_some());
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("http"),
        "{csp}"
    );
    assert!(docs
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("swagger"));
    let unknown = api(&app, Method::GET, "/auth/nothing-here", None, None).await;
    assert_error(&(unknown.0, unknown.1), 404, "not_found");
}

#[tokio::test]
async fn roles_reach_id_tokens_only_with_the_roles_scope() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(portcullis::clients::ClientRegistration {
            name: "RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            scope: Some("openid email roles".into()),
            ..Default::default()
        })
        .await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (_, with) = tokens_for(&app, &client, &user, "openid roles").await;
    assert_eq!(
        claims(with["id_token"].as_str().unwrap())["roles"],
        json!(["user"])
    );
    assert_eq!(
        claims(with["access_token"].as_str().unwrap())["roles"],
        json!(["user"])
    );
    let (_, without) = tokens_for(&app, &client, &user, "openid email").await;
    assert!(claims(without["id_token"].as_str().unwrap())
        .get("roles")
        .is_none());
    let (_, _, discovery) = app.get_json("/.well-known/openid-configuration").await;
    assert!(discovery["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("roles")));
}

#[tokio::test]
async fn hosted_pages_register_verify_by_mail_and_sign_in() {
    let app = TestApp::spawn().await;
    let b = browser();
    let page = b
        .get(app.url("/register"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&page, "csrf").expect("csrf field");
    let weak = b
        .post(app.url("/register"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ada@example.com"),
            ("name", "Ada"),
            ("password", "password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.text().await.unwrap().contains("common password"));
    let done = b
        .post(app.url("/register"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ada@example.com"),
            ("name", "Ada"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Check your email"));
    let no_csrf = b
        .post(app.url("/register"))
        .form(&[("email", "eve@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::BAD_REQUEST);

    // The link from the outbox shows a confirm button; only the POST spends it.
    let token = mailed_token(&app, "ada@example.com", "/verify-email", 1).await;
    let confirm = b
        .get(app.url(&format!("/verify-email?token={token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("Confirm email address"));
    let verified = b
        .post(app.url("/verify-email"))
        .form(&[
            ("csrf", form_value(&confirm, "csrf").unwrap()),
            ("token", token.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    assert!(verified.text().await.unwrap().contains("confirmed"));

    // Sign in through the hosted login page.
    let login_page = b
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login_page.contains("/forgot-password") && login_page.contains("/register"));
    let signed = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", form_value(&login_page, "csrf").unwrap()),
            ("return_to", String::new()),
            ("username", "ada@example.com".into()),
            ("password", PASSWORD.into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::OK);
    assert!(signed
        .text()
        .await
        .unwrap()
        .contains("Signed in as ada@example.com"));
}

#[tokio::test]
async fn hosted_pages_reset_a_forgotten_password() {
    let app = TestApp::spawn().await;
    let client = first_party(&app).await;
    app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    let page = b
        .get(app.url("/forgot-password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent = b
        .post(app.url("/forgot-password"))
        .form(&[
            ("csrf", form_value(&page, "csrf").unwrap()),
            ("email", "ada@example.com".into()),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sent.contains("If ada@example.com has an account"));
    let token = mailed_token(&app, "ada@example.com", "/reset-password", 1).await;
    let form = b
        .get(app.url(&format!("/reset-password?token={token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("Choose a new password") && form.contains("ada@example.com"));
    let changed = b
        .post(app.url("/reset-password"))
        .form(&[
            ("csrf", form_value(&form, "csrf").unwrap()),
            ("token", token.clone()),
            ("password", "the new secret phrase".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let dead = b
        .get(app.url(&format!("/reset-password?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(dead.status(), StatusCode::BAD_REQUEST);
    // The new password signs in through the authorization flow too.
    let url = auth_url(&app, &client, &[("scope", "openid")]);
    let user = crate::common::TestUser {
        id: uuid::Uuid::nil(),
        email: "ada@example.com".into(),
        password: "the new secret phrase".into(),
    };
    assert!(matches!(
        app.sign_in(&b, &url, &user, "allow").await,
        crate::common::Landing::Client(_)
    ));
}

/// A minimal SMTP server (RFC 5321) that records what it is sent; `starttls` says whether it
/// offers STARTTLS (it never completes one).
async fn fake_smtp(starttls: bool) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 fake.test ESMTP\r\n").await;
                let mut transcript = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    transcript.push_str(&line);
                    transcript.push('\n');
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" if starttls => {
                            b"250-fake.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"
                        }
                        "EHLO" => b"250-fake.test\r\n250 AUTH PLAIN\r\n",
                        "STARTTLS" => b"454 TLS not available\r\n",
                        "AUTH" => b"235 2.7.0 accepted\r\n",
                        "DATA" => {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            while let Ok(Some(body)) = lines.next_line().await {
                                if body == "." {
                                    break;
                                }
                                transcript.push_str(&body);
                                transcript.push('\n');
                            }
                            // A pooled client keeps the connection open: report each message.
                            let _ = tx.send(transcript.clone());
                            b"250 2.0.0 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
                let _ = tx.send(transcript);
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn smtp_delivers_account_mail_through_the_relay() {
    let (port, mut received) = fake_smtp(false).await;
    let app = app_with(|s| {
        s.mail.smtp.host = Some("127.0.0.1".into());
        s.mail.smtp.port = port;
        s.mail.smtp.tls = "none".into();
    })
    .await;
    let (status, body) = post(
        &app,
        "/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let transcript = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let t = received.recv().await.expect("the relay saw a session");
            if t.contains("DATA") {
                return t;
            }
        }
    })
    .await
    .expect("mail within 10 s");
    let transcript = unquote(&transcript);
    assert!(
        transcript.contains("RCPT TO:<ada@example.com>"),
        "{transcript}"
    );
    assert!(transcript.contains("/verify-email?token="), "{transcript}");
    assert!(transcript.contains("text/html") && transcript.contains("text/plain"));
    assert!(
        !app.settings.mail.outbox_dir.exists(),
        "no outbox when SMTP is configured"
    );
}

#[tokio::test]
async fn smtp_with_starttls_never_sends_credentials_in_the_clear() {
    let (port, mut received) = fake_smtp(true).await;
    let app = app_with(|s| {
        s.mail.smtp.host = Some("127.0.0.1".into());
        s.mail.smtp.port = port;
        s.mail.smtp.username = Some("portcullis".into());
        s.mail.smtp.password = Some(secrecy::SecretString::from("relay-secret".to_string()));
    })
    .await;
    assert_eq!(app.settings.mail.smtp.tls, "starttls");
    let (status, _) = post(
        &app,
        "/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "mail trouble never shows in the answer"
    );
    let transcript = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the relay saw a session")
        .unwrap();
    assert!(transcript.contains("STARTTLS"), "{transcript}");
    assert!(
        !transcript.contains("AUTH") && !transcript.contains("DATA"),
        "{transcript}"
    );
}

#[tokio::test]
async fn a_new_verification_link_can_be_asked_for_without_telling_who_exists() {
    let app = TestApp::spawn().await;
    let (status, _) = post(
        &app,
        "/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for email in ["ada@example.com", "nobody@example.com"] {
        let (status, body) = post(&app, "/auth/verify-email/resend", json!({"email": email})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_error(
        &post(&app, "/auth/verify-email/resend", json!({"email": "nope"})).await,
        422,
        "invalid_email",
    );
    // Two links went out; the newest works.
    let token = mailed_token(&app, "ada@example.com", "/verify-email", 2).await;
    assert_eq!(
        post(&app, "/auth/verify-email", json!({"token": token}))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // Verified accounts get no more links.
    post(
        &app,
        "/auth/verify-email/resend",
        json!({"email": "ada@example.com"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(&app, "ada@example.com", 2).await.len(), 2);
}

#[tokio::test]
async fn a_hash_made_at_other_parameters_is_redone_at_sign_in() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    // Store a hash made at a different cost, as an older configuration would have.
    let older = portcullis::config::PasswordSettings {
        memory_kib: 128,
        iterations: 2,
        ..app.settings.password.clone()
    };
    let hasher = portcullis::accounts::PasswordHasher::new(&older).unwrap();
    let pw = portcullis::accounts::Password::parse(PASSWORD.into(), &older).unwrap();
    let mut stored = app.state.store.get_user(user.id).await.unwrap().unwrap();
    stored.password_hash = Some(hasher.hash(&pw).await.unwrap());
    app.state.store.update_user(&stored, &[]).await.unwrap();
    assert!(stored
        .password_hash
        .as_deref()
        .unwrap()
        .contains("m=128,t=2"));

    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    let wanted = format!(
        "m={},t={}",
        app.settings.password.memory_kib, app.settings.password.iterations
    );
    for _ in 0..100 {
        let now = app.state.store.get_user(user.id).await.unwrap().unwrap();
        if now.password_hash.as_deref().unwrap().contains(&wanted) {
            // And the password still works.
            assert_eq!(
                login(&app, "ada@example.com", PASSWORD).await.0,
                StatusCode::OK
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the hash was not upgraded to {wanted}");
}

#[tokio::test]
async fn request_limits_on_api_paths_answer_in_the_api_error_format() {
    let app = TestApp::spawn().await;
    let big = app
        .http
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body(format!("{{\"email\":\"{}\"}}", "a".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = big.json().await.unwrap();
    assert_eq!(body["code"], "invalid_request");
    assert!(body["traceId"].as_str().is_some_and(|t| !t.is_empty()));
    let long = app
        .http
        .get(app.url(&format!("/users?email={}", "b".repeat(9000))))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), StatusCode::URI_TOO_LONG);
    let body: Value = long.json().await.unwrap();
    assert!(
        body["message"].as_str().is_some() && body.get("error").is_none(),
        "{body}"
    );
    // The protocol endpoints keep RFC 6749's format.
    let token = app
        .http
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a".repeat(70_000))
        .send()
        .await
        .unwrap();
    let body: Value = token.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}
