//! The operators' console over HTTP with a cookie jar: the sign-in through Portcullis itself
//! (authorization code with PKCE as the built-in client), the page a non-admin gets, CSRF on
//! every form, a revoked session locking the console, and the MFA rule for admin writes.

use reqwest::StatusCode;

use crate::common::{
    app_with, browser, form_value, location, query, sign_in_at, unescape, Landing, TestApp,
    TestClient, TestUser,
};

const PASSWORD: &str = "violet staple kettle";

/// `root@example.com` with the admin role.
pub(crate) async fn admin(app: &TestApp) -> TestUser {
    user_with_roles(app, "root@example.com", &["admin"]).await
}

pub(crate) async fn user_with_roles(app: &TestApp, email: &str, roles: &[&str]) -> TestUser {
    let user = app.create_user(email, PASSWORD).await;
    set_roles(app, &user, roles).await;
    user
}

async fn set_roles(app: &TestApp, user: &TestUser, roles: &[&str]) {
    let mut row = app.state.store.get_user(user.id).await.unwrap().unwrap();
    row.roles = roles.iter().map(|r| r.to_string()).collect();
    app.state.store.update_user(&row, &[]).await.unwrap();
}

/// Opens `/console` in a fresh browser and signs in on the hosted login page: the status and
/// HTML the browser ends on, and the browser (its cookies).
async fn console_sign_in(app: &TestApp, user: &TestUser) -> (u16, String, reqwest::Client) {
    let b = browser();
    match sign_in_at(app, &b, &app.url("/console"), user, "allow").await {
        Landing::Page(status, html) => (status, html, b),
        Landing::Client(to) => panic!("the console sign-in left the server: {to}"),
    }
}

async fn get(b: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let resp = b.get(app.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post(
    b: &reqwest::Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let resp = b.post(app.url(path)).form(form).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn shop(app: &TestApp) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Shop".into(),
        redirect_uris: vec!["https://shop.example.com/cb".into()],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn an_unauthenticated_visit_is_sent_to_authorize_with_pkce_and_state() {
    let app = TestApp::spawn().await;
    let resp = app.get_raw("/console/users?q=ada").await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let to = location(&resp).expect("a redirect");
    assert_eq!(to.path(), "/authorize");
    assert!(to.as_str().starts_with(&app.base));
    assert_eq!(query(&to, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&to, "client_id").as_deref(),
        Some("portcullis-console")
    );
    assert_eq!(
        query(&to, "redirect_uri"),
        Some(app.url("/console/callback"))
    );
    assert_eq!(query(&to, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query(&to, "code_challenge").map(|c| c.len()), Some(43));
    assert!(query(&to, "state").is_some_and(|s| s.len() >= 16));
    assert!(query(&to, "nonce").is_some());
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("portcullis-console-login="))
        .expect("the sign-in cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // The state of a sign-in is kept by the browser that started it only.
    let foreign = format!(
        "/console/callback?code=x&state={}",
        query(&to, "state").unwrap()
    );
    let resp = app.get_raw(&foreign).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_signs_in_through_the_hosted_login_page_and_lands_on_the_dashboard() {
    let app = TestApp::spawn().await;
    let root = admin(&app).await;
    let client = shop(&app).await;
    let (status, html, b) = console_sign_in(&app, &root).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<h1>Dashboard</h1>"), "{html}");
    assert!(html.contains("root@example.com"));
    assert!(html.contains("id=\"count-users\">1<"), "{html}");
    // The sign-in was counted, and every page answers.
    assert!(html.contains("id=\"count-sign-ins\">1<"), "{html}");
    for path in [
        "/console/clients".to_string(),
        "/console/clients?q=sh".to_string(),
        "/console/clients/new".to_string(),
        format!("/console/clients/{}", client.id),
        format!("/console/clients/{}/delete", client.id),
        "/console/users".to_string(),
        "/console/users?q=root".to_string(),
        format!("/console/users/{}", root.id),
        format!("/console/users/{}/delete", root.id),
        format!("/console/users/{}/reset-mfa", root.id),
        "/console/keys".to_string(),
        "/console/audit".to_string(),
        "/console/audit?kind=login.succeeded&since=2000-01-01".to_string(),
    ] {
        let (status, html) = get(&b, &app, &path).await;
        assert_eq!(status, 200, "{path}: {html}");
    }
    let (_, clients) = get(&b, &app, "/console/clients?q=sh").await;
    assert!(clients.contains(&client.id), "{clients}");
    let (_, audit) = get(&b, &app, "/console/audit?kind=login.succeeded").await;
    assert!(audit.contains(&root.id.to_string()), "{audit}");
    app.stop().await;
}

#[tokio::test]
async fn a_non_admin_gets_a_clear_page_not_a_redirect_loop() {
    let app = TestApp::spawn().await;
    let ada = user_with_roles(&app, "ada@example.org", &["user"]).await;
    let (status, html, b) = console_sign_in(&app, &ada).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("This account is not an operator"), "{html}");
    assert!(html.contains("ada@example.org"));
    assert!(
        html.contains("href=\"/end_session\""),
        "a way to sign out: {html}"
    );
    let resp = b.get(app.url("/console/users")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A POST is refused too, whatever its form.
    let (status, _) = post(&b, &app, "/console/keys/rotate", &[("csrf", "x")]).await;
    assert_eq!(status, 403);
    app.stop().await;
}

/// What a refused form must leave as it was.
async fn snapshot(app: &TestApp, client: &str, user: uuid::Uuid) -> String {
    let c = app.state.store.get_client(client).await.unwrap();
    let u = app.state.store.get_user(user).await.unwrap();
    let sessions = app.state.sessions.user_sessions(user).await.unwrap();
    let keys: Vec<String> = app
        .state
        .store
        .list_signing_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| format!("{}:{:?}", k.kid, k.state))
        .collect();
    let audit = app
        .state
        .store
        .query_audit(&portcullis::store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    format!(
        "{:?}|{:?}|{:?}|{}|{keys:?}|{audit}",
        c.map(|c| (c.name, c.disabled, c.secret_hash)),
        u.map(|u| (u.roles, u.disabled, u.deleted_at)),
        sessions.iter().map(|s| s.sid.clone()).collect::<Vec<_>>(),
        sessions.len(),
    )
}

#[tokio::test]
async fn every_console_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let root = admin(&app).await;
    let ada = user_with_roles(&app, "ada@example.org", &["user"]).await;
    let (_, _, _ada_browser) = console_sign_in(&app, &ada).await;
    let client = shop(&app).await;
    let (status, _, b) = console_sign_in(&app, &root).await;
    assert_eq!(status, 200);
    let (_, keys) = get(&b, &app, "/console/keys").await;
    let csrf = form_value(&keys, "csrf").expect("a CSRF token on the keys page");
    let ada_sid = app.state.sessions.user_sessions(ada.id).await.unwrap()[0]
        .sid
        .clone();
    let retired = {
        app.state.keys.rotate().await.unwrap();
        app.state
            .keys
            .ring()
            .summary()
            .iter()
            .find(|k| k.state == portcullis::store::KeyState::Retired)
            .expect("a retired key after a rotation")
            .kid
            .clone()
    };
    let (c, u) = (client.id.as_str(), ada.id);
    let forms: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/console/clients".into(),
            vec![
                ("name", "Evil".into()),
                ("redirect_uris", "https://evil.example.com/cb".into()),
                ("grant_authorization_code", "on".into()),
            ],
        ),
        (
            format!("/console/clients/{c}"),
            vec![
                ("name", "Renamed".into()),
                ("redirect_uris", "https://shop.example.com/cb".into()),
                ("grant_authorization_code", "on".into()),
            ],
        ),
        (format!("/console/clients/{c}/secret"), vec![]),
        (format!("/console/clients/{c}/disable"), vec![]),
        (format!("/console/clients/{c}/enable"), vec![]),
        (format!("/console/clients/{c}/delete"), vec![]),
        (
            format!("/console/users/{u}/roles"),
            vec![("role_admin", "on".into())],
        ),
        (format!("/console/users/{u}/disable"), vec![]),
        (format!("/console/users/{u}/enable"), vec![]),
        (
            format!("/console/users/{u}/sessions/revoke"),
            vec![("sid", ada_sid.clone())],
        ),
        (format!("/console/users/{u}/password-reset"), vec![]),
        (format!("/console/users/{u}/reset-mfa"), vec![]),
        (format!("/console/users/{u}/delete"), vec![]),
        ("/console/keys/rotate".into(), vec![]),
        (format!("/console/keys/{retired}/revoke"), vec![]),
    ];
    let before = snapshot(&app, c, u).await;
    for (path, fields) in &forms {
        for token in [None, Some("wrong-token-wrong-token-wrong-token-wrong")] {
            let mut form: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(t) = token {
                form.push(("csrf", t));
            }
            let (status, html) = post(&b, &app, path, &form).await;
            assert_eq!(status, 400, "{path} with csrf {token:?}: {html}");
            assert!(html.contains("This form has expired"), "{path}: {html}");
        }
    }
    assert_eq!(
        snapshot(&app, c, u).await,
        before,
        "a refused form changed something"
    );

    // The same forms with the page's token do their work (so the refusals above were CSRF's).
    let (status, _) = post(
        &b,
        &app,
        &format!("/console/clients/{c}/disable"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        app.state
            .store
            .get_client(c)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    let (status, html) = post(
        &b,
        &app,
        &format!("/console/users/{u}/sessions/revoke"),
        &[("csrf", &csrf), ("sid", &ada_sid)],
    )
    .await;
    assert_eq!(status, 303, "{html}");
    assert!(app
        .state
        .sessions
        .user_sessions(u)
        .await
        .unwrap()
        .is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_session_locks_the_console_at_once() {
    let app = TestApp::spawn().await;
    let root = admin(&app).await;
    let (status, _, b) = console_sign_in(&app, &root).await;
    assert_eq!(status, 200);
    let sid = app.state.sessions.user_sessions(root.id).await.unwrap()[0]
        .sid
        .clone();
    assert!(app
        .state
        .sessions
        .end_session_by_sid(&sid, None, "test", "admin")
        .await
        .unwrap());
    // The console token is still unexpired, but the session behind it is gone.
    let resp = b.get(app.url("/console/users")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let to = location(&resp).unwrap();
    assert_eq!(to.path(), "/authorize");
    let html = b.get(to).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("action=\"/login\""), "the login page: {html}");
    // A write is refused as well, and goes to the console (which signs in again).
    let (status, _) = post(&b, &app, "/console/keys/rotate", &[("csrf", "x")]).await;
    assert_eq!(status, 303);
    app.stop().await;
}

#[tokio::test]
async fn a_removed_admin_role_locks_the_console_at_once() {
    let app = TestApp::spawn().await;
    let root = admin(&app).await;
    let (status, _, b) = console_sign_in(&app, &root).await;
    assert_eq!(status, 200);
    set_roles(&app, &root, &["user"]).await;
    let (status, html) = get(&b, &app, "/console").await;
    assert_eq!(status, 403);
    assert!(html.contains("not an operator"));
    app.stop().await;
}

#[tokio::test]
async fn a_write_after_a_password_only_sign_in_is_refused_when_the_policy_covers_admins() {
    let app = app_with(|s| s.accounts.mfa.required_for_roles = vec!["admin".into()]).await;
    let client = shop(&app).await;
    // Signed in with a password alone while not yet an admin; then made one.
    let ops = user_with_roles(&app, "ops@example.com", &["user"]).await;
    let (status, _, b) = console_sign_in(&app, &ops).await;
    assert_eq!(status, 403);
    set_roles(&app, &ops, &["admin"]).await;
    let (status, html) = get(&b, &app, &format!("/console/clients/{}", client.id)).await;
    assert_eq!(status, 200, "reading needs no second factor: {html}");
    let csrf = form_value(&html, "csrf").unwrap();
    let (status, html) = post(
        &b,
        &app,
        &format!("/console/clients/{}/disable", client.id),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("Confirm with a second factor"), "{html}");
    assert!(html.contains("href=\"/console/login?mfa=1\""), "{html}");
    let stored = app
        .state
        .store
        .get_client(&client.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.disabled, "the refused write changed the client");
    // The page's link asks /authorize for a second factor.
    let resp = b.get(app.url("/console/login?mfa=1")).send().await.unwrap();
    let to = location(&resp).unwrap();
    assert_eq!(query(&to, "acr_values").as_deref(), Some("mfa"));
    assert_eq!(
        query(&to, "client_id").as_deref(),
        Some("portcullis-console")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_registration_shows_the_rules_own_message_and_keeps_the_form() {
    let app = TestApp::spawn().await;
    let root = admin(&app).await;
    let (_, _, b) = console_sign_in(&app, &root).await;
    let (_, form) = get(&b, &app, "/console/clients/new").await;
    let csrf = form_value(&form, "csrf").unwrap();
    let reg = portcullis::clients::ClientRegistration {
        name: "Evil".into(),
        redirect_uris: vec!["http://evil.example.com/cb".into()],
        grant_types: vec!["authorization_code".into()],
        ..Default::default()
    };
    let expected = portcullis::http::sentence(
        &portcullis::clients::prepare(&reg, 0)
            .unwrap_err()
            .to_string(),
    );
    let (status, html) = post(
        &b,
        &app,
        "/console/clients",
        &[
            ("csrf", &csrf),
            ("name", "Evil"),
            ("redirect_uris", "http://evil.example.com/cb"),
            ("grant_authorization_code", "on"),
            ("kind", "confidential"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        unescape(&html).contains(&expected),
        "{expected:?} in {html}"
    );
    assert!(
        html.contains("value=\"Evil\""),
        "the form keeps what was typed"
    );
    let (clients, total) = app
        .state
        .client_admin
        .search(&Default::default())
        .await
        .unwrap();
    assert_eq!(total, 1, "only the console's own client: {clients:?}");
    app.stop().await;
}
