//! Pushed authorization requests (RFC 9126): `/par` then `/authorize` with the `request_uri`,
//! expiry on the injected clock, single use under concurrency, the client binding, the
//! "PAR required" policies, hostile input, discovery.

use std::sync::Arc;

use portcullis::clients::ClientRegistration;
use portcullis::clock::ManualClock;
use serde_json::Value;

use crate::common::{
    app_with, browser, challenge, exchange, form_value, fresh_database_url, location, query,
    test_settings, Landing, TestApp, TestClient, TestUser, VERIFIER,
};

const PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The form of a pushed request with sane defaults, overridden (or removed, with "") by `extra`.
fn pushed_form(client: &TestClient, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = vec![
        ("client_id".into(), client.id.clone()),
        ("redirect_uri".into(), client.redirect_uri.clone()),
        ("response_type".into(), "code".into()),
        ("scope".into(), "openid email".into()),
        ("state".into(), "pushed-state".into()),
        ("nonce".into(), "n0nce".into()),
        ("code_challenge".into(), challenge(VERIFIER)),
        ("code_challenge_method".into(), "S256".into()),
    ];
    for (k, v) in extra {
        form.retain(|(name, _)| name != k);
        if !v.is_empty() {
            form.push((k.to_string(), v.to_string()));
        }
    }
    form
}

/// Pushes with the client's Basic credentials (none for a public client): (status, JSON).
async fn push(app: &TestApp, client: &TestClient, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url("/par"))
        .form(&pushed_form(client, extra));
    if let Some(secret) = &client.secret {
        req = req.basic_auth(&client.id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Pushes and returns the request URI, asserting the RFC 9126 §2.2 answer.
async fn pushed_uri(app: &TestApp, client: &TestClient, extra: &[(&str, &str)]) -> String {
    let (status, body) = push(app, client, extra).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], app.settings.par.request_uri_ttl_secs);
    let uri = body["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_string();
    assert!(uri.starts_with(PREFIX), "{uri}");
    uri
}

/// `/authorize?client_id=…&request_uri=…` (RFC 9126 §4) plus `extra` query parameters.
fn authorize_url(
    app: &TestApp,
    client_id: &str,
    request_uri: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri)
        .extend_pairs(extra.iter());
    url.to_string()
}

async fn landing_code(app: &TestApp, b: &reqwest::Client, url: &str, user: &TestUser) -> url::Url {
    match app.sign_in(b, url, user, "allow").await {
        Landing::Client(to) => to,
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    }
}

/// Submits the login form of `html` for `user`: the 303 back to `/authorize`.
async fn submit_login(app: &TestApp, b: &reqwest::Client, html: &str, user: &TestUser) -> url::Url {
    let resp = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", form_value(html, "csrf").unwrap()),
            ("return_to", form_value(html, "return_to").unwrap()),
            ("username", user.email.clone()),
            ("password", user.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    location(&resp).expect("back to /authorize")
}

/// Pushes a default request for `client` and signs `user` in with it in `b`: the code.
async fn code_through_par(
    app: &TestApp,
    b: &reqwest::Client,
    client: &TestClient,
    user: &TestUser,
) -> String {
    let uri = pushed_uri(app, client, &[]).await;
    let to = landing_code(app, b, &authorize_url(app, &client.id, &uri, &[]), user).await;
    query(&to, "code").expect("code")
}

/// The text of the page at `url`.
async fn page(b: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

async fn setup(app: &TestApp) -> (TestClient, TestUser) {
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.com", "correct horse battery")
        .await;
    (client, user)
}

async fn audit_count(app: &TestApp, kind: &str) -> u64 {
    app.state
        .store
        .count_audit(&[kind], 0)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn a_pushed_request_is_authorized_and_its_code_redeemed_for_tokens() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let uri = pushed_uri(&app, &client, &[]).await;

    // Only a hash of the random part is kept (RFC 9126 §2.2 bearer reference).
    let hash = portcullis::random::hash_secret(&uri[PREFIX.len()..]);
    let stored = app
        .state
        .store
        .pushed_request(&hash, &client.id)
        .await
        .unwrap()
        .expect("stored");
    assert!(!stored.params.contains(&uri[PREFIX.len()..]));
    assert!(stored.params.contains("pushed-state"));

    let to = landing_code(
        &app,
        &browser(),
        &authorize_url(&app, &client.id, &uri, &[]),
        &user,
    )
    .await;
    assert!(to.as_str().starts_with(&client.redirect_uri), "{to}");
    assert_eq!(query(&to, "state").as_deref(), Some("pushed-state"));
    assert_eq!(query(&to, "iss").as_deref(), Some(app.base.as_str()));
    let code = query(&to, "code").expect("code");
    let (status, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].as_str().is_some());
    assert_eq!(tokens["scope"], "email openid");

    assert_eq!(audit_count(&app, "par.accepted").await, 1);
    let metrics = app.state.metrics.render(&[]);
    assert!(
        metrics.contains("portcullis_par_requests_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portcullis_par_request_uris_total{outcome=\"consumed\"} 1"));
}

#[tokio::test]
async fn a_public_client_pushes_with_its_client_id_alone() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "Native app".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            public: true,
            ..Default::default()
        })
        .await;
    let user = app
        .create_user("ada@example.com", "correct horse battery")
        .await;
    code_through_par(&app, &browser(), &client, &user).await;
    // RFC 7636: a public client without PKCE is refused at /par as at /authorize.
    let (status, body) = push(
        &app,
        &client,
        &[("code_challenge", ""), ("code_challenge_method", "")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

#[tokio::test]
async fn parameters_outside_the_pushed_request_are_ignored() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let uri = pushed_uri(&app, &client, &[("scope", "openid")]).await;
    let url = authorize_url(
        &app,
        &client.id,
        &uri,
        &[
            ("state", "attacker"),
            ("scope", "openid email profile"),
            ("redirect_uri", "https://evil.example/cb"),
            ("prompt", "none"),
            ("response_mode", "form_post"),
            (
                "code_challenge",
                &challenge("another-verifier-another-verifier-another-v"),
            ),
        ],
    );
    // prompt=none from the query would answer login_required: the login page shows instead.
    let to = landing_code(&app, &browser(), &url, &user).await;
    assert!(to.as_str().starts_with(&client.redirect_uri), "{to}");
    assert_eq!(query(&to, "state").as_deref(), Some("pushed-state"));
    let code = query(&to, "code").expect("code");
    let (status, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "the pushed PKCE challenge holds: {tokens}");
    assert_eq!(tokens["scope"], "openid");
}

#[tokio::test]
async fn an_expired_request_uri_is_refused_but_a_sign_in_may_take_its_time() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let (client, user) = setup(&app).await;
    let ttl = app.settings.par.request_uri_ttl_secs as i64;

    // Never brought to /authorize within expires_in: invalid_request_uri, told to the client
    // (the stored request names its registered redirect URI) with the pushed state.
    let late = pushed_uri(&app, &client, &[]).await;
    clock.advance(ttl);
    let resp = browser()
        .get(authorize_url(&app, &client.id, &late, &[]))
        .send()
        .await
        .unwrap();
    let to = location(&resp).expect("redirect");
    assert!(to.as_str().starts_with(&client.redirect_uri), "{to}");
    assert_eq!(query(&to, "error").as_deref(), Some("invalid_request_uri"));
    assert_eq!(query(&to, "state").as_deref(), Some("pushed-state"));

    // Opened in time: the sign-in has par.sign_in_ttl_secs, however slow the person is.
    let uri = pushed_uri(&app, &client, &[]).await;
    let url = authorize_url(&app, &client.id, &uri, &[]);
    let b = browser();
    let page = b.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    clock.advance(ttl * 3);
    let to = landing_code(&app, &b, &url, &user).await;
    assert!(query(&to, "code").is_some(), "{to}");

    // ...but not forever.
    let uri = pushed_uri(&app, &client, &[]).await;
    let url = authorize_url(&app, &client.id, &uri, &[]);
    let b = browser();
    assert_eq!(b.get(&url).send().await.unwrap().status(), 200);
    clock.advance(app.settings.par.sign_in_ttl_secs as i64);
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(
        query(&location(&resp).expect("redirect"), "error").as_deref(),
        Some("invalid_request_uri")
    );
}

#[tokio::test]
async fn a_request_uri_yields_one_code_and_is_refused_afterwards() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let uri = pushed_uri(&app, &client, &[]).await;
    let url = authorize_url(&app, &client.id, &uri, &[]);
    let b = browser();
    let to = landing_code(&app, &b, &url, &user).await;
    assert!(query(&to, "code").is_some());

    // The same browser, signed in and consented: the used request_uri gives no second code.
    let resp = b.get(&url).send().await.unwrap();
    let to = location(&resp).expect("redirect");
    assert!(to.as_str().starts_with(&client.redirect_uri), "{to}");
    assert_eq!(query(&to, "error").as_deref(), Some("invalid_request_uri"));
    assert_eq!(query(&to, "code"), None);
    let metrics = app.state.metrics.render(&[]);
    assert!(
        metrics.contains("portcullis_par_request_uris_total{outcome=\"reused\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_uri_is_bound_to_the_client_that_pushed_it() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let other = app
        .register_client(ClientRegistration {
            name: "Other RP".into(),
            redirect_uris: vec!["https://other.example.com/cb".into()],
            ..Default::default()
        })
        .await;
    let uri = pushed_uri(&app, &client, &[]).await;
    // Another client's request_uri names nothing: a page, no redirect to anyone.
    for url in [
        authorize_url(&app, &other.id, &uri, &[]),
        authorize_url(&app, "no-such-client", &uri, &[]),
        authorize_url(
            &app,
            &client.id,
            &format!("{PREFIX}{}", "A".repeat(43)),
            &[],
        ),
        authorize_url(&app, &client.id, "urn:ietf:params:oauth:request_uri:", &[]),
    ] {
        let resp = browser().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{url}");
        assert!(resp.headers().get("location").is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("Invalid sign-in request"), "{html}");
    }
    // A request object by reference (RFC 9101) is not supported: told to the client.
    let resp = browser()
        .get(crate::common::auth_url(
            &app,
            &client,
            &[("request_uri", "https://rp.example.com/r.jwt")],
        ))
        .send()
        .await
        .unwrap();
    let to = location(&resp).expect("redirect");
    assert_eq!(
        query(&to, "error").as_deref(),
        Some("request_uri_not_supported")
    );
    let resp = browser()
        .get(format!(
            "{}?request_uri={}",
            app.url("/authorize"),
            urlencoding(&uri)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "no client_id: a page");
    // The request is still its own client's to use.
    let to = landing_code(
        &app,
        &browser(),
        &authorize_url(&app, &client.id, &uri, &[]),
        &user,
    )
    .await;
    assert!(query(&to, "code").is_some());
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_client_that_must_push_is_refused_a_plain_request() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("ada@example.com", "correct horse battery")
        .await;
    let strict = app
        .register_client(ClientRegistration {
            name: "Strict RP".into(),
            redirect_uris: vec!["https://strict.example.com/cb".into()],
            require_par: true,
            ..Default::default()
        })
        .await;
    assert_plain_request_refused(&app, &strict).await;
    // Pushed, it signs in as usual; a client without the flag still may send plain requests.
    code_through_par(&app, &browser(), &strict, &user).await;
    let relaxed = app.confidential_client().await;
    let to = landing_code(
        &app,
        &browser(),
        &crate::common::auth_url(&app, &relaxed, &[]),
        &user,
    )
    .await;
    assert!(query(&to, "code").is_some());
}

#[tokio::test]
async fn the_server_can_require_pushed_requests_of_every_client() {
    let app = app_with(|s| s.par.require = true).await;
    let (client, user) = setup(&app).await;
    assert_plain_request_refused(&app, &client).await;
    code_through_par(&app, &browser(), &client, &user).await;
    let (_, _, meta) = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["require_pushed_authorization_requests"], true);
}

/// RFC 9126 §4: `invalid_request`, redirected since the redirect URI is the client's own,
/// with a description that names PAR; an unregistered redirect URI still gets a page.
async fn assert_plain_request_refused(app: &TestApp, client: &TestClient) {
    let resp = browser()
        .get(crate::common::auth_url(app, client, &[]))
        .send()
        .await
        .unwrap();
    let to = location(&resp).expect("redirect to the client");
    assert!(to.as_str().starts_with(&client.redirect_uri), "{to}");
    assert_eq!(query(&to, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&to, "state").as_deref(), Some("st4te"));
    let description = query(&to, "error_description").unwrap_or_default();
    assert!(
        description.contains("pushed authorization requests"),
        "{description}"
    );
    let resp = browser()
        .get(crate::common::auth_url(
            app,
            client,
            &[("redirect_uri", "https://evil.example/cb")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn reloading_the_login_and_consent_pages_still_completes() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let uri = pushed_uri(&app, &client, &[]).await;
    let url = authorize_url(&app, &client.id, &uri, &[]);
    let b = browser();
    for _ in 0..3 {
        let page = b.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("action=\"/login\""), "{html}");
        // The page resumes the pushed request, not a copy of its parameters.
        let return_to = form_value(&html, "return_to").unwrap();
        assert!(return_to.contains("request_uri="), "{return_to}");
        assert!(!return_to.contains("code_challenge"), "{return_to}");
    }
    // Sign in from the last page, then reload the consent page before answering.
    let html = page(&b, &url).await;
    submit_login(&app, &b, &html, &user).await;
    for _ in 0..2 {
        let html = page(&b, &url).await;
        assert!(html.contains("action=\"/consent\""), "{html}");
    }
    let to = landing_code(&app, &b, &url, &user).await;
    let code = query(&to, "code").expect("code");
    let (status, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
}

#[tokio::test]
async fn prompt_login_and_consent_of_a_pushed_request_ask_once() {
    // Sign-ins and consents are compared with the push in whole seconds: the clock moves.
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let (client, user) = setup(&app).await;
    let b = browser();
    // A session and a consent first.
    code_through_par(&app, &b, &client, &user).await;
    clock.advance(5);

    let uri = pushed_uri(&app, &client, &[("prompt", "login consent")]).await;
    let url = authorize_url(&app, &client.id, &uri, &[]);
    let html = page(&b, &url).await;
    assert!(
        html.contains("action=\"/login\""),
        "prompt=login asks again: {html}"
    );
    clock.advance(5);
    let resume = submit_login(&app, &b, &html, &user).await;
    // Signed in after the push: prompt=login is answered; prompt=consent is asked once.
    let html = page(&b, resume.clone()).await;
    assert!(html.contains("action=\"/consent\""), "{html}");
    let resp = b
        .post(app.url("/consent"))
        .form(&[
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", form_value(&html, "return_to").unwrap()),
            ("decision", "allow".into()),
        ])
        .send()
        .await
        .unwrap();
    let resume = location(&resp).expect("back to /authorize");
    let resp = b.get(resume).send().await.unwrap();
    let to = location(&resp).expect("to the client");
    assert!(query(&to, "code").is_some(), "{to}");
}

#[tokio::test]
async fn two_parallel_completions_give_one_code() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let b = browser();
    code_through_par(&app, &b, &client, &user).await;
    // Signed in and consented: every visit goes straight to issuing the code.
    for _ in 0..5 {
        let uri = pushed_uri(&app, &client, &[]).await;
        let url = authorize_url(&app, &client.id, &uri, &[]);
        let (one, two) = tokio::join!(b.get(&url).send(), b.get(&url).send());
        let mut codes = 0;
        let mut refusals = 0;
        for resp in [one.unwrap(), two.unwrap()] {
            let to = location(&resp).expect("redirect");
            if query(&to, "code").is_some() {
                codes += 1;
            } else {
                assert_eq!(
                    query(&to, "error").as_deref(),
                    Some("invalid_request_uri"),
                    "{to}"
                );
                refusals += 1;
            }
        }
        assert_eq!((codes, refusals), (1, 1));
    }
}

#[tokio::test]
async fn hostile_input_on_par_gets_json_4xx() {
    let app = TestApp::spawn().await;
    let (client, _) = setup(&app).await;
    let secret = client.secret.clone().unwrap();
    let par = app.url("/par");
    let http = &app.http;
    let form = |extra: &[(&str, &str)]| pushed_form(&client, extra);
    let authed = || http.post(&par).basic_auth(&client.id, Some(&secret));
    let with = |extra: &[(&str, &str)]| authed().form(&form(extra));
    let raw = |body: String| {
        authed()
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let id = &client.id;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "no credentials",
            http.post(&par).form(&form(&[])),
            401,
            "invalid_client",
        ),
        (
            "wrong secret",
            http.post(&par)
                .basic_auth(id, Some("nope"))
                .form(&form(&[])),
            401,
            "invalid_client",
        ),
        (
            "a JSON body",
            authed().json(&serde_json::json!({"client_id": id})),
            400,
            "invalid_request",
        ),
        (
            "a repeated parameter",
            raw(format!("client_id={id}&scope=openid&scope=email")),
            400,
            "invalid_request",
        ),
        (
            "invalid UTF-8",
            raw("client_id=%ff%fe".into()),
            400,
            "invalid_request",
        ),
        (
            "a NUL",
            raw(format!("client_id={id}&state=a%00b")),
            400,
            "invalid_request",
        ),
        (
            "a huge body",
            raw(format!("client_id={id}&state={}", "a".repeat(200_000))),
            413,
            "",
        ),
        (
            "a request_uri inside",
            with(&[("request_uri", "urn:ietf:params:oauth:request_uri:x")]),
            400,
            "invalid_request",
        ),
        (
            "a request object",
            with(&[("request", "eyJhbGciOiJub25lIn0.e30.")]),
            400,
            "request_not_supported",
        ),
        (
            "an unregistered redirect URI",
            with(&[("redirect_uri", "https://evil.example/cb")]),
            400,
            "invalid_request",
        ),
        (
            "a scope the client may not ask for",
            with(&[("scope", "openid admin")]),
            400,
            "invalid_scope",
        ),
        (
            "no response_type",
            with(&[("response_type", "")]),
            400,
            "invalid_request",
        ),
        (
            "an implicit response_type",
            with(&[("response_type", "token")]),
            400,
            "unsupported_response_type",
        ),
        (
            "no client_id beside Basic credentials",
            with(&[("client_id", "")]),
            400,
            "invalid_request",
        ),
        (
            "another client_id than the credentials",
            with(&[("client_id", "someone-else")]),
            400,
            "invalid_request",
        ),
        (
            "a bad prompt",
            with(&[("prompt", "none login")]),
            400,
            "invalid_request",
        ),
        (
            "a bad claims parameter",
            with(&[("claims", "{not json")]),
            400,
            "invalid_request",
        ),
    ];
    for (what, req, status, code) in cases {
        let resp = req.send().await.unwrap();
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(got, status, "{what}: {text}");
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        if !code.is_empty() {
            assert_eq!(body["error"], code, "{what}: {body}");
        }
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
    let resp = http.get(&par).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    // Refusals of the authenticated client are audited; nothing was stored for any of them.
    assert_eq!(audit_count(&app, "par.refused").await, 9);
    assert_eq!(audit_count(&app, "par.accepted").await, 0);
}

#[tokio::test]
async fn discovery_lists_par_only_when_it_is_enabled() {
    let app = TestApp::spawn().await;
    let (_, _, meta) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["pushed_authorization_request_endpoint"],
        app.url("/par")
    );
    assert_eq!(meta["require_pushed_authorization_requests"], false);

    let off = app_with(|s| s.par.enabled = false).await;
    let (_, _, meta) = off
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        meta.get("pushed_authorization_request_endpoint").is_none(),
        "{meta}"
    );
    assert!(
        meta.get("require_pushed_authorization_requests").is_none(),
        "{meta}"
    );
    let client = off.confidential_client().await;
    let (status, body) = push(&off, &client, &[]).await;
    assert_eq!(status, 404, "{body}");
    // /authorize then knows no request_uri at all (OIDC Core §6.2).
    let url = authorize_url(
        &off,
        &client.id,
        &format!("{PREFIX}{}", "A".repeat(43)),
        &[("scope", "openid")],
    );
    let resp = browser().get(&url).send().await.unwrap();
    assert!(resp.status().as_u16() < 500);
    if let Some(to) = location(&resp) {
        assert_eq!(
            query(&to, "error").as_deref(),
            Some("request_uri_not_supported")
        );
    }
}

#[tokio::test]
async fn par_settings_are_checked_at_start_up() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    for (tune, key) in [
        (
            Box::new(|s: &mut portcullis::config::Settings| s.par.request_uri_ttl_secs = 0)
                as Box<dyn Fn(&mut _)>,
            "par.request_uri_ttl_secs",
        ),
        (
            Box::new(|s: &mut portcullis::config::Settings| s.par.request_uri_ttl_secs = 601),
            "par.request_uri_ttl_secs",
        ),
        (
            Box::new(|s: &mut portcullis::config::Settings| s.par.sign_in_ttl_secs = 30),
            "par.sign_in_ttl_secs",
        ),
        (
            Box::new(|s: &mut portcullis::config::Settings| {
                s.par.enabled = false;
                s.par.require = true;
            }),
            "par.require",
        ),
    ] {
        let mut settings = test_settings(dir.path(), url.clone());
        tune(&mut settings);
        let e = settings.validate().expect_err(key);
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[tokio::test]
async fn the_pushed_acr_values_decide_the_second_step_of_the_sign_in() {
    let app = TestApp::spawn().await;
    let (client, user) = setup(&app).await;
    let uri = pushed_uri(&app, &client, &[("acr_values", "mfa")]).await;
    let b = browser();
    let html = page(&b, authorize_url(&app, &client.id, &uri, &[])).await;
    // The login form resumes the request_uri alone; the password is not enough for it.
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
    assert_eq!(resp.status(), 200, "no session after the password alone");
    let html = resp.text().await.unwrap();
    assert!(html.contains("name=\"mfa_token\""), "{html}");
}
