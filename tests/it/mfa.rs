//! Multi-factor sign-in over HTTP: authenticator apps on a clock the test moves (the right
//! code, a wrong one, the steps either side, replays, parallel use), recovery codes, the
//! policies (admins must enroll, clients requiring MFA), step-up with `acr_values` and the
//! `claims` parameter, `amr`/`acr` in every token and after a refresh, the first-party API,
//! and hostile input on the new forms and endpoints.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::clock::ManualClock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{
    api, assert_error, auth_url, browser, code_at, exchange, first_party, form_value, location,
    query, test_settings, unescape, TestApp, TestClient, TestUser, VERIFIER,
};

const PASSWORD: &str = "violet staple kettle";
/// A fixed start, so time steps are known: 1,800,000,000 is a multiple of 30.
const T0: i64 = 1_800_000_000;

async fn app_on_clock(
    tune: impl FnOnce(&mut portcullis::config::Settings),
) -> (TestApp, ManualClock) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = crate::common::fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.accounts.mfa.required_for_roles = vec!["admin".into()];
    tune(&mut settings);
    let clock = ManualClock::new(T0);
    let app = TestApp::spawn_with(settings, dir, Arc::new(clock.clone())).await;
    (app, clock)
}

/// `root@example.com` with the admin role (whom the default policy makes enroll a factor).
async fn admin_user(app: &TestApp) -> TestUser {
    let admin = app.create_user("root@example.com", PASSWORD).await;
    let mut row = app.state.store.get_user(admin.id).await.unwrap().unwrap();
    row.roles = vec!["admin".into()];
    app.state.store.update_user(&row, &[]).await.unwrap();
    admin
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

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn login(app: &TestApp, user: &TestUser) -> (StatusCode, Value) {
    api(
        app,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": user.email, "password": user.password})),
    )
    .await
}

async fn login_mfa(app: &TestApp, token: &str, code: &str) -> (StatusCode, Value) {
    api(
        app,
        Method::POST,
        "/auth/login/mfa",
        None,
        Some(json!({"mfaToken": token, "code": code})),
    )
    .await
}

/// Adds an authenticator app through the API; returns (key, recovery codes).
async fn enroll_totp(app: &TestApp, clock: &ManualClock, user: &TestUser) -> (String, Vec<String>) {
    let (s, tokens) = login(app, user).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let bearer = tokens["accessToken"].as_str().unwrap().to_string();
    let (s, started) = api(
        app,
        Method::POST,
        "/auth/mfa/totp",
        Some(&bearer),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    let secret = started["secret"].as_str().unwrap().to_string();
    assert!(started["otpauthUri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let (s, done) = api(
        app,
        Method::POST,
        "/auth/mfa/totp/confirm",
        Some(&bearer),
        Some(json!({"code": code_at(&secret, clock_now(clock))})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let codes: Vec<String> = done["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

fn clock_now(clock: &ManualClock) -> i64 {
    use portcullis::clock::Clock;
    clock.now()
}

async fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let got = login(app, user).await;
    assert_error(&got, 401, "mfa_required");
    got.1["mfaToken"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn authenticator_app_codes_work_once_within_one_step_of_skew() {
    let (app, clock) = app_on_clock(|_| {}).await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (secret, codes) = enroll_totp(&app, &clock, &user).await;
    assert_eq!(codes.len(), 10, "ten recovery codes at the first factor");
    clock.advance(120);
    let now = clock_now(&clock);

    // The password alone no longer signs in.
    let got = login(&app, &user).await;
    assert_error(&got, 401, "mfa_required");
    let methods: Vec<&str> = got.1["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(methods, ["totp", "recovery_code"]);
    let token = got.1["mfaToken"].as_str().unwrap().to_string();

    // A wrong code, and codes two steps away, fail without spending the sign-in.
    assert_error(
        &login_mfa(&app, &token, "000000").await,
        401,
        "invalid_code",
    );
    assert_error(
        &login_mfa(&app, &token, &code_at(&secret, now - 60)).await,
        401,
        "invalid_code",
    );
    assert_error(
        &login_mfa(&app, &token, &code_at(&secret, now + 60)).await,
        401,
        "invalid_code",
    );

    // The previous step is accepted...
    let (s, tokens) = login_mfa(&app, &token, &code_at(&secret, now - 30)).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let at = claims(tokens["accessToken"].as_str().unwrap());
    assert_eq!(at["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(at["acr"], "mfa");
    // ...and the sign-in it completed is spent.
    assert_error(
        &login_mfa(&app, &token, &code_at(&secret, now)).await,
        401,
        "mfa_token_invalid",
    );

    // The same code again is a replay; the next step works; then the current one is stale.
    let token = mfa_token(&app, &user).await;
    assert_error(
        &login_mfa(&app, &token, &code_at(&secret, now - 30)).await,
        401,
        "invalid_code",
    );
    let (s, body) = login_mfa(&app, &token, &code_at(&secret, now + 30)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = mfa_token(&app, &user).await;
    assert_error(
        &login_mfa(&app, &token, &code_at(&secret, now)).await,
        401,
        "invalid_code",
    );

    // The audit trail has the enrollment, the failures and the successes.
    let events = app
        .state
        .store
        .recent_audit(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect::<Vec<_>>();
    for kind in ["mfa.enrolled", "mfa.failed", "mfa.succeeded"] {
        assert!(events.iter().any(|k| k == kind), "{kind} in {events:?}");
    }
}

#[tokio::test]
async fn one_code_sent_twice_in_parallel_signs_in_once() {
    let (app, clock) = app_on_clock(|_| {}).await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (secret, _) = enroll_totp(&app, &clock, &user).await;
    clock.advance(90);
    let code = code_at(&secret, clock_now(&clock));
    let (a, b) = (mfa_token(&app, &user).await, mfa_token(&app, &user).await);
    let (ra, rb) = tokio::join!(login_mfa(&app, &a, &code), login_mfa(&app, &b, &code));
    let wins = [ra.0, rb.0]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert_eq!(wins, 1, "exactly one of {:?} / {:?}", ra, rb);
    let loser = if ra.0 == StatusCode::OK { rb } else { ra };
    assert_error(&loser, 401, "invalid_code");
}

#[tokio::test]
async fn recovery_codes_work_once_and_regeneration_replaces_them() {
    let (app, clock) = app_on_clock(|_| {}).await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (secret, codes) = enroll_totp(&app, &clock, &user).await;

    let token = mfa_token(&app, &user).await;
    let (s, tokens) = login_mfa(&app, &token, &codes[0].to_uppercase()).await;
    assert_eq!(s, StatusCode::OK, "case does not matter: {tokens}");
    let token = mfa_token(&app, &user).await;
    assert_error(
        &login_mfa(&app, &token, &codes[0]).await,
        401,
        "invalid_code",
    );
    let (s, _) = login_mfa(&app, &token, &codes[1]).await;
    assert_eq!(s, StatusCode::OK);

    // Using one is audited and mailed.
    let kinds: Vec<String> = app
        .state
        .store
        .recent_audit(50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.iter().any(|k| k == "mfa.recovery_code_used"),
        "{kinds:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mails = std::fs::read_dir(&app.settings.mail.outbox_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert!(
        mails.iter().any(|m| m.contains("Security change on your")),
        "a mail tells the owner"
    );

    // Regenerating (a recent sign-in) makes ten new codes; the old ones stop working.
    clock.advance(30);
    let token = mfa_token(&app, &user).await;
    let (_, tokens) = login_mfa(&app, &token, &code_at(&secret, clock_now(&clock))).await;
    let bearer = tokens["accessToken"].as_str().unwrap();
    let (s, fresh) = api(
        &app,
        Method::POST,
        "/auth/mfa/recovery-codes",
        Some(bearer),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{fresh}");
    let fresh: Vec<String> = fresh["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(fresh.len(), 10);
    let token = mfa_token(&app, &user).await;
    assert_error(
        &login_mfa(&app, &token, &codes[2]).await,
        401,
        "invalid_code",
    );
    let (s, _) = login_mfa(&app, &token, &fresh[0]).await;
    assert_eq!(s, StatusCode::OK);

    let (s, list) = api(&app, Method::GET, "/auth/mfa", Some(bearer), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["recoveryCodesLeft"], 9);
    assert_eq!(list["factors"][0]["kind"], "totp");
}

#[tokio::test]
async fn factor_changes_need_a_recent_sign_in_and_admins_can_reset() {
    let (app, clock) = app_on_clock(|s| s.accounts.mfa.reauth_max_age_secs = 60).await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (secret, _) = enroll_totp(&app, &clock, &user).await;
    clock.advance(30);
    let token = mfa_token(&app, &user).await;
    let (_, tokens) = login_mfa(&app, &token, &code_at(&secret, clock_now(&clock))).await;
    let bearer = tokens["accessToken"].as_str().unwrap().to_string();
    let (_, list) = api(&app, Method::GET, "/auth/mfa", Some(&bearer), None).await;
    let id = list["factors"][0]["id"].as_str().unwrap().to_string();

    // 90 seconds later the sign-in is too old (here: 60 s) to change factors.
    clock.advance(90);
    let stale = api(
        &app,
        Method::DELETE,
        &format!("/auth/mfa/{id}"),
        Some(&bearer),
        None,
    )
    .await;
    assert_error(&stale, 403, "reauthentication_required");
    assert_error(
        &api(
            &app,
            Method::DELETE,
            "/auth/mfa/not-a-uuid",
            Some(&bearer),
            None,
        )
        .await,
        400,
        "invalid_request",
    );

    // An admin resets them (the user is no admin: the same call is refused).
    let mine = api(
        &app,
        Method::DELETE,
        &format!("/users/{}/mfa", user.id),
        Some(&bearer),
        None,
    )
    .await;
    assert_error(&mine, 403, "forbidden");
    let admin = admin_user(&app).await;
    // The admin has no factor, and the policy makes admins enroll before any token.
    let got = login(&app, &admin).await;
    assert_error(&got, 401, "mfa_enrollment_required");
    let pending = got.1["mfaToken"].as_str().unwrap().to_string();
    let (s, started) = api(
        &app,
        Method::POST,
        "/auth/mfa/totp",
        None,
        Some(json!({"mfaToken": pending})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    let admin_key = started["secret"].as_str().unwrap();
    let (s, admin_tokens) = login_mfa(&app, &pending, &code_at(admin_key, clock_now(&clock))).await;
    assert_eq!(s, StatusCode::OK, "{admin_tokens}");
    assert_eq!(admin_tokens["recoveryCodes"].as_array().unwrap().len(), 10);
    let admin_bearer = admin_tokens["accessToken"].as_str().unwrap();
    let (s, reset) = api(
        &app,
        Method::DELETE,
        &format!("/users/{}/mfa", user.id),
        Some(admin_bearer),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{reset}");
    assert_eq!(reset["removed"], 1);
    let (s, _) = login(&app, &user).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "no factor left: the password signs in again"
    );

    // The admin's only factor cannot be removed: the policy needs one.
    let (_, list) = api(&app, Method::GET, "/auth/mfa", Some(admin_bearer), None).await;
    assert_eq!(list["required"], true);
    let id = list["factors"][0]["id"].as_str().unwrap();
    let last = api(
        &app,
        Method::DELETE,
        &format!("/auth/mfa/{id}"),
        Some(admin_bearer),
        None,
    )
    .await;
    assert_error(&last, 409, "last_factor");
}

/// Follows an authorization URL through the hosted pages, entering `code(page html)` on
/// the second-factor page; returns the client redirect or the page it stopped at.
async fn through_pages(
    app: &TestApp,
    b: &reqwest::Client,
    url: &str,
    user: &TestUser,
    code: &dyn Fn(&str) -> String,
) -> Result<url::Url, (u16, String)> {
    let mut next = b.get(url).send().await.unwrap();
    for _ in 0..10 {
        let status = next.status().as_u16();
        if status == 303 || status == 302 {
            let to = location(&next).unwrap();
            if !to.as_str().starts_with(&app.base) {
                return Ok(to);
            }
            next = b.get(to).send().await.unwrap();
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
            next = b.post(app.url("/login")).form(&form).send().await.unwrap();
        } else if html.contains("action=\"/login/mfa\"") && !html.contains("role=\"alert\"") {
            let form = [
                ("csrf", form_value(&html, "csrf").unwrap()),
                ("mfa_token", form_value(&html, "mfa_token").unwrap()),
                ("code", code(&html)),
            ];
            next = b
                .post(app.url("/login/mfa"))
                .form(&form)
                .send()
                .await
                .unwrap();
        } else if html.contains("id=\"recovery-codes\"") {
            let href = html
                .split("class=\"btn btn-primary btn-block\" href=\"")
                .nth(1)
                .unwrap();
            let href = unescape(href.split('"').next().unwrap());
            next = b.get(href).send().await.unwrap();
        } else if html.contains("action=\"/consent\"") {
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
        } else {
            return Err((status, html));
        }
    }
    panic!("too many hops");
}

/// The key shown on an enrollment page.
fn shown_key(html: &str) -> String {
    let after = html
        .split("id=\"totp-key\">")
        .nth(1)
        .expect("the key is shown");
    after.split('<').next().unwrap().to_string()
}

#[tokio::test]
async fn an_admin_without_a_factor_enrolls_on_the_hosted_pages_before_any_session() {
    let (app, clock) = app_on_clock(|_| {}).await;
    let client = rp(&app, false).await;
    let admin = admin_user(&app).await;

    let b = browser();
    let url = auth_url(&app, &client, &[("scope", "openid email offline_access")]);
    // Stop at the enrollment page first, to look at it.
    let resp = b.get(&url).send().await.unwrap();
    let html = resp.text().await.unwrap();
    let form = [
        ("csrf", form_value(&html, "csrf").unwrap()),
        ("return_to", form_value(&html, "return_to").unwrap()),
        ("username", admin.email.clone()),
        ("password", admin.password.clone()),
    ];
    let resp = b.post(app.url("/login")).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().contains("portcullis-session")),
        "no session before the second factor"
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("Set up a second factor"), "{html}");
    assert!(html.contains("<svg"), "a QR code, rendered by the server");
    assert!(html.contains("name=\"code\""));
    let key = shown_key(&html);

    // A wrong first code shows the same key again.
    let bad = [
        ("csrf", form_value(&html, "csrf").unwrap()),
        ("mfa_token", form_value(&html, "mfa_token").unwrap()),
        ("code", "123456".to_string()),
    ];
    let resp = b
        .post(app.url("/login/mfa"))
        .form(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let again = resp.text().await.unwrap();
    assert_eq!(shown_key(&again), key, "the key already scanned stays");

    let now = clock_now(&clock);
    let to = through_pages(&app, &b, &url, &admin, &|html| {
        if html.contains("totp-key") {
            code_at(&shown_key(html), now)
        } else {
            code_at(&key, now)
        }
    })
    .await
    .expect("ends at the client");
    let code = query(&to, "code").unwrap();
    let (s, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(s, 200, "{tokens}");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "mfa");
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["acr"], "mfa");

    // A refresh keeps how the user signed in.
    let (s, refreshed) = crate::common::post_form(
        &app,
        "/token",
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{refreshed}");
    let id = claims(refreshed["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "mfa");
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["acr"],
        "mfa"
    );
}

#[tokio::test]
async fn step_up_with_acr_values_a_client_requiring_mfa_and_prompt_none() {
    let (app, clock) = app_on_clock(|_| {}).await;
    first_party(&app).await;
    let plain = rp(&app, false).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;

    // A password-only session (no factor yet): acr 1fa.
    let b = browser();
    let to = through_pages(
        &app,
        &b,
        &auth_url(&app, &plain, &[]),
        &user,
        &|_| unreachable!(),
    )
    .await
    .unwrap();
    let (_, _, tokens) = exchange(&app, &plain, &query(&to, "code").unwrap(), VERIFIER).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["acr"], "1fa");

    // prompt=none cannot step up.
    let none = b
        .get(auth_url(
            &app,
            &plain,
            &[("acr_values", "mfa"), ("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    let to = location(&none).unwrap();
    assert_eq!(query(&to, "error").as_deref(), Some("interaction_required"));

    // An essential acr nobody supports is a failed authentication (OIDC Core §5.5.1.1).
    let claims_param =
        json!({"id_token": {"acr": {"essential": true, "values": ["gold"]}}}).to_string();
    let unmet = b
        .get(auth_url(&app, &plain, &[("claims", &claims_param)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(&location(&unmet).unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    let broken = b
        .get(auth_url(&app, &plain, &[("claims", "{not json")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(&location(&broken).unwrap(), "error").as_deref(),
        Some("invalid_request")
    );

    // The user adds an app; acr_values=mfa then asks the signed-in browser for a code.
    let (secret, _) = enroll_totp(&app, &clock, &user).await;
    clock.advance(30);
    let now = clock_now(&clock);
    let to = through_pages(
        &app,
        &b,
        &auth_url(&app, &plain, &[("acr_values", "mfa")]),
        &user,
        &|html| {
            assert!(
                html.contains("asks you to confirm with a second factor"),
                "{html}"
            );
            code_at(&secret, now)
        },
    )
    .await
    .unwrap();
    let (_, _, tokens) = exchange(&app, &plain, &query(&to, "code").unwrap(), VERIFIER).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "mfa");
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));

    // The essential-claim form of the same request is satisfied by the stepped-up session.
    let claims_param =
        json!({"id_token": {"acr": {"essential": true, "values": ["mfa"]}}}).to_string();
    let resp = b
        .get(auth_url(
            &app,
            &plain,
            &[("claims", &claims_param), ("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    assert!(query(&location(&resp).unwrap(), "code").is_some());

    // A client that requires MFA: a fresh browser signs in with password and code.
    let strict = rp(&app, true).await;
    clock.advance(30);
    let now = clock_now(&clock);
    let other = browser();
    let to = through_pages(&app, &other, &auth_url(&app, &strict, &[]), &user, &|_| {
        code_at(&secret, now)
    })
    .await
    .unwrap();
    let (_, _, tokens) = exchange(&app, &strict, &query(&to, "code").unwrap(), VERIFIER).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["acr"], "mfa");

    // Discovery lists the acr values.
    let (_, _, meta) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(meta["acr_values_supported"], json!(["phr", "mfa", "1fa"]));
    assert_eq!(meta["claims_parameter_supported"], true);
}

#[tokio::test]
async fn a_client_requiring_mfa_makes_a_user_without_a_factor_enroll() {
    let (app, clock) = app_on_clock(|_| {}).await;
    let strict = rp(&app, true).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();
    let now = clock_now(&clock);
    let to = through_pages(&app, &b, &auth_url(&app, &strict, &[]), &user, &|html| {
        assert!(html.contains("Demo RP asks for a second factor"), "{html}");
        code_at(&shown_key(html), now)
    })
    .await
    .expect("ends at the client");
    let (_, _, tokens) = exchange(&app, &strict, &query(&to, "code").unwrap(), VERIFIER).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["acr"], "mfa");
}

#[tokio::test]
async fn hostile_input_on_the_second_factor_form_and_api_gets_4xx() {
    let (app, clock) = app_on_clock(|_| {}).await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    enroll_totp(&app, &clock, &user).await;

    // The form without CSRF, without a token, with a forged token, with junk.
    let b = browser();
    let page = b
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&page, "csrf").unwrap();
    let long = "9".repeat(5000);
    for form in [
        vec![("mfa_token", "x"), ("code", "123456")],
        vec![("csrf", csrf.as_str()), ("code", "123456")],
        vec![
            ("csrf", csrf.as_str()),
            ("mfa_token", "forged"),
            ("code", "123456"),
        ],
        vec![
            ("csrf", csrf.as_str()),
            ("mfa_token", long.as_str()),
            ("code", long.as_str()),
        ],
        vec![
            ("csrf", csrf.as_str()),
            ("mfa_token", "\u{0}\u{1}"),
            ("code", "<script>"),
        ],
    ] {
        let resp = b
            .post(app.url("/login/mfa"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        assert!((400..500).contains(&s) || s == 200, "{form:?}: {s}");
        assert!(
            s != 200 || resp.text().await.unwrap().contains("Sign in again"),
            "{form:?}"
        );
    }
    let resp = b
        .post(app.url("/login/mfa"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The API: bad JSON, missing fields, oversized fields, a forged token, junk codes.
    let raw = app
        .http
        .post(app.url("/auth/login/mfa"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_error(
        &api(
            &app,
            Method::POST,
            "/auth/login/mfa",
            None,
            Some(json!({"code": "1"})),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &api(
            &app,
            Method::POST,
            "/auth/login/mfa",
            None,
            Some(json!({"mfaToken": "x".repeat(500), "code": "1"})),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &login_mfa(&app, "forged", "123456").await,
        401,
        "mfa_token_invalid",
    );
    let token = mfa_token(&app, &user).await;
    for junk in [
        "",
        "abc",
        "12345678901234567890",
        "１２３４５６",
        "' OR 1=1 --",
    ] {
        assert_error(&login_mfa(&app, &token, junk).await, 401, "invalid_code");
    }
    // The budget (5 per 5 minutes) ran out: further tries are refused before any check.
    let limited = login_mfa(&app, &token, "000000").await;
    assert_error(&limited, 429, "rate_limited");
    assert_error(
        &api(&app, Method::POST, "/auth/mfa/totp", None, Some(json!({}))).await,
        401,
        "invalid_token",
    );
    assert_error(
        &api(&app, Method::GET, "/auth/mfa", None, None).await,
        401,
        "invalid_token",
    );

    // Nothing half-written: one confirmed factor, no stray enrollment.
    let factors = app.state.store.list_factors(user.id).await.unwrap();
    assert_eq!(factors.len(), 1);
    assert!(factors[0].confirmed_at.is_some());
}

#[tokio::test]
async fn the_security_page_adds_and_removes_an_app_after_a_recent_sign_in() {
    let (app, clock) = app_on_clock(|s| s.accounts.mfa.reauth_max_age_secs = 60).await;
    let client = rp(&app, false).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let b = browser();

    // Signed out, the page asks for a sign-in that comes back here.
    let html = b
        .get(app.url("/account/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        form_value(&html, "return_to").as_deref(),
        Some("/account/security")
    );

    through_pages(
        &app,
        &b,
        &auth_url(&app, &client, &[]),
        &user,
        &|_| unreachable!(),
    )
    .await
    .unwrap();
    let html = b
        .get(app.url("/account/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("None yet"), "{html}");
    let csrf = form_value(&html, "csrf").unwrap();

    let setup = b
        .post(app.url("/account/security/totp"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(setup.contains("<svg"));
    let key = shown_key(&setup);
    let wrong = b
        .post(app.url("/account/security/totp/confirm"))
        .form(&[("csrf", csrf.as_str()), ("code", "000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);
    assert_eq!(shown_key(&wrong.text().await.unwrap()), key);
    let done = b
        .post(app.url("/account/security/totp/confirm"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", &code_at(&key, clock_now(&clock))),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("id=\"recovery-codes\""), "{done}");
    let html = b
        .get(app.url("/account/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Authenticator app") && html.contains("10 unused"),
        "{html}"
    );
    let id = form_value(&html, "id").unwrap();

    // Two minutes later, removing it needs a new sign-in (with the new factor).
    clock.advance(120);
    let stale = b
        .post(app.url("/account/security/remove"))
        .form(&[("csrf", csrf.as_str()), ("id", id.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stale.contains("Sign in again"), "{stale}");
    assert_eq!(
        app.state.store.list_factors(user.id).await.unwrap().len(),
        1
    );
    let removed = b
        .post(app.url("/account/security/remove"))
        .form(&[("csrf", "forged"), ("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 400, "CSRF is checked");
    assert_eq!(
        app.state.store.list_factors(user.id).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn essential_values_claims_sub_rp_tokens_and_ended_sessions() {
    let (app, clock) = app_on_clock(|_| {}).await;
    first_party(&app).await;
    let plain = rp(&app, false).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;

    // A password-only session, then the user adds an app through the product's own app.
    let b = browser();
    through_pages(
        &app,
        &b,
        &auth_url(&app, &plain, &[]),
        &user,
        &|_| unreachable!(),
    )
    .await
    .unwrap();
    let (secret, _) = enroll_totp(&app, &clock, &user).await;
    clock.advance(30);

    // A step-up page left open after the session ended mints nothing.
    let page = b
        .get(auth_url(&app, &plain, &[("acr_values", "mfa")]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/login/mfa\""), "{page}");
    app.state
        .store
        .sign_out_everywhere(user.id, clock_now(&clock))
        .await
        .unwrap();
    let form = [
        ("csrf", form_value(&page, "csrf").unwrap()),
        ("mfa_token", form_value(&page, "mfa_token").unwrap()),
        ("code", code_at(&secret, clock_now(&clock))),
    ];
    let resp = b
        .post(app.url("/login/mfa"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(html.contains("Sign in again"), "{html}");

    // Sign in again (password and code): acr mfa.
    clock.advance(30);
    let now = clock_now(&clock);
    let to = through_pages(&app, &b, &auth_url(&app, &plain, &[]), &user, &|_| {
        code_at(&secret, now)
    })
    .await
    .unwrap();
    let (_, _, tokens) = exchange(&app, &plain, &query(&to, "code").unwrap(), VERIFIER).await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["acr"], "mfa");

    // An essential acr is answered with one of the values asked for (OIDC Core §5.5.1.1).
    let essential =
        json!({"id_token": {"acr": {"essential": true, "values": ["1fa"]}}}).to_string();
    let resp = b
        .get(auth_url(
            &app,
            &plain,
            &[("claims", &essential), ("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    let code = query(&location(&resp).unwrap(), "code").expect("a code");
    let (_, _, one) = exchange(&app, &plain, &code, VERIFIER).await;
    assert_eq!(claims(one["id_token"].as_str().unwrap())["acr"], "1fa");

    // A `sub` requested through claims that is someone else needs another sign-in (§5.5.1).
    let other = json!({"id_token": {"sub": {"value": "someone-else"}}}).to_string();
    let resp = b
        .get(auth_url(
            &app,
            &plain,
            &[("claims", &other), ("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(&location(&resp).unwrap(), "error").as_deref(),
        Some("login_required")
    );

    // A relying party's access token cannot manage the user's factors.
    let rp_token = tokens["access_token"].as_str().unwrap();
    let got = api(
        &app,
        Method::POST,
        "/auth/mfa/recovery-codes",
        Some(rp_token),
        None,
    )
    .await;
    assert_error(&got, 403, "forbidden");
    assert_error(
        &api(&app, Method::GET, "/auth/mfa", Some(rp_token), None).await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn with_mfa_switched_off_a_client_requiring_it_gets_no_tokens() {
    let (app, _clock) = app_on_clock(|s| s.accounts.mfa.enabled = false).await;
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Product app".into(),
        redirect_uris: vec!["https://app.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        first_party: true,
        require_mfa: true,
        ..Default::default()
    })
    .await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    assert_error(&login(&app, &user).await, 403, "mfa_disabled");
}

#[tokio::test]
async fn a_hundred_wrong_codes_in_a_row_lock_the_factor_until_an_admin_resets_it() {
    // With the rate limits off, only the consecutive-failure count (NIST SP 800-63B §5.2.2)
    // stands between a guesser and the code.
    let (app, clock) = app_on_clock(|s| s.rate_limits.enabled = false).await;
    first_party(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (secret, _) = enroll_totp(&app, &clock, &user).await;
    clock.advance(30);
    let token = mfa_token(&app, &user).await;
    // A success in between starts the count again.
    for _ in 0..60 {
        assert_error(
            &login_mfa(&app, &token, "000000").await,
            401,
            "invalid_code",
        );
    }
    let (s, _) = login_mfa(&app, &token, &code_at(&secret, clock_now(&clock))).await;
    assert_eq!(s, StatusCode::OK);
    let token = mfa_token(&app, &user).await;
    for _ in 0..100 {
        assert_error(
            &login_mfa(&app, &token, "000000").await,
            401,
            "invalid_code",
        );
    }
    clock.advance(30);
    let right = code_at(&secret, clock_now(&clock));
    assert_error(&login_mfa(&app, &token, &right).await, 403, "mfa_locked");
    let kinds: Vec<String> = app
        .state
        .store
        .recent_audit(20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "mfa.locked"), "{kinds:?}");

    // An admin's reset clears the lock with the factors.
    let admin = admin_user(&app).await;
    let got = login(&app, &admin).await;
    let pending = got.1["mfaToken"].as_str().unwrap().to_string();
    let (_, started) = api(
        &app,
        Method::POST,
        "/auth/mfa/totp",
        None,
        Some(json!({"mfaToken": pending})),
    )
    .await;
    let (_, admin_tokens) = login_mfa(
        &app,
        &pending,
        &code_at(started["secret"].as_str().unwrap(), clock_now(&clock)),
    )
    .await;
    let bearer = admin_tokens["accessToken"].as_str().unwrap();
    let (s, _) = api(
        &app,
        Method::DELETE,
        &format!("/users/{}/mfa", user.id),
        Some(bearer),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.state.store.mfa_failures(user.id).await.unwrap(), 0);
    let (s, _) = login(&app, &user).await;
    assert_eq!(s, StatusCode::OK);
}
