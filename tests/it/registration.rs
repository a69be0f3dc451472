//! Dynamic client registration (RFC 7591) and its management (RFC 7592): each policy mode,
//! refused metadata per field, hostile bodies, the registration access token (rotation, one
//! spend), unused clients expiring, and a registered public client signing a user in through
//! the `openidconnect` relying party.

use std::sync::Arc;

use openidconnect::core::{
    CoreApplicationType, CoreClientAuthMethod, CoreClientRegistrationRequest, CoreGrantType,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::registration::EmptyAdditionalClientMetadata;
use openidconnect::{
    AccessToken, ClientName, IssuerUrl, LocalizedClaim, RedirectUrl, ResponseTypes,
};
use portcullis::clock::ManualClock;
use portcullis::config::{RegistrationMode, Settings};
use serde_json::{json, Value};

use crate::cli::{stdout, Cli};
use crate::common::{
    auth_url, browser, form_value, fresh_database_url, location, sign_in_at, test_settings,
    Landing, TestApp, TestClient, TestUser,
};

const CB: &str = "https://agent.example.com/callback";

async fn app_in(mode: RegistrationMode, tune: impl FnOnce(&mut Settings)) -> TestApp {
    crate::common::app_with(|s| {
        s.registration.mode = mode;
        // Tests register many clients from one address.
        s.registration.rate_limit = portcullis::limiter::Policy {
            limit: 1000,
            period_secs: 60,
        };
        tune(s);
    })
    .await
}

async fn open_app() -> TestApp {
    app_in(RegistrationMode::Open, |_| {}).await
}

/// An initial access token valid for an hour, made as the CLI makes it.
async fn initial_token(app: &TestApp, expires_in: u64) -> String {
    use secrecy::ExposeSecret;
    let (token, _) = portcullis::clients::dynamic::create_initial_token(
        &*app.state.store,
        app.state.clock.now(),
        expires_in,
        "test",
    )
    .await
    .unwrap();
    token.expose_secret().to_string()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn register(app: &TestApp, token: Option<&str>, body: &Value) -> Answer {
    let mut req = app.http.post(app.url("/connect/register")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req).await
}

/// The body of a page the request answers with.
async fn text(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

async fn read(app: &TestApp, uri: &str, token: &str) -> Answer {
    send(app.http.get(uri).bearer_auth(token)).await
}

async fn put(app: &TestApp, uri: &str, token: &str, body: &Value) -> Answer {
    send(app.http.put(uri).bearer_auth(token).json(body)).await
}

fn agent() -> Value {
    json!({
        "client_name": "Research agent",
        "redirect_uris": [CB],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid email offline_access",
        "logo_uri": "https://agent.example.com/logo.png",
        "client_uri": "https://agent.example.com/",
        "contacts": ["ops@agent.example.com"],
        "software_id": "4NRB1-0XZABZI9E6-5SM3R",
    })
}

/// The management URI and token of a registration answer.
fn handle(a: &Answer) -> (String, String) {
    assert_eq!(a.status, 201, "{}", a.body);
    (
        a.body["registration_client_uri"]
            .as_str()
            .unwrap()
            .to_string(),
        a.body["registration_access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn assert_metadata_error(a: &Answer, code: &str, field: &str) {
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], code, "{}", a.body);
    let description = a.body["error_description"].as_str().unwrap_or_default();
    assert!(description.starts_with(field), "{field}: {description}");
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "RFC 7591 §3.2.2"
    );
}

fn assert_invalid_token(a: &Answer) {
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_token", "{}", a.body);
    let challenge = a.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
}

async fn client_count(app: &TestApp) -> usize {
    app.state.store.list_clients().await.unwrap().len()
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.management))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn open_registration_answers_201_with_the_registered_metadata_and_a_management_handle() {
    let app = open_app().await;
    let (_, _, discovery) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery["registration_endpoint"],
        app.url("/connect/register")
    );
    let (_, _, as_metadata) = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        as_metadata["registration_endpoint"],
        app.url("/connect/register")
    );

    let a = register(&app, None, &agent()).await;
    let (uri, token) = handle(&a);
    let b = &a.body;
    let id = b["client_id"].as_str().unwrap();
    assert_eq!(uri, app.url(&format!("/connect/register/{id}")));
    assert!(token.len() >= 43);
    assert_eq!(b["client_name"], "Research agent");
    assert_eq!(b["redirect_uris"], json!([CB]));
    assert_eq!(
        b["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(b["response_types"], json!(["code"]));
    assert_eq!(b["token_endpoint_auth_method"], "none");
    assert_eq!(b["scope"], "email offline_access openid");
    assert_eq!(b["logo_uri"], "https://agent.example.com/logo.png");
    assert_eq!(b["application_type"], "web");
    assert!(b["client_id_issued_at"].as_i64().unwrap() > 0);
    assert!(
        b.get("client_secret").is_none(),
        "a public client has no secret"
    );
    assert!(
        b.get("contacts").is_none(),
        "unregistered metadata is not claimed"
    );
    assert_eq!(a.headers["cache-control"], "no-store");

    let stored = app.state.store.get_client(id).await.unwrap().unwrap();
    assert!(stored.dynamic && !stored.first_party);

    // A confidential client gets its secret once, which never expires.
    let a = register(
        &app,
        None,
        &json!({"redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.body["client_secret"].as_str().unwrap().len() >= 43);
    assert_eq!(a.body["client_secret_expires_at"], 0);
    assert_eq!(a.body["token_endpoint_auth_method"], "client_secret_post");

    let events = app.state.store.recent_audit(20).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "client.created" && e.actor.as_deref() == Some("rfc7591 (open)")));
    let text = metrics(&app).await;
    assert!(
        text.contains(
            "portcullis_client_registrations_total{mode=\"open\",result=\"registered\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn initial_token_mode_is_the_default_and_needs_a_live_initial_access_token() {
    assert_eq!(
        Settings::default().registration.mode,
        RegistrationMode::InitialToken
    );
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let before = client_count(&app).await;
    assert_invalid_token(&register(&app, None, &agent()).await);
    assert_invalid_token(&register(&app, Some("not-a-token"), &agent()).await);
    let a = send(
        app.http
            .post(app.url("/connect/register"))
            .header("authorization", "Basic Zm9vOmJhcg==")
            .json(&agent()),
    )
    .await;
    assert_invalid_token(&a);
    let short = initial_token(&app, 60).await;
    let token = initial_token(&app, 3600).await;
    clock.advance(61);
    assert_invalid_token(&register(&app, Some(&short), &agent()).await);
    assert_eq!(client_count(&app).await, before, "nothing was written");

    let a = register(&app, Some(&token), &agent()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    // The token registers more than one client until it expires.
    let a = register(&app, Some(&token), &agent()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let text = metrics(&app).await;
    assert!(text.contains(
        "portcullis_client_registrations_total{mode=\"initial_token\",result=\"registered\"} 2"
    ));
    assert!(text.contains(
        "portcullis_client_registrations_total{mode=\"initial_token\",result=\"refused\"} 3"
    ));
}

#[tokio::test]
async fn with_registration_off_there_is_no_endpoint_and_discovery_names_none() {
    let app = app_in(RegistrationMode::Off, |_| {}).await;
    let (_, _, discovery) = app.get_json("/.well-known/openid-configuration").await;
    assert!(
        discovery.get("registration_endpoint").is_none(),
        "{discovery}"
    );
    let a = register(&app, None, &agent()).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = read(&app, &app.url("/connect/register/abc"), "x").await;
    assert_eq!(a.status, 404);
    // The hosted sign-up page for people is another thing.
    assert_eq!(app.get_status("/register").await, 200);
}

#[tokio::test]
async fn the_rate_limit_counts_registrations_per_ip() {
    let app = app_in(RegistrationMode::Open, |s| {
        s.registration.rate_limit = portcullis::limiter::Policy {
            limit: 2,
            period_secs: 3600,
        };
    })
    .await;
    for _ in 0..2 {
        assert_eq!(register(&app, None, &agent()).await.status, 201);
    }
    let a = register(&app, None, &agent()).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn refused_metadata_names_the_field_in_rfc_7591_errors_and_writes_nothing() {
    let app = app_in(RegistrationMode::Open, |_| {}).await;
    let before = client_count(&app).await;
    let jwk = json!({"kty": "EC", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"redirect_uris": ["http://agent.example.com/cb"]}),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            json!({"redirect_uris": ["https://agent.example.com/cb#frag"]}),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            json!({"redirect_uris": ["not a uri"]}),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            json!({"client_name": "No URIs"}),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            json!({"redirect_uris": [CB], "grant_types": ["refresh_token"], "response_types": ["code"]}),
            "invalid_client_metadata",
            "grant_types, response_types",
        ),
        (
            json!({"redirect_uris": [CB], "response_types": ["code token"]}),
            "invalid_client_metadata",
            "response_types",
        ),
        (
            json!({"redirect_uris": [CB], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            json!({"grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            json!({"redirect_uris": [CB], "token_endpoint_auth_method": "tls_client_auth"}),
            "invalid_client_metadata",
            "token_endpoint_auth_method",
        ),
        (
            json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
            "token_endpoint_auth_method",
        ),
        (
            json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk]}, "jwks_uri": "https://agent.example.com/jwks"}),
            "invalid_client_metadata",
            "jwks, jwks_uri",
        ),
        (
            json!({"redirect_uris": [CB], "jwks": {"keys": [jwk]}}),
            "invalid_client_metadata",
            "jwks, jwks_uri",
        ),
        (
            json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": "https://169.254.169.254/latest/meta-data"}),
            "invalid_client_metadata",
            "jwks_uri",
        ),
        (
            json!({"redirect_uris": [CB], "backchannel_logout_uri": "http://127.0.0.1:9/logout"}),
            "invalid_client_metadata",
            "backchannel_logout_uri",
        ),
        (
            json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": "nope"}}),
            "invalid_client_metadata",
            "jwks",
        ),
        (
            json!({"redirect_uris": [CB], "logo_uri": "javascript:alert(1)"}),
            "invalid_client_metadata",
            "logo_uri",
        ),
        (
            json!({"redirect_uris": [CB], "client_uri": "http://agent.example.com/"}),
            "invalid_client_metadata",
            "client_uri",
        ),
        (
            json!({"redirect_uris": [CB], "application_type": "desktop"}),
            "invalid_client_metadata",
            "application_type",
        ),
        (
            json!({"redirect_uris": [CB], "application_type": "native"}),
            "invalid_redirect_uri",
            "redirect_uris",
        ),
        (
            json!({"redirect_uris": [CB], "scope": "openid admin"}),
            "invalid_client_metadata",
            "scope",
        ),
        (
            json!({"redirect_uris": [CB], "client_name": ""}),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            json!({"redirect_uris": [CB], "post_logout_redirect_uris": ["http://agent.example.com/"]}),
            "invalid_client_metadata",
            "post_logout_redirect_uris",
        ),
        (
            json!({"redirect_uris": [CB], "backchannel_logout_uri": "ftp://agent.example.com/"}),
            "invalid_client_metadata",
            "backchannel_logout_uri",
        ),
        (
            json!({"redirect_uris": [CB], "id_token_signed_response_alg": "none"}),
            "invalid_client_metadata",
            "id_token_signed_response_alg",
        ),
        (
            json!({"redirect_uris": CB}),
            "invalid_client_metadata",
            "redirect_uris",
        ),
        (
            json!({"redirect_uris": [CB], "client_name": ["a"]}),
            "invalid_client_metadata",
            "client_name",
        ),
        (
            json!({"redirect_uris": [CB], "require_pushed_authorization_requests": "yes"}),
            "invalid_client_metadata",
            "require_pushed_authorization_requests",
        ),
    ];
    for (body, code, field) in &cases {
        let a = register(&app, None, body).await;
        assert_metadata_error(&a, code, field);
    }
    assert_eq!(client_count(&app).await, before, "nothing was written");
    // A private_key_jwt client with its keys inline registers, without a secret.
    let a = register(
        &app,
        None,
        &json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk]}}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.body.get("client_secret").is_none());
    assert_eq!(a.body["jwks"]["keys"][0]["crv"], "P-256");
}

#[tokio::test]
async fn hostile_bodies_get_4xx_in_rfc_7591_format_never_5xx() {
    let app = open_app().await;
    let before = client_count(&app).await;
    let post = |ct: &'static str, body: Vec<u8>| {
        app.http
            .post(app.url("/connect/register"))
            .header("content-type", ct)
            .body(body)
    };
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let long_name = json!({"redirect_uris": [CB], "client_name": "x".repeat(20_000)}).to_string();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"not json".to_vec()),
        ("application/json", b"".to_vec()),
        ("application/json", b"[1,2,3]".to_vec()),
        ("application/json", b"\"string\"".to_vec()),
        ("application/json", b"null".to_vec()),
        (
            "application/json",
            b"{\"redirect_uris\": [\"https://a.example.com/cb\"".to_vec(),
        ),
        ("application/json", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("application/json", deep.into_bytes()),
        ("application/json", long_name.into_bytes()),
        (
            "application/json",
            br#"{"redirect_uris": [null, 5, {}]}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"grant_types": "authorization_code"}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"redirect_uris": ["https://a.example.com/\u0000"]}"#.to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"redirect_uris=https://a.example.com/cb".to_vec(),
        ),
        ("text/plain", b"{}".to_vec()),
    ];
    for (ct, body) in bodies {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let a = send(post(ct, body)).await;
        assert!(
            (400..500).contains(&a.status),
            "{ct} {shown}: {} {}",
            a.status,
            a.body
        );
        assert!(
            a.body["error"].as_str().is_some_and(|e| !e.is_empty())
                && a.body["error_description"].is_string(),
            "{shown}: {}",
            a.body
        );
    }
    // Larger than the body limit: declared, and streamed without a length.
    let huge = vec![b' '; app.settings.http.max_body_bytes + 10];
    let a = send(post("application/json", huge.clone())).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body["error"].is_string());
    let stream = futures_util::stream::iter(
        huge.chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let a = send(
        app.http
            .post(app.url("/connect/register"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_client_metadata");
    assert_eq!(client_count(&app).await, before, "nothing was written");

    // The configuration endpoint is as strict.
    let (uri, token) = handle(&register(&app, None, &agent()).await);
    let a = send(
        app.http
            .put(&uri)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{{{"),
    )
    .await;
    assert_metadata_error(&a, "invalid_client_metadata", "the request body");
    for bad in ["Bearer", "Bearer ", "Basic abc", "Bearer a b c"] {
        let a = send(app.http.get(&uri).header("authorization", bad)).await;
        assert_invalid_token(&a);
    }
    assert_invalid_token(&read(&app, &app.url("/connect/register/%00%ff"), &token).await);
    let long = app.url(&format!("/connect/register/{}", "a".repeat(4000)));
    assert_invalid_token(&read(&app, &long, &token).await);
}

#[tokio::test]
async fn rfc_7592_reads_replaces_and_deletes_with_a_rotating_registration_access_token() {
    let app = open_app().await;
    let created = register(&app, None, &agent()).await;
    let (uri, token) = handle(&created);
    let id = created.body["client_id"].as_str().unwrap().to_string();

    // Read: the registered metadata, and a new token (only its hash is kept, §3 requires one).
    let a = read(&app, &uri, &token).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for field in [
        "client_id",
        "client_name",
        "redirect_uris",
        "grant_types",
        "scope",
        "logo_uri",
    ] {
        assert_eq!(a.body[field], created.body[field], "{field}");
    }
    assert_eq!(a.body["registration_client_uri"], uri);
    let token2 = a.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(token2, token);
    assert_eq!(a.headers["cache-control"], "no-store");
    assert_invalid_token(&read(&app, &uri, &token).await);

    // Update: everything is replaced; what is left out is deleted.
    let mut metadata = agent();
    metadata["client_id"] = json!(id);
    metadata["client_name"] = json!("Research agent v2");
    metadata["redirect_uris"] = json!([CB, "https://agent.example.com/cb2"]);
    metadata.as_object_mut().unwrap().remove("logo_uri");
    let a = put(&app, &uri, &token2, &metadata).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["client_name"], "Research agent v2");
    assert_eq!(a.body["redirect_uris"].as_array().unwrap().len(), 2);
    assert!(a.body.get("logo_uri").is_none(), "{}", a.body);
    let token3 = a.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_invalid_token(&put(&app, &uri, &token2, &metadata).await);
    let stored = app.state.store.get_client(&id).await.unwrap().unwrap();
    assert_eq!(stored.name, "Research agent v2");
    assert_eq!(stored.logo_uri, None);
    assert!(app
        .state
        .store
        .recent_audit(10)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "client.updated" && e.client_id.as_deref() == Some(id.as_str())));

    // A refused update changes nothing and keeps the token.
    let mut bad = metadata.clone();
    bad["redirect_uris"] = json!(["http://agent.example.com/cb"]);
    assert_metadata_error(
        &put(&app, &uri, &token3, &bad).await,
        "invalid_redirect_uri",
        "redirect_uris",
    );
    let mut bad = metadata.clone();
    bad["client_id"] = json!("someone-else");
    assert_metadata_error(
        &put(&app, &uri, &token3, &bad).await,
        "invalid_client_metadata",
        "client_id",
    );
    let mut bad = metadata.clone();
    bad["registration_access_token"] = json!(token3);
    assert_metadata_error(
        &put(&app, &uri, &token3, &bad).await,
        "invalid_client_metadata",
        "registration_access_token",
    );
    let mut bad = metadata.clone();
    bad["client_secret"] = json!("chosen-by-me");
    assert_metadata_error(
        &put(&app, &uri, &token3, &bad).await,
        "invalid_client_metadata",
        "client_secret",
    );
    // A token of another client opens nothing here.
    let (_, other_token) = handle(&register(&app, None, &agent()).await);
    assert_invalid_token(&read(&app, &uri, &other_token).await);

    // Becoming confidential issues a secret, shown in that answer.
    let mut confidential = metadata.clone();
    confidential["token_endpoint_auth_method"] = json!("client_secret_basic");
    let a = put(&app, &uri, &token3, &confidential).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["client_secret"].is_string());
    assert_eq!(a.body["client_secret_expires_at"], 0);
    let secret = a.body["client_secret"].as_str().unwrap().to_string();
    let token4 = a.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Delete: 204, then the client is gone everywhere.
    let a = send(app.http.delete(&uri).bearer_auth(&token4)).await;
    assert_eq!(a.status, 204);
    assert_invalid_token(&read(&app, &uri, &token4).await);
    assert_invalid_token(&send(app.http.delete(&uri).bearer_auth(&token4)).await);
    assert!(app.state.store.get_client(&id).await.unwrap().is_none());
    let a = send(
        app.http
            .post(app.url("/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_client");
    let text = metrics(&app).await;
    for op in ["read", "update", "delete"] {
        assert!(
            text.contains(&format!(
                "portcullis_client_registration_management_total{{op=\"{op}\",result=\"ok\"}}"
            )),
            "{op}: {text}"
        );
    }
}

#[tokio::test]
async fn two_parallel_requests_with_one_registration_access_token_spend_it_once() {
    let app = Arc::new(open_app().await);
    let (uri, token) = handle(&register(&app, None, &agent()).await);
    let (a, b) = tokio::join!(read(&app, &uri, &token), read(&app, &uri, &token));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{} / {}", a.body, b.body);
    let winner = if a.status == 200 { a } else { b };
    let next = winner.body["registration_access_token"].as_str().unwrap();
    let mut metadata = agent();
    metadata["client_id"] = winner.body["client_id"].clone();
    let (a, b) = tokio::join!(
        put(&app, &uri, next, &metadata),
        put(&app, &uri, next, &metadata)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{} / {}", a.body, b.body);
}

#[tokio::test]
async fn a_registered_client_never_used_expires_and_a_used_one_stays() {
    let clock = ManualClock::new(1_800_000_000);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.registration.mode = RegistrationMode::Open;
    settings.registration.unused_client_ttl_secs = 24 * 3600;
    // The test sweeps itself: a background pass could take the unused client first.
    settings.janitor.interval_secs = 0;
    settings
        .registration
        .allowed_grant_types
        .push("client_credentials".into());
    settings.registration.allowed_scopes.push("reports".into());
    let app = TestApp::spawn_with(settings, dir, Arc::new(clock.clone())).await;
    let service = json!({"grant_types": ["client_credentials"], "scope": "reports",
                         "client_name": "Reporter"});
    let unused = register(&app, None, &service).await;
    let (unused_uri, unused_token) = handle(&unused);
    let used = register(&app, None, &service).await;
    let (used_uri, used_token) = handle(&used);
    let credentials = |a: &Answer| {
        (
            a.body["client_id"].as_str().unwrap().to_string(),
            a.body["client_secret"].as_str().unwrap().to_string(),
        )
    };
    let token_request = |(id, secret): (String, String)| {
        send(
            app.http
                .post(app.url("/token"))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")]),
        )
    };
    assert_eq!(token_request(credentials(&used)).await.status, 200);

    clock.advance(24 * 3600 - 1);
    let a = read(&app, &unused_uri, &unused_token).await;
    assert_eq!(a.status, 200, "still young: {}", a.body);
    let unused_token = a.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    clock.advance(1);

    // Expired before any sweep: invalid_client at the token endpoint, 401 at its URI.
    let a = token_request(credentials(&unused)).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_client");
    assert_invalid_token(&read(&app, &unused_uri, &unused_token).await);
    // The used one lives on.
    assert_eq!(token_request(credentials(&used)).await.status, 200);
    assert_eq!(read(&app, &used_uri, &used_token).await.status, 200);

    let removed = app.state.registration.sweep(100).await.unwrap();
    assert_eq!(removed, 1);
    let unused_id = unused.body["client_id"].as_str().unwrap();
    let used_id = used.body["client_id"].as_str().unwrap();
    assert!(app
        .state
        .store
        .get_client(unused_id)
        .await
        .unwrap()
        .is_none());
    assert!(app.state.store.get_client(used_id).await.unwrap().is_some());
    assert!(app
        .state
        .store
        .recent_audit(10)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "client.deleted"
            && e.client_id.as_deref() == Some(unused_id)
            && e.actor.as_deref() == Some("registration sweep (never used)")));
    assert_eq!(app.state.registration.sweep(100).await.unwrap(), 0);
}

#[tokio::test]
async fn a_registered_public_client_signs_a_user_in_with_pkce_through_openidconnect() {
    let app = TestApp::spawn().await;
    let token = initial_token(&app, 3600).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let endpoint = metadata
        .registration_endpoint()
        .expect("registration_endpoint in discovery")
        .clone();
    let redirect = RedirectUrl::new("http://127.0.0.1:53682/callback".into()).unwrap();
    let mut name = LocalizedClaim::new();
    name.insert(None, ClientName::new("CLI agent".into()));
    let registered = CoreClientRegistrationRequest::new(
        vec![redirect.clone()],
        EmptyAdditionalClientMetadata::default(),
    )
    .set_client_name(Some(name))
    .set_application_type(Some(CoreApplicationType::Native))
    .set_grant_types(Some(vec![CoreGrantType::AuthorizationCode]))
    .set_response_types(Some(vec![ResponseTypes::new(vec![CoreResponseType::Code])]))
    .set_token_endpoint_auth_method(Some(CoreClientAuthMethod::None))
    .set_initial_access_token(Some(AccessToken::new(token)))
    .register_async(&endpoint, &http)
    .await
    .expect("registration");
    assert!(registered.client_secret().is_none());
    assert!(registered.registration_access_token().is_some());

    // The relying party signs a user in as that client, knowing only what it was told.
    let client = TestClient {
        id: registered.client_id().to_string(),
        secret: None,
        redirect_uri: redirect.to_string(),
    };
    crate::code_flow::sign_in_with_openidconnect(
        &app,
        &client,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
}

/// Follows an authorization URL through the login page and returns the page after it.
async fn page_after_login(
    app: &TestApp,
    b: &reqwest::Client,
    url: &str,
    user: &TestUser,
) -> String {
    let mut next = b.get(url).send().await.unwrap();
    for _ in 0..8 {
        if next.status().is_redirection() {
            let to = location(&next).expect("redirect target");
            next = b.get(to).send().await.unwrap();
            continue;
        }
        let html = next.text().await.unwrap();
        if !html.contains("action=\"/login\"") {
            return html;
        }
        let form = [
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", form_value(&html, "return_to").unwrap()),
            ("username", user.email.clone()),
            ("password", user.password.clone()),
        ];
        next = b.post(app.url("/login")).form(&form).send().await.unwrap();
    }
    panic!("too many hops");
}

#[tokio::test]
async fn the_consent_page_calls_a_registered_client_an_unverified_application() {
    let app = open_app().await;
    let a = register(&app, None, &agent()).await;
    let client = TestClient {
        id: a.body["client_id"].as_str().unwrap().to_string(),
        secret: None,
        redirect_uri: CB.into(),
    };
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let b = browser();
    let page = page_after_login(&app, &b, &auth_url(&app, &client, &[]), &user).await;
    assert!(page.contains("action=\"/consent\""), "{page}");
    assert!(page.contains("Unverified application"), "{page}");

    let operator = app.confidential_client().await;
    let page = page_after_login(&app, &b, &auth_url(&app, &operator, &[]), &user).await;
    assert!(page.contains("action=\"/consent\""), "{page}");
    assert!(!page.contains("Unverified application"), "{page}");
}

#[tokio::test]
async fn the_console_and_the_cli_mark_registered_clients() {
    let app = open_app().await;
    let a = register(&app, None, &agent()).await;
    let id = a.body["client_id"].as_str().unwrap().to_string();
    let admin = crate::console::admin(&app).await;
    let b = browser();
    match sign_in_at(&app, &b, &app.url("/console"), &admin, "allow").await {
        Landing::Page(200, _) => {}
        Landing::Page(status, html) => panic!("console sign-in: {status} {html}"),
        Landing::Client(to) => panic!("left the server: {to}"),
    }
    let list = text(b.get(app.url("/console/clients"))).await;
    assert!(list.contains("self-registered"), "{list}");
    let page = text(b.get(app.url(&format!("/console/clients/{id}")))).await;
    assert!(page.contains("self-registered"), "{page}");
}

#[tokio::test]
async fn the_cli_makes_initial_access_tokens_that_register_clients() {
    let cli = Cli::new().await;
    let out = cli.run(&["client", "registration-token", "--json"]);
    assert!(out.status.success(), "{}", crate::cli::stderr(&out));
    let printed: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let token = printed["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 43);
    let human = cli.run(&["client", "registration-token", "--expires-in", "600"]);
    assert!(human.status.success());
    assert!(
        stdout(&human).contains("initial access token"),
        "{}",
        stdout(&human)
    );
    let refused = cli.run(&["client", "registration-token", "--expires-in", "5"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));

    // A server on that database takes the token; `client list` then marks the client.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = test_settings(dir.path(), cli.db.clone());
    let app = TestApp::spawn_with(settings, dir, Arc::new(portcullis::clock::SystemClock)).await;
    let a = register(&app, Some(&token), &agent()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["client_id"].as_str().unwrap();
    app.stop().await;
    let list = stdout(&cli.run(&["client", "list"]));
    let row = list.lines().find(|l| l.starts_with(id)).expect("listed");
    assert!(row.contains("dyn"), "{row}");
    let show = stdout(&cli.run(&["client", "show", id]));
    assert!(show.contains("dynamically"), "{show}");
    assert!(app_audit_has(&cli.db, "registration.initial_token_created").await);
}

async fn app_audit_has(db: &str, kind: &str) -> bool {
    portcullis::store::open(db, 1)
        .await
        .unwrap()
        .recent_audit(50)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == kind)
}
