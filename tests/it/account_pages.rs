//! The account pages at /account: a person's profile (name, email change through a link to the
//! new address, password), sessions, connected apps, data export and account deletion, spoken
//! to over HTTP by browsers with cookie jars.

use std::time::Duration;

use portcullis::clients::ClientRegistration;
use reqwest::StatusCode;
use serde_json::Value;

use crate::accounts::{mailed_token, mails_to};
use crate::common::{form_value, tokens_for, TestApp, TestClient, TestUser};

const PASSWORD: &str = "violet staple kettle";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                      Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, \
                      like Gecko) Version/18.1 Safari/605.1.15";

/// A browser with a cookie jar that shows itself as `user_agent`.
fn browser_as(user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs `b` in on the login page, without an authorization request.
async fn sign_in(app: &TestApp, b: &reqwest::Client, email: &str, password: &str) -> StatusCode {
    let html = get(app, b, "/login").await.1;
    let resp = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", form_value(&html, "csrf").unwrap().as_str()),
            ("return_to", ""),
            ("username", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    resp.status()
}

async fn signed_in_browser(app: &TestApp, user: &TestUser, user_agent: &str) -> reqwest::Client {
    let b = browser_as(user_agent);
    assert_eq!(sign_in(app, &b, &user.email, &user.password).await, 200);
    b
}

async fn get(app: &TestApp, b: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let resp = b.get(app.url(path)).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn post(
    app: &TestApp,
    b: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let resp = b.post(app.url(path)).form(form).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Asks, on the profile page, for the account to move to `new_email`.
async fn ask_email_change(
    app: &TestApp,
    b: &reqwest::Client,
    token: &str,
    new_email: &str,
    password: &str,
) -> (StatusCode, String) {
    let form = [
        ("csrf", token),
        ("new_email", new_email),
        ("password", password),
    ];
    post(app, b, "/account/email", &form).await
}

/// The CSRF token the account page `path` carries for `b`.
async fn csrf(app: &TestApp, b: &reqwest::Client, path: &str) -> String {
    let (status, html) = get(app, b, path).await;
    assert_eq!(status, 200, "{html}");
    form_value(&html, "csrf").expect("a form token")
}

/// Whether a page is the sign-in form coming back to `path`.
fn is_sign_in_for(html: &str, path: &str) -> bool {
    html.contains("action=\"/login\"") && form_value(html, "return_to").as_deref() == Some(path)
}

/// Whether `b` is signed in: `/account` is the profile, else the sign-in page coming back.
async fn is_signed_in(app: &TestApp, b: &reqwest::Client) -> bool {
    let html = get(app, b, "/account").await.1;
    if html.contains("Your profile") {
        return true;
    }
    assert!(is_sign_in_for(&html, "/account"), "{html}");
    false
}

/// The audit events of `kind` about the user, newest first.
async fn audit(app: &TestApp, user: &TestUser, kind: &str) -> Vec<portcullis::store::AuditEvent> {
    let query = portcullis::store::AuditQuery {
        user: Some(user.id.to_string()),
        kind: Some(kind.into()),
        limit: 10,
        ..Default::default()
    };
    app.state.store.query_audit(&query).await.unwrap()
}

async fn user_row(app: &TestApp, user: &TestUser) -> portcullis::store::User {
    app.state.store.get_user(user.id).await.unwrap().unwrap()
}

fn refresh_client() -> ClientRegistration {
    ClientRegistration {
        name: "Demo RP".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..Default::default()
    }
}

async fn refresh(app: &TestApp, client: &TestClient, token: &str) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

const PAGES: [&str; 6] = [
    "/account",
    "/account/sessions",
    "/account/apps",
    "/account/security",
    "/account/data",
    "/account/delete",
];

#[tokio::test]
async fn signed_out_every_account_page_is_the_sign_in_page_that_comes_back() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser_as(FIREFOX);
    for path in PAGES {
        let (status, html) = get(&app, &b, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(is_sign_in_for(&html, path), "{path}: {html}");
    }
    // A signed-out form post (with a good token) also asks for a sign-in, and changes nothing.
    let token = form_value(&get(&app, &b, "/login").await.1, "csrf").unwrap();
    let (_, html) = post(
        &app,
        &b,
        "/account/name",
        &[("csrf", &token), ("name", "Mallory")],
    )
    .await;
    assert!(is_sign_in_for(&html, "/account"), "{html}");
    assert_eq!(
        user_row(&app, &user).await.name.as_deref(),
        Some("Ada Lovelace")
    );

    // Signing in on that page comes back to it.
    let resp = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("return_to", "/account/sessions"),
            ("username", user.email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        app.url("/account/sessions")
    );
    let (status, html) = get(&app, &b, "/account/sessions").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("This device") && html.contains("Firefox on Linux"),
        "{html}"
    );
    // Every page carries the shared navigation, its own entry marked.
    for path in PAGES {
        let (_, html) = get(&app, &b, path).await;
        for entry in [
            "Profile",
            "Sessions",
            "Connected apps",
            "Security",
            "Your data",
        ] {
            assert!(html.contains(entry), "{path} lacks {entry}");
        }
        assert!(html.contains("aria-current=\"page\""), "{path}");
    }
}

#[tokio::test]
async fn the_profile_changes_the_name_and_the_password() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = signed_in_browser(&app, &user, FIREFOX).await;
    let other = signed_in_browser(&app, &user, CHROME).await;
    let token = csrf(&app, &b, "/account").await;

    let (status, html) = post(
        &app,
        &b,
        "/account/name",
        &[("csrf", &token), ("name", "  Grace Hopper ")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Name saved.") && html.contains("value=\"Grace Hopper\""),
        "{html}"
    );
    assert_eq!(
        user_row(&app, &user).await.name.as_deref(),
        Some("Grace Hopper")
    );
    let (status, _) = post(
        &app,
        &b,
        "/account/name",
        &[("csrf", &token), ("name", &"x".repeat(101))],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        user_row(&app, &user).await.name.as_deref(),
        Some("Grace Hopper")
    );

    // A wrong current password changes nothing.
    let new = "quartz lantern meadow";
    let (status, html) = post(
        &app,
        &b,
        "/account/password",
        &[
            ("csrf", &token),
            ("current_password", "wrong one"),
            ("new_password", new),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert!(html.contains("current password is not correct"), "{html}");
    // A weak new password is refused with the rule.
    let (status, _) = post(
        &app,
        &b,
        "/account/password",
        &[
            ("csrf", &token),
            ("current_password", PASSWORD),
            ("new_password", "short"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(get(&app, &other, "/account").await.0, 200);

    let (status, html) = post(
        &app,
        &b,
        "/account/password",
        &[
            ("csrf", &token),
            ("current_password", PASSWORD),
            ("new_password", new),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Password changed"), "{html}");
    // This browser goes on; the other session is signed out.
    assert!(is_signed_in(&app, &b).await);
    assert!(!is_signed_in(&app, &other).await);
    assert_eq!(
        app.state
            .sessions
            .user_sessions(user.id)
            .await
            .unwrap()
            .len(),
        1
    );
    // Only the new password signs in.
    assert_eq!(
        sign_in(&app, &browser_as(SAFARI), &user.email, PASSWORD).await,
        401
    );
    assert_eq!(
        sign_in(&app, &browser_as(SAFARI), &user.email, new).await,
        200
    );
}

#[tokio::test]
async fn an_email_change_waits_for_the_new_address_and_tells_the_old_one() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    app.create_user("bob@example.com", "another fine password")
        .await;
    let b = signed_in_browser(&app, &user, FIREFOX).await;
    let token = csrf(&app, &b, "/account").await;

    // The current password is needed.
    let (status, _) = ask_email_change(&app, &b, &token, "ada@new.example", "wrong").await;
    assert_eq!(status, 401);

    // A taken address reads like any other, and gets no mail.
    let (status, taken) = ask_email_change(&app, &b, &token, "Bob@Example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let (status, free) = ask_email_change(&app, &b, &token, "ada@new.example", PASSWORD).await;
    assert_eq!(status, 200);
    let notice = |html: &str, address: &str| {
        let start = html.find("id=\"notice\"").expect("a notice");
        let end = start + html[start..].find("</div>").unwrap();
        html[start..end].replace(address, "ADDRESS")
    };
    assert_eq!(
        notice(&taken, "Bob@Example.com"),
        notice(&free, "ada@new.example")
    );
    let link = mailed_token(&app, "ada@new.example", "/account/email/confirm", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mails_to(&app, "bob@example.com", 0).await.is_empty());

    // Nothing changes until the link is followed.
    assert_eq!(user_row(&app, &user).await.email, "ada@example.com");
    let (status, page) = get(&app, &b, &format!("/account/email/confirm?token={link}")).await;
    assert_eq!(status, 200);
    assert_eq!(user_row(&app, &user).await.email, "ada@example.com");
    // Followed in another browser (the link proves the address, not the session).
    let elsewhere = browser_as(SAFARI);
    let (_, page2) = get(
        &app,
        &elsewhere,
        &format!("/account/email/confirm?token={link}"),
    )
    .await;
    let (status, done) = post(
        &app,
        &elsewhere,
        "/account/email/confirm",
        &[
            ("csrf", form_value(&page2, "csrf").unwrap().as_str()),
            ("token", form_value(&page, "token").unwrap().as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Email address changed"), "{done}");
    let row = user_row(&app, &user).await;
    assert_eq!(row.email, "ada@new.example");
    assert!(row.email_verified);
    let told = mails_to(&app, "ada@example.com", 1).await;
    assert!(
        told.iter()
            .any(|m| m.contains("was changed from ada@example.com to ada@new.example")),
        "{told:?}"
    );

    // The link works once; the new address signs in, the old one no longer does.
    let (status, _) = post(
        &app,
        &elsewhere,
        "/account/email/confirm",
        &[
            ("csrf", form_value(&page2, "csrf").unwrap().as_str()),
            ("token", link.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        sign_in(&app, &browser_as(SAFARI), "ada@new.example", PASSWORD).await,
        200
    );
    assert_eq!(
        sign_in(&app, &browser_as(SAFARI), "ada@example.com", PASSWORD).await,
        401
    );
    let (_, html) = get(&app, &b, "/account").await;
    assert!(html.contains("ada@new.example"), "{html}");
}

#[tokio::test]
async fn an_email_change_link_fails_when_the_address_was_taken_meanwhile() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = signed_in_browser(&app, &user, FIREFOX).await;
    let token = csrf(&app, &b, "/account").await;
    ask_email_change(&app, &b, &token, "ada@new.example", PASSWORD).await;
    let link = mailed_token(&app, "ada@new.example", "/account/email/confirm", 1).await;
    app.create_user("ada@new.example", "someone else entirely")
        .await;
    let (status, html) = post(
        &app,
        &b,
        "/account/email/confirm",
        &[("csrf", &token), ("token", &link)],
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("This link does not work"), "{html}");
    assert_eq!(user_row(&app, &user).await.email, "ada@example.com");
}

#[tokio::test]
async fn the_sessions_page_signs_out_one_session_or_every_other_one() {
    let app = TestApp::spawn().await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let stranger = app
        .create_user("eve@example.com", "eve's own password")
        .await;
    let here = signed_in_browser(&app, &user, FIREFOX).await;
    let laptop = signed_in_browser(&app, &user, CHROME).await;
    let phone = signed_in_browser(&app, &user, SAFARI).await;
    let eve = signed_in_browser(&app, &stranger, CHROME).await;

    let (_, html) = get(&app, &here, "/account/sessions").await;
    assert_eq!(html.matches("This device").count(), 1, "{html}");
    for device in [
        "Firefox on Linux",
        "Chrome on Windows",
        "Safari on macOS",
        "127.0.0.1",
    ] {
        assert!(html.contains(device), "{device}: {html}");
    }
    assert!(html.contains("Sign out all other sessions (2)"), "{html}");
    let token = form_value(&html, "csrf").unwrap();
    let sid_of = |agent: &'static str| {
        let app = &app;
        async move {
            let sessions = app.state.sessions.user_sessions(user.id).await.unwrap();
            sessions
                .into_iter()
                .find(|s| s.user_agent.as_deref() == Some(agent))
                .unwrap()
                .sid
        }
    };

    // Someone else's session is not one's to end.
    let eve_sid = app.state.sessions.user_sessions(stranger.id).await.unwrap()[0]
        .sid
        .clone();
    let (status, _) = post(
        &app,
        &here,
        "/account/sessions/end",
        &[("csrf", &token), ("sid", &eve_sid)],
    )
    .await;
    assert_eq!(status, 404);
    assert!(is_signed_in(&app, &eve).await);

    // One session: its next request is signed out.
    let laptop_sid = sid_of(CHROME).await;
    let (status, html) = post(
        &app,
        &here,
        "/account/sessions/end",
        &[("csrf", &token), ("sid", &laptop_sid)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("That session is signed out."), "{html}");
    assert!(!is_signed_in(&app, &laptop).await);
    assert!(is_signed_in(&app, &phone).await);

    // Every other one: this device stays.
    let (status, html) = post(
        &app,
        &here,
        "/account/sessions/end-others",
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("1 other session is signed out."), "{html}");
    assert!(!is_signed_in(&app, &phone).await);
    assert!(is_signed_in(&app, &here).await);

    // This device itself: the cookie goes.
    let here_sid = sid_of(FIREFOX).await;
    let resp = here
        .post(app.url("/account/sessions/end"))
        .form(&[("csrf", token.as_str()), ("sid", here_sid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("portcullis-session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    assert!(!is_signed_in(&app, &here).await);
    assert!(app
        .state
        .sessions
        .user_sessions(user.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        app.state
            .sessions
            .user_sessions(stranger.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn revoking_a_connected_app_stops_its_refresh_token() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client()).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (b, tokens) = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token");
    let (status, rotated) = refresh(&app, &client, refresh_token).await;
    assert_eq!(status, 200, "{rotated}");
    let refresh_token = rotated["refresh_token"].as_str().unwrap().to_string();

    let (status, html) = get(&app, &b, "/account/apps").await;
    assert_eq!(status, 200);
    assert!(html.contains("Demo RP"), "{html}");
    for words in [
        "Confirm your identity",
        "See your email address",
        "Stay signed in",
    ] {
        assert!(html.contains(words), "{words}: {html}");
    }
    assert!(html.contains("last used"), "{html}");
    let token = form_value(&html, "csrf").unwrap();
    let id = form_value(&html, "id").unwrap();

    let (status, html) = post(
        &app,
        &b,
        "/account/apps/revoke",
        &[("csrf", &token), ("id", &id)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Access revoked") && html.contains("id=\"no-apps\""),
        "{html}"
    );
    let (status, body) = refresh(&app, &client, &refresh_token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // Again: nothing left to revoke.
    let (status, _) = post(
        &app,
        &b,
        "/account/apps/revoke",
        &[("csrf", &token), ("id", &id)],
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &app,
        &b,
        "/account/apps/revoke",
        &[("csrf", &token), ("id", "not-a-uuid")],
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_data_export_is_a_json_download_without_secrets() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client()).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (b, tokens) = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let token = csrf(&app, &b, "/account/data").await;
    let resp = b
        .post(app.url("/account/data/export"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let text = resp.text().await.unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data["profile"]["email"], "ada@example.com");
    assert_eq!(data["profile"]["id"], user.id.to_string());
    assert_eq!(data["consents"][0]["client_name"], "Demo RP");
    assert_eq!(data["sessions"][0]["this_device"], true);
    assert!(data["second_factors"].as_array().unwrap().is_empty());
    let kinds: Vec<&str> = data["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"login.succeeded"), "{kinds:?}");

    // No secrets and no hashes of them.
    let row = user_row(&app, &user).await;
    let mut secrets = vec![
        row.password_hash.unwrap(),
        "argon2".to_string(),
        "password_hash".to_string(),
        "id_hash".to_string(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
        tokens["access_token"].as_str().unwrap().to_string(),
    ];
    for s in app.state.sessions.user_sessions(user.id).await.unwrap() {
        secrets.push(s.id_hash);
    }
    for secret in secrets {
        assert!(!text.contains(&secret), "the export holds {secret}");
    }
    // The export itself is on record.
    let (_, again) = get(&app, &b, "/account/data").await;
    assert!(again.contains("Download my data"));
    let events = audit(&app, &user, "user.data_exported").await;
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn deleting_the_account_needs_the_password_and_ends_every_sign_in() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client()).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (b, tokens) = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let token = csrf(&app, &b, "/account/delete").await;

    let (status, html) = post(
        &app,
        &b,
        "/account/delete",
        &[("csrf", &token), ("password", "not my password")],
    )
    .await;
    assert_eq!(status, 401, "{html}");
    assert!(user_row(&app, &user).await.deleted_at.is_none());

    let resp = b
        .post(app.url("/account/delete"))
        .form(&[("csrf", token.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Your account is deleted"));
    assert!(user_row(&app, &user).await.deleted_at.is_some());
    assert!(!is_signed_in(&app, &b).await);
    assert_eq!(
        sign_in(&app, &browser_as(SAFARI), &user.email, PASSWORD).await,
        401
    );
    let (status, _) = refresh(&app, &client, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let events = audit(&app, &user, "user.deleted").await;
    assert_eq!(
        events[0].actor.as_deref(),
        Some(user.id.to_string().as_str())
    );
}

#[tokio::test]
async fn every_account_form_refuses_a_missing_or_forged_csrf_token() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client()).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (b, _) = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let _other = signed_in_browser(&app, &user, CHROME).await;
    let (_, apps) = get(&app, &b, "/account/apps").await;
    let consent = form_value(&apps, "id").unwrap();
    let sid = app.state.sessions.user_sessions(user.id).await.unwrap()[0]
        .sid
        .clone();

    // A real email-change link, to be confirmed without a token.
    let token = csrf(&app, &b, "/account").await;
    ask_email_change(&app, &b, &token, "ada@new.example", PASSWORD).await;
    let link = mailed_token(&app, "ada@new.example", "/account/email/confirm", 1).await;

    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/account/name", vec![("name", "Mallory")]),
        (
            "/account/email",
            vec![("new_email", "eve@example.com"), ("password", PASSWORD)],
        ),
        ("/account/email/confirm", vec![("token", link.as_str())]),
        (
            "/account/password",
            vec![
                ("current_password", PASSWORD),
                ("new_password", "quartz lantern meadow"),
            ],
        ),
        ("/account/sessions/end", vec![("sid", sid.as_str())]),
        ("/account/sessions/end-others", vec![]),
        ("/account/apps/revoke", vec![("id", consent.as_str())]),
        ("/account/data/export", vec![]),
        ("/account/delete", vec![("password", PASSWORD)]),
    ];
    for (path, fields) in &forms {
        for csrf in [None, Some("forged")] {
            let mut form = fields.clone();
            if let Some(c) = csrf {
                form.push(("csrf", c));
            }
            let (status, html) = post(&app, &b, path, &form).await;
            assert_eq!(status, 400, "{path} with {csrf:?}");
            assert!(html.contains("This form has expired"), "{path}: {html}");
        }
    }
    let row = user_row(&app, &user).await;
    assert_eq!(row.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(row.email, "ada@example.com");
    assert!(row.deleted_at.is_none());
    assert_eq!(
        app.state
            .sessions
            .user_sessions(user.id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.state.sessions.consents(user.id).await.unwrap().len(), 1);
    assert_eq!(
        sign_in(&app, &browser_as(SAFARI), &user.email, PASSWORD).await,
        200
    );
    assert!(mails_to(&app, "eve@example.com", 0).await.is_empty());
}
