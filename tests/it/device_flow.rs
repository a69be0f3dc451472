//! The device authorization grant (RFC 8628) end to end: a device (the `openidconnect` crate,
//! or plain requests) polls the token endpoint while a person approves on `/device` in a
//! cookie-keeping browser; every error code of §3.5; redemption exactly once; throttled
//! guessing; hostile input.

use std::sync::Arc;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, DeviceAuthorizationUrl, IssuerUrl, Nonce,
    OAuth2TokenResponse, ProviderMetadata, Scope, TokenResponse,
};
use portcullis::clients::ClientRegistration;
use portcullis::clock::ManualClock;
use portcullis::limiter::Policy;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{
    app_with, browser, code_at, form_value, location, test_settings, unescape, TestApp, TestClient,
    TestUser,
};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A page form's fields.
type Form = Vec<(&'static str, String)>;

async fn device_client(app: &TestApp) -> TestClient {
    app.register_client(ClientRegistration {
        name: "Living-room TV".into(),
        grant_types: vec!["device_code".into(), "refresh_token".into()],
        scope: Some("openid profile email offline_access".into()),
        public: true,
        ..Default::default()
    })
    .await
}

/// A form POST as the client authenticates: Basic for a confidential client, `client_id` in
/// the body for a public one. (status, JSON body or null)
async fn client_post(
    app: &TestApp,
    path: &str,
    client: &TestClient,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = app.http.post(app.url(path));
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    match &client.secret {
        Some(secret) => req = req.basic_auth(&client.id, Some(secret)),
        None => fields.push(("client_id", &client.id)),
    }
    let resp = req.form(&fields).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn authorize_device(app: &TestApp, client: &TestClient, scope: &str) -> Value {
    let (status, body) =
        client_post(app, "/device_authorization", client, &[("scope", scope)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn poll(app: &TestApp, client: &TestClient, device_code: &str) -> (u16, Value) {
    client_post(
        app,
        "/token",
        client,
        &[("grant_type", GRANT), ("device_code", device_code)],
    )
    .await
}

fn assert_oauth_error(got: &(u16, Value), status: u16, error: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], error, "{}", got.1);
    assert!(got.1["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

/// A person on the verification page: opens `url` (the form, filled in), continues, signs in
/// when asked, and answers the consent page with `decision`. The final (status, page).
async fn decide_on_device_page(
    app: &TestApp,
    b: &reqwest::Client,
    url: &str,
    user: &TestUser,
    decision: &str,
) -> (u16, String) {
    let consent = consent_page(app, b, url, user).await;
    answer_consent(app, b, &consent, decision).await
}

/// Opens `url`, continues with the code it filled in, signs in when asked: the consent page.
async fn consent_page(app: &TestApp, b: &reqwest::Client, url: &str, user: &TestUser) -> String {
    let resp = submit_code_form(app, b, url).await;
    let mut html = resp.text().await.unwrap();
    if html.contains("action=\"/login\"") {
        let form = [
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", form_value(&html, "return_to").unwrap()),
            ("username", user.email.clone()),
            ("password", user.password.clone()),
        ];
        let resp = b.post(app.url("/login")).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
        let back = location(&resp).unwrap();
        assert_eq!(back.path(), "/device/confirm");
        html = b.get(back).send().await.unwrap().text().await.unwrap();
    }
    assert!(html.contains("action=\"/device/confirm\""), "{html}");
    html
}

/// Allow or deny on a consent page: (status, page).
async fn answer_consent(
    app: &TestApp,
    b: &reqwest::Client,
    html: &str,
    decision: &str,
) -> (u16, String) {
    let form = [
        ("csrf", form_value(html, "csrf").unwrap()),
        ("user_code", form_value(html, "user_code").unwrap()),
        ("decision", decision.to_string()),
    ];
    let resp = b
        .post(app.url("/device/confirm"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn ada(app: &TestApp) -> TestUser {
    app.create_user("ada@example.org", "correct horse battery")
        .await
}

// The discovery document with RFC 8628 §4's member, for the `openidconnect` client.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceEndpoint {
    device_authorization_endpoint: DeviceAuthorizationUrl,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}
type DeviceProviderMetadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[tokio::test]
async fn a_device_polls_while_its_user_signs_in_and_approves_in_a_browser() {
    let app = app_with(|s| s.device.interval_secs = 1).await;
    let client = device_client(&app).await;
    let user = ada(&app).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        DeviceProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let endpoint = metadata
        .additional_metadata()
        .device_authorization_endpoint
        .clone();
    assert_eq!(endpoint.as_str(), app.url("/device_authorization"));
    let rp = CoreClient::from_provider_metadata(metadata, ClientId::new(client.id.clone()), None)
        .set_device_authorization_url(endpoint);
    let details: CoreDeviceAuthorizationResponse = rp
        .exchange_device_code()
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .expect("device authorization");
    assert_eq!(details.verification_uri().as_str(), app.url("/device"));
    let code = details.user_code().secret().clone();
    assert_eq!(code.len(), 9);
    assert_eq!(code.as_bytes()[4], b'-');
    assert!(code
        .chars()
        .filter(|c| *c != '-')
        .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
    let complete = details
        .verification_uri_complete()
        .expect("verification_uri_complete")
        .secret()
        .clone();
    assert_eq!(details.expires_in().as_secs(), 600);
    assert_eq!(details.interval().as_secs(), 1);

    // The page behind verification_uri_complete has the code filled in.
    let b = browser();
    let page = b.get(&complete).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"user_code\""));
    assert_eq!(
        form_value(&html, "user_code").as_deref(),
        Some(code.as_str())
    );

    let device = async {
        rp.exchange_device_access_token(&details)
            .unwrap()
            .request_async(&http, tokio::time::sleep, None)
            .await
            .expect("tokens after approval")
    };
    let person = async {
        // Let the device poll a few times first.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        decide_on_device_page(&app, &b, &complete, &user, "allow").await
    };
    let (tokens, (status, page)) = tokio::join!(device, person);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You may return to your device"), "{page}");

    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), user.id.to_string());
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.org"));
    assert!(claims.auth_time().is_some());
    let raw: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_value(id_token)
                .unwrap()
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]));
    assert_eq!(raw["acr"], "1fa");
    assert!(raw["sid"].as_str().is_some_and(|s| !s.is_empty()), "{raw}");
    assert!(raw.get("nonce").is_none());
    let refresh = tokens
        .refresh_token()
        .expect("a refresh token (offline_access)");

    // The refresh token works like any other, bound to the approving session.
    let (status, refreshed) = client_post(
        &app,
        "/token",
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.secret()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");

    // The approval is remembered as a consent, audited and counted.
    let consent = app
        .state
        .store
        .get_consent(user.id, &client.id)
        .await
        .unwrap();
    assert!(consent.is_some_and(|s| s.contains("offline_access")));
    let kinds: Vec<String> = app
        .state
        .store
        .recent_audit(50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"device.issued".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"device.approved".to_string()), "{kinds:?}");
    let metrics = app.state.metrics.render(&[]);
    assert!(metrics.contains("portcullis_device_codes_total{event=\"issued\"} 1"));
    assert!(metrics.contains("portcullis_device_codes_total{event=\"approved\"} 1"));

    // The code is spent: entering it again says so, and the device code redeems nothing more.
    let (status, again) = decide_on_device_page_status(&app, &b, &complete).await;
    assert_eq!(status, 410, "{again}");
    assert!(again.contains("already used"), "{again}");
}

/// Submits the pre-filled code form of `url`: (status, page).
async fn decide_on_device_page_status(
    app: &TestApp,
    b: &reqwest::Client,
    url: &str,
) -> (u16, String) {
    let resp = submit_code_form(app, b, url).await;
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Opens `url` (the code form, filled in from it) and submits the form as it is.
async fn submit_code_form(app: &TestApp, b: &reqwest::Client, url: &str) -> reqwest::Response {
    let html = b.get(url).send().await.unwrap().text().await.unwrap();
    let code = form_value(&html, "user_code").expect("the code field");
    b.post(app.url("/device"))
        .form(&[
            ("csrf", form_value(&html, "csrf").expect("csrf")),
            ("user_code", code),
        ])
        .send()
        .await
        .unwrap()
}

async fn manual_app() -> (TestApp, ManualClock) {
    let clock = ManualClock::new(1_900_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    (app, clock)
}

#[tokio::test]
async fn polling_too_fast_slows_down_by_five_seconds_and_the_new_interval_holds() {
    let (app, clock) = manual_app().await;
    let client = device_client(&app).await;
    let started = authorize_device(&app, &client, "openid").await;
    assert_eq!(started["interval"], 5);
    assert_eq!(started["expires_in"], 600);
    let code = started["device_code"].as_str().unwrap();
    assert!(code.len() >= 43, "256 bits");

    assert_oauth_error(
        &poll(&app, &client, code).await,
        400,
        "authorization_pending",
    );
    // At once again: too soon for the 5 s interval.
    let slow = poll(&app, &client, code).await;
    assert_oauth_error(&slow, 400, "slow_down");
    assert!(slow.1["error_description"]
        .as_str()
        .unwrap()
        .contains("10 seconds"));
    // 6 s later would have been fine before; the interval is 10 s now (RFC 8628 §3.5).
    clock.advance(6);
    let slow = poll(&app, &client, code).await;
    assert_oauth_error(&slow, 400, "slow_down");
    assert!(slow.1["error_description"]
        .as_str()
        .unwrap()
        .contains("15 seconds"));
    clock.advance(15);
    assert_oauth_error(
        &poll(&app, &client, code).await,
        400,
        "authorization_pending",
    );
    clock.advance(15);
    assert_oauth_error(
        &poll(&app, &client, code).await,
        400,
        "authorization_pending",
    );
    // RFC 6749 §5.1/§5.2 headers on the error too.
    let resp = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", GRANT),
            ("device_code", code),
            ("client_id", client.id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_denial_answers_access_denied() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    let user = ada(&app).await;
    let started = authorize_device(&app, &client, "openid profile").await;
    let code = started["device_code"].as_str().unwrap();
    let b = browser();
    let (status, page) = decide_on_device_page(
        &app,
        &b,
        started["verification_uri_complete"].as_str().unwrap(),
        &user,
        "deny",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Request denied"), "{page}");
    assert_oauth_error(&poll(&app, &client, code).await, 400, "access_denied");
    assert_oauth_error(&poll(&app, &client, code).await, 400, "access_denied");
    assert!(app
        .state
        .store
        .get_consent(user.id, &client.id)
        .await
        .unwrap()
        .is_none());
    let metrics = app.state.metrics.render(&[]);
    assert!(metrics.contains("portcullis_device_codes_total{event=\"denied\"} 1"));
}

#[tokio::test]
async fn an_expired_device_code_answers_expired_token_and_is_counted_once() {
    let (app, clock) = manual_app().await;
    let client = device_client(&app).await;
    let started = authorize_device(&app, &client, "openid").await;
    let code = started["device_code"].as_str().unwrap();
    clock.advance(600);
    assert_oauth_error(&poll(&app, &client, code).await, 400, "expired_token");
    clock.advance(60);
    assert_oauth_error(&poll(&app, &client, code).await, 400, "expired_token");
    let metrics = app.state.metrics.render(&[]);
    assert!(
        metrics.contains("portcullis_device_codes_total{event=\"expired\"} 1"),
        "{metrics}"
    );
    // The person who comes too late is told so.
    let b = browser();
    let (status, page) = decide_on_device_page_status(
        &app,
        &b,
        started["verification_uri_complete"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
}

#[tokio::test]
async fn an_approval_that_comes_after_expiry_is_refused() {
    let (app, clock) = manual_app().await;
    let client = device_client(&app).await;
    let user = ada(&app).await;
    let started = authorize_device(&app, &client, "openid").await;
    let b = browser();
    // The person reaches the consent page in time...
    let url = started["verification_uri_complete"].as_str().unwrap();
    let consent = consent_page(&app, &b, url, &user).await;
    // ...and allows after the code's lifetime.
    clock.advance(601);
    let (status, page) = answer_consent(&app, &b, &consent, "allow").await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    let code = started["device_code"].as_str().unwrap();
    assert_oauth_error(&poll(&app, &client, code).await, 400, "expired_token");
}

#[tokio::test]
async fn two_parallel_polls_after_approval_yield_one_token_set() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    let user = ada(&app).await;
    for _ in 0..3 {
        let started = authorize_device(&app, &client, "openid offline_access").await;
        let code = started["device_code"].as_str().unwrap();
        let (status, page) = decide_on_device_page(
            &app,
            &browser(),
            started["verification_uri_complete"].as_str().unwrap(),
            &user,
            "allow",
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let (a, b) = tokio::join!(poll(&app, &client, code), poll(&app, &client, code));
        let won: Vec<&(u16, Value)> = [&a, &b].into_iter().filter(|r| r.0 == 200).collect();
        assert_eq!(won.len(), 1, "exactly one token set: {a:?} {b:?}");
        assert!(won[0].1["access_token"].is_string() && won[0].1["refresh_token"].is_string());
        let lost = if a.0 == 200 { &b } else { &a };
        assert_oauth_error(lost, 400, "invalid_grant");
        assert_oauth_error(&poll(&app, &client, code).await, 400, "invalid_grant");
    }
}

#[tokio::test]
async fn a_device_code_of_another_client_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let tv = device_client(&app).await;
    let other = app
        .register_client(ClientRegistration {
            name: "Other console".into(),
            grant_types: vec!["urn:ietf:params:oauth:grant-type:device_code".into()],
            ..Default::default()
        })
        .await;
    assert!(other.secret.is_some(), "a confidential client");
    let started = authorize_device(&app, &tv, "openid").await;
    let code = started["device_code"].as_str().unwrap();
    assert_oauth_error(&poll(&app, &other, code).await, 400, "invalid_grant");
    // The owner's grant is untouched.
    assert_oauth_error(&poll(&app, &tv, code).await, 400, "authorization_pending");
    // Confidential device clients authenticate as at the token endpoint.
    let theirs = authorize_device(&app, &other, "openid").await;
    assert_oauth_error(
        &poll(&app, &other, theirs["device_code"].as_str().unwrap()).await,
        400,
        "authorization_pending",
    );
    let wrong_secret = TestClient {
        id: other.id.clone(),
        secret: Some("not-the-secret".into()),
        redirect_uri: String::new(),
    };
    assert_oauth_error(
        &client_post(
            &app,
            "/device_authorization",
            &wrong_secret,
            &[("scope", "openid")],
        )
        .await,
        401,
        "invalid_client",
    );
}

#[tokio::test]
async fn unknown_garbage_and_missing_device_codes_are_refused() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    for garbage in ["nope", &"x".repeat(4000), "../../etc/passwd", "%00", "ÿ"] {
        assert_oauth_error(&poll(&app, &client, garbage).await, 400, "invalid_grant");
    }
    let missing = client_post(&app, "/token", &client, &[("grant_type", GRANT)]).await;
    assert_oauth_error(&missing, 400, "invalid_request");
    let empty = client_post(
        &app,
        "/token",
        &client,
        &[("grant_type", GRANT), ("device_code", "")],
    )
    .await;
    assert_oauth_error(&empty, 400, "invalid_request");
}

#[tokio::test]
async fn a_client_without_the_grant_is_refused() {
    let app = TestApp::spawn().await;
    let web = app.confidential_client().await;
    let refused = client_post(&app, "/device_authorization", &web, &[("scope", "openid")]).await;
    assert_oauth_error(&refused, 400, "unauthorized_client");
    let polled = poll(&app, &web, "anything").await;
    assert_oauth_error(&polled, 400, "unauthorized_client");
    assert_eq!(issued(&app).await, 0, "nothing was issued");
}

/// How many device codes the audit trail says were issued.
async fn issued(app: &TestApp) -> usize {
    app.state
        .store
        .recent_audit(50)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "device.issued")
        .count()
}

#[tokio::test]
async fn scopes_are_checked_as_at_the_authorization_endpoint() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    for scope in ["openid admin", "openid \"x\"", ""] {
        let got = client_post(&app, "/device_authorization", &client, &[("scope", scope)]).await;
        assert_oauth_error(&got, 400, "invalid_scope");
    }
    let none = client_post(&app, "/device_authorization", &client, &[]).await;
    assert_oauth_error(&none, 400, "invalid_scope");
}

#[tokio::test]
async fn user_code_guessing_is_throttled_per_browser_and_per_ip() {
    let app = app_with(|s| {
        s.device.user_code_browser = Policy {
            limit: 3,
            period_secs: 600,
        };
        s.device.user_code_ip = Policy {
            limit: 5,
            period_secs: 600,
        };
    })
    .await;
    let guess = |b: reqwest::Client| {
        let app = &app;
        async move {
            let html = b
                .get(app.url("/device"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let resp = b
                .post(app.url("/device"))
                .form(&[
                    ("csrf", form_value(&html, "csrf").unwrap()),
                    ("user_code", "BCDF-GHJK".into()),
                ])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.headers().get("retry-after").is_some(),
                resp.text().await.unwrap(),
            )
        }
    };
    let first = browser();
    for _ in 0..3 {
        let (status, _, page) = guess(first.clone()).await;
        assert_eq!(status, 404, "{page}");
        assert!(page.contains("not known"), "{page}");
    }
    let (status, retry_after, _) = guess(first.clone()).await;
    assert_eq!(
        (status, retry_after),
        (429, true),
        "the browser's budget is spent"
    );
    // A fresh browser from the same address has the rest of the address's budget.
    let second = browser();
    assert_eq!(guess(second.clone()).await.0, 404);
    assert_eq!(
        guess(second.clone()).await.0,
        429,
        "the address's budget is spent"
    );
    // The confirmation step counts too.
    let third = browser();
    let resp = third
        .get(app.url("/device/confirm?user_code=BCDFGHJK"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
}

#[tokio::test]
async fn hostile_input_on_the_device_endpoints_gets_4xx_in_the_specs_format() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    let url = app.url("/device_authorization");
    let h = &app.http;
    let id = client.id.as_str();
    let json_cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            h.post(&url).json(&serde_json::json!({"client_id": id})),
            400,
            "invalid_request",
        ),
        (
            h.post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("client_id={id}&client_id={id}")),
            400,
            "invalid_request",
        ),
        (
            h.post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("client_id={id}&scope=%FF%FE")),
            400,
            "invalid_request",
        ),
        (
            h.post(&url).form(&[("client_id", "no-such-client")]),
            401,
            "invalid_client",
        ),
        (
            h.post(&url).form(&[("scope", "openid")]),
            401,
            "invalid_client",
        ),
        (
            h.post(&url)
                .header("authorization", "Basic %%%")
                .form(&[("scope", "openid")]),
            401,
            "invalid_client",
        ),
        (
            h.post(&url)
                .form(&[("client_id", id), ("scope", &"openid ".repeat(2000))]),
            400,
            "invalid_request",
        ),
    ];
    for (req, status, error) in json_cases {
        let resp = req.send().await.unwrap();
        let got_status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got_status, body["error"].as_str()),
            (status, Some(error)),
            "{body}"
        );
    }
    let get = h.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 405);

    // The pages: never a 5xx, never the input unescaped.
    let b = browser();
    for path in [
        "/device?user_code=%3Cscript%3Ealert(1)%3C/script%3E",
        "/device?user_code=%FF%FE",
        "/device?user_code=a&user_code=b",
        "/device/confirm?user_code=%3Cscript%3E",
        "/device/confirm",
        "/device/confirm?user_code=BCDF-GHJA",
    ] {
        let resp = b.get(app.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        let page = resp.text().await.unwrap();
        assert!((200..500).contains(&status), "{path}: {status}");
        assert!(!page.contains("<script>"), "{path}: {page}");
    }
    let html = b
        .get(app.url("/device"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&html, "csrf").unwrap();
    let posts: Vec<(&str, Form, u16)> = vec![
        ("/device", vec![("user_code", "BCDF-GHJK".into())], 400),
        (
            "/device",
            vec![("csrf", "forged".into()), ("user_code", "BCDF-GHJK".into())],
            400,
        ),
        (
            "/device",
            vec![("csrf", csrf.clone()), ("user_code", "x".repeat(3000))],
            400,
        ),
        (
            "/device",
            vec![("csrf", csrf.clone()), ("user_code", "<b>BCDF</b>".into())],
            400,
        ),
        ("/device", vec![("csrf", csrf.clone())], 400),
        (
            "/device/confirm",
            vec![("csrf", csrf.clone()), ("decision", "allow".into())],
            400,
        ),
        (
            "/device/confirm",
            vec![
                ("csrf", csrf.clone()),
                ("user_code", "BCDF-GHJK".into()),
                ("decision", "allow".into()),
            ],
            404,
        ),
    ];
    for (path, form, status) in posts {
        let resp = b.post(app.url(path)).form(&form).send().await.unwrap();
        let got = resp.status().as_u16();
        let page = resp.text().await.unwrap();
        assert_eq!(got, status, "{path} {form:?}: {page}");
        assert!(!page.contains("<b>"), "{page}");
    }
    let raw = b
        .post(app.url("/device"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'c', b's', b'r', b'f', b'=', 0xff, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
}

#[tokio::test]
async fn discovery_lists_the_device_flow_only_when_enabled() {
    let app = TestApp::spawn().await;
    let (_, _, meta) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["device_authorization_endpoint"],
        app.url("/device_authorization")
    );
    assert!(meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from(GRANT)));
    let (_, _, oauth_meta) = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        oauth_meta["device_authorization_endpoint"],
        meta["device_authorization_endpoint"]
    );

    let off = app_with(|s| s.device.enabled = false).await;
    let (_, _, meta) = off.get_json("/.well-known/openid-configuration").await;
    assert!(
        meta.get("device_authorization_endpoint").is_none(),
        "{meta}"
    );
    assert!(!meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from(GRANT)));
    let client = device_client(&off).await;
    let (status, body) = client_post(
        &off,
        "/device_authorization",
        &client,
        &[("scope", "openid")],
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(off.get_status("/device").await, 404);
    assert_oauth_error(
        &poll(&off, &client, "x").await,
        400,
        "unsupported_grant_type",
    );
}

#[tokio::test]
async fn the_device_section_refuses_unknown_keys_and_bad_values() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = test_settings(dir.path(), "sqlite://x.db".into());
    s.device.interval_secs = 0;
    assert!(s
        .validate()
        .unwrap_err()
        .to_string()
        .contains("device.interval_secs"));
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[device]\ninterval = 5\n").unwrap();
    let err = portcullis::config::Settings::load(Some(&file)).unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
}

#[tokio::test]
async fn a_client_requiring_mfa_gets_a_second_factor_before_the_consent_page() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let strict = app
        .register_client(ClientRegistration {
            name: "Strict TV".into(),
            grant_types: vec!["device_code".into()],
            public: true,
            require_mfa: true,
            ..Default::default()
        })
        .await;
    let user = ada(&app).await;
    let started = authorize_device(&app, &strict, "openid email").await;
    let b = browser();
    let url = started["verification_uri_complete"].as_str().unwrap();
    let html = submit_code_form(&app, &b, url).await.text().await.unwrap();
    assert!(
        html.contains("Strict TV"),
        "the login page names the client: {html}"
    );
    let resp = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", form_value(&html, "return_to").unwrap()),
            ("username", user.email.clone()),
            ("password", user.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    let back = location(&resp).expect("back to the device page");
    // A password alone is not enough for this client: add an authenticator app first.
    let html = b.get(back).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("action=\"/login/mfa\""), "{html}");
    assert!(!html.contains("action=\"/device/confirm\""));
    let key = html
        .split("id=\"totp-key\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the key of the new authenticator app")
        .to_string();
    let resp = b
        .post(app.url("/login/mfa"))
        .form(&[
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("mfa_token", form_value(&html, "mfa_token").unwrap()),
            ("code", code_at(&key, 1_800_000_000)),
        ])
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(html.contains("id=\"recovery-codes\""), "{html}");
    let next = html
        .split("class=\"btn btn-primary btn-block\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(unescape)
        .expect("the way on");
    assert_eq!(
        next,
        app.url(&format!(
            "/device/confirm?user_code={}",
            started["user_code"].as_str().unwrap().replace('-', "")
        ))
    );
    let consent = b.get(&next).send().await.unwrap().text().await.unwrap();
    assert!(
        consent.contains("Strict TV wants to access your account"),
        "{consent}"
    );
    let (status, page) = answer_consent(&app, &b, &consent, "allow").await;
    assert_eq!(status, 200, "{page}");
    let (status, tokens) = poll(&app, &strict, started["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["acr"], "mfa", "{claims}");
    assert!(claims["amr"]
        .as_array()
        .unwrap()
        .contains(&Value::from("otp")));
    assert!(
        tokens.get("refresh_token").is_none(),
        "no refresh_token grant"
    );
}

/// The device's tokens are bound to the browser session that approved it: signing that
/// session out ends the device's session-bound refresh token and denies its access token.
#[tokio::test]
async fn signing_out_the_approving_session_ends_the_devices_tokens() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    let user = ada(&app).await;
    let started = authorize_device(&app, &client, "openid profile").await;
    let (status, page) = decide_on_device_page(
        &app,
        &browser(),
        started["verification_uri_complete"].as_str().unwrap(),
        &user,
        "allow",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let (status, tokens) = poll(&app, &client, started["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let userinfo = |token: String| {
        let app = &app;
        async move {
            let resp = app.http.get(app.url("/userinfo")).bearer_auth(token);
            resp.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(userinfo(access.to_string()).await, 200);
    let ended = app
        .state
        .sessions
        .end_other_sessions(user.id, None, "test", "signed out everywhere")
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert_eq!(
        userinfo(access.to_string()).await,
        401,
        "the access token is denied"
    );
    if let Some(refresh) = tokens["refresh_token"].as_str() {
        let (status, body) = client_post(
            &app,
            "/token",
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
}

/// RFC 8628 §3.5 pacing holds for parallel polls too: of two polls at the same moment one is
/// told to slow down.
#[tokio::test]
async fn parallel_polls_of_a_pending_code_cannot_both_pass_as_paced() {
    let app = TestApp::spawn().await;
    let client = device_client(&app).await;
    for _ in 0..3 {
        let started = authorize_device(&app, &client, "openid").await;
        let code = started["device_code"].as_str().unwrap();
        let (a, b) = tokio::join!(poll(&app, &client, code), poll(&app, &client, code));
        let mut errors = vec![
            a.1["error"].as_str().unwrap_or("").to_string(),
            b.1["error"].as_str().unwrap_or("").to_string(),
        ];
        errors.sort();
        assert_eq!(
            errors,
            ["authorization_pending", "slow_down"],
            "{a:?} {b:?}"
        );
    }
}
