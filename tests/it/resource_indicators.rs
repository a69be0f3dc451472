//! RFC 8707 resource indicators: tokens for one API (audience, scopes, lifetime), the
//! resources granted at authorization carried into refreshes, and `invalid_target`.

use portcullis::clients::ClientRegistration;
use portcullis::resources::NewResource;
use serde_json::Value;

use crate::common::{auth_url, browser, post_form, query, Landing, TestApp, TestClient, VERIFIER};
use crate::dpop_keys::claims;

pub const ORDERS: &str = "https://orders.example.com";
pub const REPORTS: &str = "https://reports.example.com/api";

/// Two registered APIs.
pub async fn register_apis(app: &TestApp) {
    for (id, scopes, ttl) in [
        (ORDERS, vec!["orders:read", "orders:write"], None),
        (REPORTS, vec!["reports"], Some(120)),
    ] {
        app.state
            .resources
            .create(
                &NewResource {
                    identifier: id.into(),
                    scopes: scopes.into_iter().map(String::from).collect(),
                    access_token_ttl_secs: ttl,
                },
                "test",
            )
            .await
            .unwrap();
    }
}

async fn rp(app: &TestApp) -> TestClient {
    app.register_client(ClientRegistration {
        name: "API consumer".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: Some("openid email offline_access orders:read orders:write reports".into()),
        resources: vec![ORDERS.into(), REPORTS.into()],
        ..Default::default()
    })
    .await
}

/// Signs in with `extra` authorization parameters; the code, or the error the client got.
async fn authorize(
    app: &TestApp,
    client: &TestClient,
    extra: &[(&str, &str)],
) -> Result<String, String> {
    let user = app
        .create_user(
            &format!("{}@example.org", uuid::Uuid::new_v4()),
            "correct horse battery",
        )
        .await;
    let mut url = url::Url::parse(&auth_url(app, client, &[])).unwrap();
    // `auth_url` sets each name once; resource may repeat.
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .extend_pairs(extra);
    match app.sign_in(&browser(), url.as_str(), &user, "allow").await {
        Landing::Client(to) => match query(&to, "code") {
            Some(code) => Ok(code),
            None => Err(query(&to, "error").unwrap_or_default()),
        },
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    }
}

async fn redeem(
    app: &TestApp,
    client: &TestClient,
    code: &str,
    resource: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code_verifier", VERIFIER),
    ];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    post_form(app, "/token", client, &form).await
}

#[tokio::test]
async fn a_token_for_a_resource_has_it_as_audience_and_only_its_scopes() {
    let app = TestApp::spawn().await;
    register_apis(&app).await;
    let client = rp(&app).await;
    let code = authorize(
        &app,
        &client,
        &[
            ("scope", "openid offline_access orders:read reports"),
            ("resource", ORDERS),
            ("resource", REPORTS),
        ],
    )
    .await
    .unwrap();
    let (status, tokens) = redeem(&app, &client, &code, Some(ORDERS)).await;
    assert_eq!(status, 200, "{tokens}");
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], ORDERS);
    assert_eq!(at["scope"], "orders:read");
    assert_eq!(tokens["scope"], "orders:read");
    // The ID token is the client's, whatever API the access token is for.
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], client.id.as_str());

    // RFC 8707 §2.2: the refresh token mints for the other API granted at authorization,
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = post_form(
        &app,
        "/token",
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("resource", REPORTS),
        ],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let at = claims(second["access_token"].as_str().unwrap());
    assert_eq!(
        (at["aud"].as_str(), at["scope"].as_str()),
        (Some(REPORTS), Some("reports"))
    );
    // with that API's own lifetime,
    assert_eq!(second["expires_in"], 120);
    assert_eq!(
        at["exp"].as_i64().unwrap() - at["iat"].as_i64().unwrap(),
        120
    );
    // and introspection answers for every API's tokens, naming the audience.
    let (_, info) = post_form(
        &app,
        "/introspect",
        &client,
        &[("token", second["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(
        (info["active"].as_bool(), info["aud"].as_str()),
        (Some(true), Some(REPORTS))
    );

    // Without a resource the token is the provider's own, as before.
    let refresh = second["refresh_token"].as_str().unwrap().to_string();
    let (status, third) = post_form(
        &app,
        "/token",
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 200, "{third}");
    let at = claims(third["access_token"].as_str().unwrap());
    assert_ne!(at["aud"], ORDERS);
    // The provider's own token still works at userinfo; an API's does not (its audience).
    let userinfo = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/userinfo"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        userinfo(third["access_token"].as_str().unwrap().into()).await,
        200
    );
    assert_eq!(
        userinfo(tokens["access_token"].as_str().unwrap().into()).await,
        401
    );
}

#[tokio::test]
async fn resources_not_granted_or_not_registered_are_invalid_target() {
    let app = TestApp::spawn().await;
    register_apis(&app).await;
    let client = rp(&app).await;
    // At /authorize: a resource the client is not allowed, or no absolute URI.
    for bad in [
        "https://elsewhere.example.com",
        "orders",
        "https://orders.example.com/#f",
    ] {
        let got = authorize(&app, &client, &[("resource", bad)]).await;
        assert_eq!(got, Err("invalid_target".into()), "{bad}");
    }
    // At /token: a resource the authorization did not name, or two at once.
    let code = authorize(
        &app,
        &client,
        &[("scope", "openid orders:read"), ("resource", ORDERS)],
    )
    .await
    .unwrap();
    let (status, body) = redeem(&app, &client, &code, Some(REPORTS)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    // The refused request did not spend the code.
    let (status, body) = redeem(&app, &client, &code, Some(ORDERS)).await;
    assert_eq!(status, 200, "{body}");

    let service = app
        .register_client(ClientRegistration {
            name: "Batch".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("orders:read reports".into()),
            resources: vec![ORDERS.into(), REPORTS.into()],
            ..Default::default()
        })
        .await;
    let cc = |resource: Vec<&'static str>| {
        let (app, service) = (&app, &service);
        async move {
            let mut form = vec![("grant_type", "client_credentials")];
            form.extend(resource.into_iter().map(|r| ("resource", r)));
            post_form(app, "/token", service, &form).await
        }
    };
    let (status, body) = cc(vec![ORDERS, REPORTS]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "two resources"
    );
    let (status, body) = cc(vec!["https://unknown.example.com"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let (status, body) = cc(vec![REPORTS]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["scope"],
        "reports"
    );
    // A deleted API is refused from then on.
    app.state.resources.delete(REPORTS, "test").await.unwrap();
    let (status, body) = cc(vec![REPORTS]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
}

#[tokio::test]
async fn a_client_may_only_be_allowed_registered_resources() {
    let app = TestApp::spawn().await;
    let err = portcullis::clients::register(
        &*app.state.store,
        &ClientRegistration {
            name: "x".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("a".into()),
            resources: vec![ORDERS.into()],
            ..Default::default()
        },
        0,
        "test",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("resource create"), "{err}");
}

#[tokio::test]
async fn pushed_requests_carry_their_resources() {
    let app = TestApp::spawn().await;
    register_apis(&app).await;
    let client = rp(&app).await;
    let push = |resources: Vec<&'static str>| {
        let (app, client) = (&app, &client);
        async move {
            let challenge = crate::common::challenge(VERIFIER);
            let mut form = vec![
                ("client_id", client.id.as_str()),
                ("response_type", "code"),
                ("redirect_uri", client.redirect_uri.as_str()),
                ("scope", "openid orders:read reports"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ];
            form.extend(resources.into_iter().map(|r| ("resource", r)));
            post_form(app, "/par", client, &form).await
        }
    };
    // RFC 9126 §2.3: a pushed request is validated like one at /authorize.
    let (status, body) = push(vec![ORDERS, "https://elsewhere.example.com"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = push(vec![ORDERS, REPORTS]).await;
    assert_eq!(status, 201, "{body}");
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("request_uri", body["request_uri"].as_str().unwrap());
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let code = match app.sign_in(&browser(), url.as_str(), &user, "allow").await {
        Landing::Client(to) => query(&to, "code").expect("code"),
        Landing::Page(s, html) => panic!("{s}: {html}"),
    };
    let (status, tokens) = redeem(&app, &client, &code, Some(REPORTS)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["aud"],
        REPORTS
    );
}
