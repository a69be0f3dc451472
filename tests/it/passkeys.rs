//! Passkeys over HTTP against the real server, with a software authenticator speaking the
//! script's JSON: registered on /account/security, used as the second factor (acr `phr`), used
//! alone from the login page (passwordless), required by `acr_values=phr` (and added on the spot
//! by an account without one), each ceremony once, a ceremony begun on one instance finished on
//! another, and hostile input refused with a 4xx that writes nothing.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::clock::SystemClock;
use portcullis::store::FactorKind;
use serde_json::{json, Value};
use url::Url;

use crate::common::{
    auth_url, browser, exchange, form_value, fresh_database_url, location, query, test_settings,
    Landing, TestApp, TestClient, TestUser, VERIFIER,
};
use crate::soft_passkey::{embedded_options, ResidentPasskey};

const PASSWORD: &str = "violet staple kettle";

async fn passkey_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let settings = test_settings(dir.path(), url);
    TestApp::spawn_localhost(settings, dir, Arc::new(SystemClock)).await
}

async fn rp(app: &TestApp) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Demo RP".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        scope: Some("openid email".into()),
        ..Default::default()
    })
    .await
}

/// The origin the browser reports: the issuer's.
fn origin(app: &TestApp) -> Url {
    Url::parse(&app.base).unwrap()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn text(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn get_page(b: &reqwest::Client, url: &str) -> (u16, String) {
    text(b.get(url).send().await.unwrap()).await
}

/// Starts adding a passkey on the security page: (the page's CSRF token, the setup page).
async fn passkey_setup(b: &reqwest::Client, app: &TestApp) -> (String, String) {
    let (_, html) = get_page(b, &app.url("/account/security")).await;
    let csrf = form_value(&html, "csrf").unwrap();
    let setup = text(post(b, &app.url("/account/security/passkey"), &[("csrf", &csrf)]).await)
        .await
        .1;
    (csrf, setup)
}

async fn post(b: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    b.post(url).form(form).send().await.unwrap()
}

/// Follows redirects (and answers a consent page) until the browser reaches the client.
async fn to_client(app: &TestApp, b: &reqwest::Client, mut next: reqwest::Response) -> Url {
    for _ in 0..8 {
        if let Some(to) = location(&next) {
            if !to.as_str().starts_with(&app.base) {
                return to;
            }
            next = b.get(to).send().await.unwrap();
            continue;
        }
        let (status, html) = text(next).await;
        assert!(html.contains("action=\"/consent\""), "{status}: {html}");
        let form = [
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", form_value(&html, "return_to").unwrap()),
            ("decision", "allow".to_string()),
        ];
        next = b
            .post(app.url("/consent"))
            .form(&form)
            .send()
            .await
            .unwrap();
    }
    panic!("too many hops");
}

/// The ID token's claims for the code in a client redirect.
async fn id_token(app: &TestApp, client: &TestClient, at_client: &Url) -> Value {
    let code = query(at_client, "code").expect("a code");
    let (status, _, tokens) = exchange(app, client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    claims(tokens["id_token"].as_str().unwrap())
}

/// A browser with a fresh password-only session of `user`.
async fn signed_in(app: &TestApp, client: &TestClient, user: &TestUser) -> reqwest::Client {
    let b = browser();
    match app
        .sign_in(&b, &auth_url(app, client, &[]), user, "allow")
        .await
    {
        Landing::Client(_) => b,
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    }
}

/// The security page's registration: (status, page) of the finish step.
async fn add_passkey(
    app: &TestApp,
    b: &reqwest::Client,
    authenticator: &mut ResidentPasskey,
    name: &str,
) -> (u16, String) {
    let (_, html) = get_page(b, &app.url("/account/security")).await;
    assert!(html.contains("id=\"add-passkey\""), "{html}");
    let csrf = form_value(&html, "csrf").unwrap();
    let (status, setup) = text(
        post(
            b,
            &app.url("/account/security/passkey"),
            &[("csrf", &csrf), ("name", name)],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{setup}");
    assert!(setup.contains("data-webauthn=\"register\""), "{setup}");
    let ceremony = form_value(&setup, "ceremony").unwrap();
    let credential = authenticator.create(&origin(app), &embedded_options(&setup));
    text(
        post(
            b,
            &app.url("/account/security/passkey/finish"),
            &[
                ("csrf", &csrf),
                ("ceremony", &ceremony),
                ("credential", &credential),
            ],
        )
        .await,
    )
    .await
}

async fn passkeys_of(app: &TestApp, user: &TestUser) -> Vec<portcullis::store::MfaFactor> {
    app.state
        .store
        .list_factors(user.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.kind == FactorKind::Passkey)
        .collect()
}

async fn audit_kinds(app: &TestApp) -> Vec<String> {
    app.state
        .store
        .recent_audit(200)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Signs in with the password in a fresh browser: (browser, second-factor page).
async fn password_step(app: &TestApp, url: &str, user: &TestUser) -> (reqwest::Client, String) {
    let b = browser();
    let (_, login) = get_page(&b, url).await;
    let form = [
        ("csrf", form_value(&login, "csrf").unwrap()),
        ("return_to", form_value(&login, "return_to").unwrap()),
        ("username", user.email.clone()),
        ("password", user.password.clone()),
    ];
    let (status, page) = text(b.post(app.url("/login")).form(&form).send().await.unwrap()).await;
    assert_eq!(status, 200, "{page}");
    (b, page)
}

/// The passkey form of a second-factor page, answered by `authenticator`.
fn passkey_answer(
    app: &TestApp,
    page: &str,
    authenticator: &mut ResidentPasskey,
) -> Vec<(&'static str, String)> {
    assert!(page.contains("action=\"/login/mfa/passkey\""), "{page}");
    let credential = authenticator.get(&origin(app), &embedded_options(page));
    vec![
        ("csrf", form_value(page, "csrf").unwrap()),
        ("mfa_token", form_value(page, "mfa_token").unwrap()),
        ("ceremony", form_value(page, "ceremony").unwrap()),
        ("credential", credential),
    ]
}

#[tokio::test]
async fn a_passkey_added_on_the_security_page_is_a_phishing_resistant_second_factor() {
    let app = passkey_app().await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = signed_in(&app, &client, &user).await;
    let mut authenticator = ResidentPasskey::new();

    let (status, done) = add_passkey(&app, &b, &mut authenticator, "Work laptop").await;
    assert_eq!(status, 200, "{done}");
    assert!(
        done.contains("id=\"recovery-codes\""),
        "a first factor comes with recovery codes: {done}"
    );
    let stored = passkeys_of(&app, &user).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "Work laptop");
    assert!(stored[0].confirmed_at.is_some() && stored[0].credential_id.is_some());
    assert_eq!(
        app.state.mfa.recovery_codes_left(user.id).await.unwrap(),
        10
    );
    assert!(audit_kinds(&app)
        .await
        .contains(&"mfa.enrolled".to_string()));

    // A second one, unnamed, excludes the first from the authenticator's choice.
    let (csrf, setup) = passkey_setup(&b, &app).await;
    let options = embedded_options(&setup);
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        options["publicKey"]["excludeCredentials"][0]["id"],
        stored[0].credential_id.as_deref().unwrap()
    );
    let mut phone = ResidentPasskey::new();
    let credential = phone.create(&origin(&app), &options);
    let finish = [
        ("csrf", csrf.clone()),
        ("ceremony", form_value(&setup, "ceremony").unwrap()),
        ("credential", credential),
    ];
    let (status, page) =
        text(post_pairs(&b, &app.url("/account/security/passkey/finish"), &finish).await).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Passkey added."), "{page}");
    assert!(
        page.contains("Work laptop") && page.contains(">Passkey<"),
        "{page}"
    );

    // The same answer again: the ceremony is spent, nothing more is stored.
    let (status, _) =
        text(post_pairs(&b, &app.url("/account/security/passkey/finish"), &finish).await).await;
    assert_eq!(status, 409);
    assert_eq!(passkeys_of(&app, &user).await.len(), 2);

    // A fresh browser: the password, then the passkey.
    let url = auth_url(&app, &client, &[]);
    let (b2, page) = password_step(&app, &url, &user).await;
    assert!(page.contains("Use a passkey or security key"), "{page}");
    let options = embedded_options(&page);
    assert_eq!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "either of the account's passkeys may answer"
    );
    let answer = passkey_answer(&app, &page, &mut authenticator);
    let resp = post_pairs(&b2, &app.url("/login/mfa/passkey"), &answer).await;
    assert_eq!(resp.status(), 303);
    let at_client = to_client(&app, &b2, resp).await;
    let id = id_token(&app, &client, &at_client).await;
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]));
    assert_eq!(id["acr"], "phr");

    // Replaying the completed form fails: the sign-in and its ceremony are spent.
    let (status, _) = text(post_pairs(&b2, &app.url("/login/mfa/passkey"), &answer).await).await;
    assert_eq!(status, 401);
    let used = passkeys_of(&app, &user).await;
    assert!(used[0].last_used_at.is_some(), "the last use is recorded");
    assert_ne!(
        used[0].credential, stored[0].credential,
        "the signature counter moved"
    );
    let kinds = audit_kinds(&app).await;
    assert!(kinds.contains(&"mfa.succeeded".to_string()), "{kinds:?}");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.management))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "portcullis_mfa_changes_total{op=\"enrolled\",kind=\"passkey\"} 2",
        "portcullis_mfa_verifications_total{method=\"passkey\",result=\"success\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }

    // Removing one (a fresh sign-in is recent) is audited.
    let (_, html) = get_page(&b2, &app.url("/account/security")).await;
    let id = form_value(&html, "id").unwrap();
    let csrf = form_value(&html, "csrf").unwrap();
    let (status, page) = text(
        post(
            &b2,
            &app.url("/account/security/remove"),
            &[("csrf", &csrf), ("id", &id)],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(passkeys_of(&app, &user).await.len(), 1);
    assert!(audit_kinds(&app).await.contains(&"mfa.removed".to_string()));
}

async fn post_pairs(b: &reqwest::Client, url: &str, form: &[(&str, String)]) -> reqwest::Response {
    b.post(url).form(form).send().await.unwrap()
}

#[tokio::test]
async fn passwordless_sign_in_from_the_login_page_ends_at_the_client_with_phr() {
    let app = passkey_app().await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let mut authenticator = ResidentPasskey::new();
    let b = signed_in(&app, &client, &user).await;
    add_passkey(&app, &b, &mut authenticator, "Phone").await;

    let fresh = browser();
    let (_, login) = get_page(&fresh, &auth_url(&app, &client, &[])).await;
    assert!(login.contains("data-webauthn=\"discover\""), "{login}");
    assert!(
        login.contains("autocomplete=\"username webauthn\""),
        "{login}"
    );
    assert!(login.contains("Sign in with a passkey"));
    let csrf = form_value(&login, "csrf").unwrap();
    let return_to = form_value(&login, "return_to").unwrap();

    let refused = post(
        &fresh,
        &app.url("/login/passkey/options"),
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(refused.status(), 400);
    let resp = post(
        &fresh,
        &app.url("/login/passkey/options"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let options: Value = resp.json().await.unwrap();
    let ceremony = options["ceremony"].as_str().unwrap().to_string();
    assert!(
        options["publicKey"]
            .get("allowCredentials")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty),
        "any discoverable passkey may answer: {options}"
    );
    let credential = authenticator.get(&origin(&app), &options);
    let form = [
        ("csrf", csrf.clone()),
        ("return_to", return_to),
        ("ceremony", ceremony),
        ("credential", credential),
    ];
    let resp = post_pairs(&fresh, &app.url("/login/passkey"), &form).await;
    assert_eq!(resp.status(), 303);
    let at_client = to_client(&app, &fresh, resp).await;
    let id = id_token(&app, &client, &at_client).await;
    assert_eq!(id["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(id["acr"], "phr");

    // The same answer again: the ceremony was used once.
    let replay = browser();
    let (_, login) = get_page(&replay, &app.url("/login")).await;
    let mut again = form.to_vec();
    again[0].1 = form_value(&login, "csrf").unwrap();
    let (status, page) = text(post_pairs(&replay, &app.url("/login/passkey"), &again).await).await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("not valid any more"), "{page}");
}

#[tokio::test]
async fn acr_values_phr_accepts_a_passkey_and_refuses_an_authenticator_code() {
    let app = passkey_app().await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let mut authenticator = ResidentPasskey::new();
    let b = signed_in(&app, &client, &user).await;
    add_passkey(&app, &b, &mut authenticator, "Laptop").await;

    // The password-only session steps up; only a passkey is offered, and a code is refused.
    let resp = b
        .get(auth_url(&app, &client, &[("acr_values", "phr")]))
        .send()
        .await
        .unwrap();
    let (status, page) = text(resp).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains("action=\"/login/mfa\""),
        "no code form: {page}"
    );
    let code = [
        ("csrf", form_value(&page, "csrf").unwrap()),
        ("mfa_token", form_value(&page, "mfa_token").unwrap()),
        ("code", "123456".to_string()),
    ];
    let (status, refused) = text(post_pairs(&b, &app.url("/login/mfa"), &code).await).await;
    assert_eq!(status, 401);
    assert!(
        refused.contains("needs a passkey or security key"),
        "{refused}"
    );
    let answer = passkey_answer(&app, &refused, &mut authenticator);
    let resp = post_pairs(&b, &app.url("/login/mfa/passkey"), &answer).await;
    let at_client = to_client(&app, &b, resp).await;
    let id = id_token(&app, &client, &at_client).await;
    assert_eq!(id["acr"], "phr");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]));

    // An account without a passkey is told so, and offered to add one: nothing else.
    let other = app.create_user("bob@example.com", PASSWORD).await;
    let url = auth_url(&app, &client, &[("acr_values", "phr")]);
    let (_, page) = password_step(&app, &url, &other).await;
    assert!(page.contains("your account has none yet"), "{page}");
    assert!(page.contains("Add a passkey to continue"), "{page}");
    assert!(
        page.contains("action=\"/login/mfa/passkey/register\""),
        "{page}"
    );
    assert!(!page.contains("action=\"/login/mfa\""), "{page}");
    assert!(!page.contains("action=\"/login/mfa/passkey\""), "{page}");
}

/// The "Add a passkey to continue" form of a second-factor page, answered by `authenticator`.
fn enrollment_answer(
    app: &TestApp,
    page: &str,
    authenticator: &mut ResidentPasskey,
) -> Vec<(&'static str, String)> {
    assert!(
        page.contains("action=\"/login/mfa/passkey/register\""),
        "{page}"
    );
    let credential = authenticator.create(&origin(app), &embedded_options(page));
    vec![
        ("csrf", form_value(page, "csrf").unwrap()),
        ("mfa_token", form_value(page, "mfa_token").unwrap()),
        ("ceremony", form_value(page, "ceremony").unwrap()),
        ("credential", credential),
        ("name", "Laptop".to_string()),
    ]
}

/// The recovery-codes page's "continue", followed to the client.
async fn past_recovery_codes(app: &TestApp, b: &reqwest::Client, page: &str) -> Url {
    assert!(page.contains("id=\"recovery-codes\""), "{page}");
    let href = page
        .split("class=\"btn btn-primary btn-block\" href=\"")
        .nth(1)
        .expect("a continue link");
    let href = crate::common::unescape(href.split('"').next().unwrap());
    let href = if href.starts_with('/') {
        app.url(&href)
    } else {
        href
    };
    let next = b.get(href).send().await.unwrap();
    to_client(app, b, next).await
}

#[tokio::test]
async fn acr_values_phr_enrolls_a_passkey_for_an_account_without_one() {
    let app = passkey_app().await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let mut authenticator = ResidentPasskey::new();
    let url = auth_url(&app, &client, &[("acr_values", "phr")]);
    let (b, page) = password_step(&app, &url, &user).await;
    assert!(page.contains("Add a passkey to continue"), "{page}");
    assert!(page.contains("Demo RP asks for a passkey"), "{page}");
    assert!(!page.contains("action=\"/login/mfa\""), "{page}");

    // A garbage answer is refused, spends the ceremony and writes no factor.
    let kept = enrollment_answer(&app, &page, &mut authenticator);
    let mut garbage = kept.clone();
    garbage[3].1 = "{\"id\": \"garbage\"}".to_string();
    let (status, again) =
        text(post_pairs(&b, &app.url("/login/mfa/passkey/register"), &garbage).await).await;
    assert!((400..500).contains(&status), "{status}: {again}");
    assert!(passkeys_of(&app, &user).await.is_empty());
    assert!(app.state.mfa.factors(user.id).await.unwrap().is_empty());

    // The spent ceremony takes no answer, even a good one.
    let (status, again) =
        text(post_pairs(&b, &app.url("/login/mfa/passkey/register"), &kept).await).await;
    assert!((400..500).contains(&status), "{status}: {again}");
    assert!(passkeys_of(&app, &user).await.is_empty());

    // The page's new ceremony adds the passkey, shows the recovery codes, then the code comes.
    let answer = enrollment_answer(&app, &again, &mut authenticator);
    let (status, codes) =
        text(post_pairs(&b, &app.url("/login/mfa/passkey/register"), &answer).await).await;
    assert_eq!(status, 200, "{codes}");
    let passkeys = passkeys_of(&app, &user).await;
    assert_eq!(passkeys.len(), 1);
    assert_eq!(passkeys[0].name, "Laptop");
    assert!(passkeys[0].confirmed_at.is_some());
    assert_eq!(
        app.state.mfa.recovery_codes_left(user.id).await.unwrap(),
        10
    );
    let at_client = past_recovery_codes(&app, &b, &codes).await;
    let id = id_token(&app, &client, &at_client).await;
    assert_eq!(id["acr"], "phr", "{id}");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]), "{id}");
    let kinds = audit_kinds(&app).await;
    assert!(kinds.iter().any(|k| k == "mfa.enrolled"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "mfa.succeeded"), "{kinds:?}");

    // Replaying the answer that worked changes nothing.
    let (status, replay) =
        text(post_pairs(&b, &app.url("/login/mfa/passkey/register"), &answer).await).await;
    assert!((400..500).contains(&status), "{status}: {replay}");
    assert_eq!(passkeys_of(&app, &user).await.len(), 1);

    // A password-only session stepping up to phr enrolls the same way.
    let other = app.create_user("bob@example.com", PASSWORD).await;
    let session = signed_in(&app, &client, &other).await;
    let (status, page) = get_page(&session, &url).await;
    assert_eq!(status, 200, "{page}");
    let answer = enrollment_answer(&app, &page, &mut ResidentPasskey::new());
    let (status, codes) =
        text(post_pairs(&session, &app.url("/login/mfa/passkey/register"), &answer).await).await;
    assert_eq!(status, 200, "{codes}");
    let at_client = past_recovery_codes(&app, &session, &codes).await;
    let id = id_token(&app, &client, &at_client).await;
    assert_eq!(id["acr"], "phr", "{id}");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]), "{id}");
    assert_eq!(passkeys_of(&app, &other).await.len(), 1);
}

#[tokio::test]
async fn a_ceremony_begun_on_one_instance_finishes_on_another() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let settings = test_settings(dir.path(), url);
    let a = TestApp::spawn_localhost(settings.clone(), dir.clone(), Arc::new(SystemClock)).await;
    let mut b = TestApp::spawn_instance(settings, &a.settings.issuer, dir.clone()).await;
    // The same host name as A, so the browser's cookies go to both.
    b.base = b.base.replace("127.0.0.1", "localhost");
    let client = rp(&a).await;
    let user = a.create_user("ada@example.com", PASSWORD).await;
    let session = signed_in(&a, &client, &user).await;

    // Registration: options from A, the answer to B.
    let (csrf, setup) = passkey_setup(&session, &a).await;
    let mut authenticator = ResidentPasskey::new();
    let credential = authenticator.create(&origin(&a), &embedded_options(&setup));
    let finish = [
        ("csrf", csrf.clone()),
        ("ceremony", form_value(&setup, "ceremony").unwrap()),
        ("credential", credential),
    ];
    let (status, page) = text(
        post_pairs(
            &session,
            &b.url("/account/security/passkey/finish"),
            &finish,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(passkeys_of(&a, &user).await.len(), 1);

    // Passwordless: options from B, the answer to A.
    let fresh = browser();
    let (_, login) = get_page(&fresh, &a.url("/login")).await;
    let csrf = form_value(&login, "csrf").unwrap();
    let options: Value = post(&fresh, &b.url("/login/passkey/options"), &[("csrf", &csrf)])
        .await
        .json()
        .await
        .unwrap();
    let credential = authenticator.get(&origin(&a), &options);
    let form = [
        ("csrf", csrf),
        (
            "ceremony",
            options["ceremony"].as_str().unwrap().to_string(),
        ),
        ("credential", credential),
    ];
    let (status, page) = text(post_pairs(&fresh, &a.url("/login/passkey"), &form).await).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You are signed in"), "{page}");
}

#[tokio::test]
async fn hostile_passkey_input_gets_4xx_and_writes_nothing() {
    let app = passkey_app().await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = signed_in(&app, &client, &user).await;
    let (csrf, setup) = passkey_setup(&b, &app).await;
    let ceremony = form_value(&setup, "ceremony").unwrap();
    let long_name = "n".repeat(65);
    let huge = format!("{{\"id\": \"{}\"}}", "a".repeat(5000));
    let (c, cer) = (csrf.as_str(), ceremony.as_str());

    // Registration forms.
    let cases: [(&[(&str, &str)], u16); 7] = [
        (
            &[("csrf", "forged"), ("ceremony", cer), ("credential", "{}")],
            400,
        ),
        (&[("ceremony", cer), ("credential", "{}")], 400),
        (
            &[("csrf", c), ("ceremony", "unknown"), ("credential", "{}")],
            409,
        ),
        (&[("csrf", c), ("credential", "{}")], 409),
        (
            &[("csrf", c), ("ceremony", cer), ("credential", &huge)],
            400,
        ),
        (
            &[("csrf", c), ("ceremony", cer), ("credential", "{not json")],
            409,
        ),
        // The ceremony went with the garbage answer above.
        (&[("csrf", c), ("ceremony", cer), ("credential", "{}")], 409),
    ];
    for (form, expected) in cases {
        let url = app.url("/account/security/passkey/finish");
        let (status, page) = text(post(&b, &url, form).await).await;
        assert_eq!(status, expected, "{form:?}: {page}");
    }
    let (status, page) = text(
        post(
            &b,
            &app.url("/account/security/passkey"),
            &[("csrf", &csrf), ("name", &long_name)],
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("at most 64 characters"), "{page}");
    assert!(
        app.state
            .store
            .list_factors(user.id)
            .await
            .unwrap()
            .is_empty(),
        "no factor was written"
    );
    assert_eq!(app.state.mfa.recovery_codes_left(user.id).await.unwrap(), 0);

    // Passwordless sign-in: unknown ceremonies, garbage, a registration's ceremony.
    let other = text(post(&b, &app.url("/account/security/passkey"), &[("csrf", c)]).await)
        .await
        .1;
    let other = form_value(&other, "ceremony").unwrap();
    let fresh = browser();
    let (_, login) = get_page(&fresh, &app.url("/login")).await;
    let csrf = form_value(&login, "csrf").unwrap();
    let c = csrf.as_str();
    let options: Value = post(&fresh, &app.url("/login/passkey/options"), &[("csrf", c)])
        .await
        .json()
        .await
        .unwrap();
    let live = options["ceremony"].as_str().unwrap();
    let cases: [(&[(&str, &str)], u16); 5] = [
        (
            &[("csrf", "forged"), ("ceremony", live), ("credential", "{}")],
            400,
        ),
        (
            &[("csrf", c), ("ceremony", "unknown"), ("credential", "{}")],
            401,
        ),
        (
            &[("csrf", c), ("ceremony", &other), ("credential", "{}")],
            401,
        ),
        (
            &[("csrf", c), ("ceremony", live), ("credential", "[1, 2")],
            401,
        ),
        (
            &[("csrf", c), ("ceremony", live), ("credential", "{}")],
            401,
        ),
    ];
    for (form, expected) in cases {
        let (status, page) = text(post(&fresh, &app.url("/login/passkey"), form).await).await;
        assert_eq!(status, expected, "{form:?}: {page}");
    }
    assert_eq!(
        fresh
            .get(app.url("/login/passkey/options"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    // The second-factor form: a user with a passkey signs in with the password first.
    let mut authenticator = ResidentPasskey::new();
    add_passkey(&app, &b, &mut authenticator, "Key").await;
    let (b2, page) = password_step(&app, &auth_url(&app, &client, &[]), &user).await;
    let token = form_value(&page, "mfa_token").unwrap();
    let csrf = form_value(&page, "csrf").unwrap();
    let live = form_value(&page, "ceremony").unwrap();
    let (c, t, l) = (csrf.as_str(), token.as_str(), live.as_str());
    let cases: [(&[(&str, &str)], u16); 4] = [
        (
            &[("csrf", "forged"), ("mfa_token", t), ("ceremony", l)],
            400,
        ),
        (
            &[
                ("csrf", c),
                ("mfa_token", "forged"),
                ("ceremony", l),
                ("credential", "{}"),
            ],
            401,
        ),
        (
            &[
                ("csrf", c),
                ("mfa_token", t),
                ("ceremony", "unknown"),
                ("credential", "{}"),
            ],
            401,
        ),
        (
            &[
                ("csrf", c),
                ("mfa_token", t),
                ("ceremony", l),
                ("credential", "garbage"),
            ],
            401,
        ),
    ];
    for (form, expected) in cases {
        let (status, page) = text(post(&b2, &app.url("/login/mfa/passkey"), form).await).await;
        assert_eq!(status, expected, "{form:?}: {page}");
    }
    // The pending sign-in survives all that, and still completes with the passkey.
    let (_, page) = text(
        post(
            &b2,
            &app.url("/login/mfa/passkey"),
            &[("csrf", &csrf), ("mfa_token", &token)],
        )
        .await,
    )
    .await;
    let answer = passkey_answer(&app, &page, &mut authenticator);
    let resp = post_pairs(&b2, &app.url("/login/mfa/passkey"), &answer).await;
    assert_eq!(resp.status(), 303);
}

#[tokio::test]
async fn the_script_is_served_under_the_pages_policy_and_only_offered_where_passkeys_work() {
    let app = passkey_app().await;
    let script = app.get_raw("/static/webauthn.js").await;
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "application/javascript; charset=utf-8"
    );
    assert_eq!(script.headers()["cache-control"], "public, max-age=3600");
    assert!(script
        .text()
        .await
        .unwrap()
        .contains("navigator.credentials"));

    let login = app.get_raw("/login").await;
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = login.text().await.unwrap();
    assert!(html.contains("<script src=\"/static/webauthn.js\" defer></script>"));
    assert!(
        html.contains("data-webauthn-only hidden>Sign in with a passkey"),
        "without the script, the passkey button stays hidden"
    );

    // An issuer on an IP address cannot host WebAuthn: no passkey anywhere, nothing broken.
    let plain = TestApp::spawn().await;
    let html = plain.get_raw("/login").await.text().await.unwrap();
    assert!(!html.contains("webauthn"), "{html}");
    assert!(html.contains("autocomplete=\"username\""));
    let b = browser();
    let (_, login) = get_page(&b, &plain.url("/login")).await;
    let csrf = form_value(&login, "csrf").unwrap();
    let resp = post(&b, &plain.url("/login/passkey/options"), &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), 404);
}

async fn api(app: &TestApp, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.http.post(app.url(path)).json(&body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_first_party_api_adds_a_passkey_and_signs_in_with_it() {
    let app = passkey_app().await;
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Product app".into(),
        redirect_uris: vec!["https://app.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        first_party: true,
        ..Default::default()
    })
    .await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let login = json!({"email": user.email, "password": user.password});
    let (status, tokens) = api(&app, "/auth/login", None, login.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    let bearer = tokens["accessToken"].as_str().unwrap().to_string();

    let (status, started) = api(
        &app,
        "/auth/mfa/passkey",
        Some(&bearer),
        json!({"name": "Phone"}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let mut authenticator = ResidentPasskey::new();
    let credential =
        authenticator.create(&origin(&app), &json!({"publicKey": started["publicKey"]}));
    let confirm = json!({"ceremony": started["ceremony"], "credential": credential});
    let (status, done) = api(
        &app,
        "/auth/mfa/passkey/confirm",
        Some(&bearer),
        confirm.clone(),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["recoveryCodes"].as_array().unwrap().len(), 10);
    let (status, replay) = api(&app, "/auth/mfa/passkey/confirm", Some(&bearer), confirm).await;
    assert_eq!(
        (status, replay["code"].as_str()),
        (422, Some("ceremony_invalid"))
    );
    assert_eq!(passkeys_of(&app, &user).await.len(), 1);

    // The password now asks for a second step, which the passkey answers.
    let (status, pending) = api(&app, "/auth/login", None, login).await;
    assert_eq!(status, 401, "{pending}");
    assert_eq!(pending["code"], "mfa_required");
    assert!(pending["methods"]
        .as_array()
        .unwrap()
        .contains(&json!("passkey")));
    let token = pending["mfaToken"].as_str().unwrap();
    let (status, options) = api(
        &app,
        "/auth/login/mfa/passkey/options",
        None,
        json!({"mfaToken": token}),
    )
    .await;
    assert_eq!(status, 200, "{options}");
    let garbage = json!({"mfaToken": token, "ceremony": options["ceremony"], "credential": "{"});
    let (status, refused) = api(&app, "/auth/login/mfa/passkey", None, garbage).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("passkey_malformed"))
    );

    let (_, options) = api(
        &app,
        "/auth/login/mfa/passkey/options",
        None,
        json!({"mfaToken": token}),
    )
    .await;
    let credential = authenticator.get(&origin(&app), &json!({"publicKey": options["publicKey"]}));
    let answer =
        json!({"mfaToken": token, "ceremony": options["ceremony"], "credential": credential});
    let (status, tokens) = api(&app, "/auth/login/mfa/passkey", None, answer.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    let access = claims(tokens["accessToken"].as_str().unwrap());
    assert_eq!(access["acr"], "phr", "{access}");
    let (status, _) = api(&app, "/auth/login/mfa/passkey", None, answer).await;
    assert_eq!(status, 401, "the sign-in was completed once");
}
