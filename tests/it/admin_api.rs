//! The admin REST API over HTTP against the real server: every route's guard (no token, no
//! admin role, no second factor when the policy covers admins), clients (register, search,
//! change, switch off, rotate the secret, delete; the console's client is read-only), sessions
//! and consents (ending them takes effect at the browser's and the client's next request),
//! signing keys, the audit trail naming the acting admin, and two instances seeing a change
//! at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{
    api, assert_error, auth_url, browser, code_at, first_party, fresh_database_url, post_form,
    query, redis_base_url, service_client, test_settings, tokens_for, Landing, TestApp, TestClient,
    TestUser,
};

const PASSWORD: &str = "violet staple kettle";

/// A third-party app with refresh tokens (it asks for consent).
async fn rp(app: &TestApp) -> TestClient {
    app.register_client(portcullis::clients::ClientRegistration {
        name: "Demo RP".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: Some("openid email offline_access".into()),
        ..Default::default()
    })
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    api(
        app,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

/// A user with these roles, signed in through the API: (user, access token).
async fn signed_in(app: &TestApp, email: &str, roles: &[&str]) -> (TestUser, String) {
    let user = app.create_user(email, PASSWORD).await;
    set_roles(app, &user, roles).await;
    let (status, body) = login(app, email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (user, body["accessToken"].as_str().unwrap().to_string())
}

async fn set_roles(app: &TestApp, user: &TestUser, roles: &[&str]) {
    let mut stored = app.state.store.get_user(user.id).await.unwrap().unwrap();
    stored.roles = roles.iter().map(|r| r.to_string()).collect();
    app.state.store.update_user(&stored, &[]).await.unwrap();
}

/// The newest audit event of this type, through the API.
async fn last_event(app: &TestApp, admin: &str, kind: &str) -> Value {
    let (status, page) = api(
        app,
        Method::GET,
        &format!("/admin/audit?type={kind}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"][0].clone()
}

/// Tries the client's secret at the token endpoint (client credentials).
async fn secret_works(app: &TestApp, id: &str, secret: &str) -> bool {
    let client = TestClient {
        id: id.to_string(),
        secret: Some(secret.to_string()),
        redirect_uri: String::new(),
    };
    let (status, _) = post_form(
        app,
        "/token",
        &client,
        &[("grant_type", "client_credentials")],
    )
    .await;
    status == 200
}

#[tokio::test]
async fn every_admin_route_needs_a_token_and_the_admin_role() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (user, user_token) = signed_in(&app, "ada@example.com", &["user"]).await;
    let (_, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let client = service_client(&app).await;
    let u = user.id;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/admin/clients".into(), None),
        (
            Method::POST,
            "/admin/clients".into(),
            Some(json!({"name": "x", "grantTypes": ["client_credentials"]})),
        ),
        (Method::GET, format!("/admin/clients/{}", client.id), None),
        (
            Method::PATCH,
            format!("/admin/clients/{}", client.id),
            Some(json!({"name": "y"})),
        ),
        (
            Method::POST,
            format!("/admin/clients/{}/secret", client.id),
            None,
        ),
        (Method::GET, format!("/admin/sessions?user={u}"), None),
        (Method::DELETE, format!("/admin/sessions?user={u}"), None),
        (Method::DELETE, "/admin/sessions/some-sid".into(), None),
        (Method::GET, format!("/admin/consents?user={u}"), None),
        (
            Method::DELETE,
            format!("/admin/consents/{}", uuid::Uuid::new_v4()),
            None,
        ),
        (Method::GET, "/admin/keys".into(), None),
        (Method::POST, "/admin/keys/rotate".into(), None),
        (Method::POST, "/admin/keys/some-kid/revoke".into(), None),
        (Method::GET, "/admin/resources".into(), None),
        (
            Method::POST,
            "/admin/resources".into(),
            Some(json!({"identifier": "https://api.example.com", "scopes": ["read"]})),
        ),
        (
            Method::DELETE,
            "/admin/resources?identifier=https%3A%2F%2Fapi.example.com".into(),
            None,
        ),
        (
            Method::DELETE,
            format!("/admin/clients/{}", client.id),
            None,
        ),
    ];
    for (method, path, body) in &routes {
        let none = api(&app, method.clone(), path, None, body.clone()).await;
        assert_error(&none, 401, "invalid_token");
        let bad = api(&app, method.clone(), path, Some("not-a-jwt"), body.clone()).await;
        assert_error(&bad, 401, "invalid_token");
        let user = api(&app, method.clone(), path, Some(&user_token), body.clone()).await;
        assert_error(&user, 403, "forbidden");
    }
    // The admin passes every guard (the client is deleted last).
    for (method, path, body) in &routes {
        let got = api(&app, method.clone(), path, Some(&admin), body.clone()).await;
        assert!(
            got.0.is_success() || got.0 == StatusCode::NOT_FOUND,
            "{method} {path}: {} {}",
            got.0,
            got.1
        );
    }
    // Every route is in the OpenAPI document, with the admin tag.
    let (_, _, doc) = app.get_json("/openapi.json").await;
    for path in [
        "/admin/clients",
        "/admin/clients/{id}",
        "/admin/clients/{id}/secret",
        "/admin/sessions",
        "/admin/sessions/{id}",
        "/admin/consents",
        "/admin/consents/{id}",
        "/admin/keys",
        "/admin/keys/rotate",
        "/admin/keys/{kid}/revoke",
        "/admin/resources",
    ] {
        let ops = doc["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path}"));
        for (method, op) in ops {
            assert_eq!(op["tags"], json!(["Admin"]), "{method} {path}");
            assert!(op["summary"].is_string(), "{method} {path} is documented");
        }
    }
}

#[tokio::test]
async fn admins_register_search_change_and_delete_clients() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (admin_user, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let actor = admin_user.id.to_string();

    // Register: 201, the secret once, never a hash.
    let (status, created) = api(
        &app,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({
            "name": "Billing",
            "redirectUris": ["https://billing.example.com/cb"],
            "grantTypes": ["authorization_code", "client_credentials"],
            "scope": "openid email invoices",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["clientSecret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43);
    assert_eq!(created["tokenEndpointAuthMethod"], "client_secret_basic");
    assert_eq!(created["scope"], "email invoices openid");
    assert_eq!(created["disabled"], false);
    assert!(!created.to_string().contains("ecretHash") && !created.to_string().contains("hash"));
    assert!(secret_works(&app, &id, &secret).await);
    let event = last_event(&app, &admin, "client.created").await;
    assert_eq!(
        (event["actor"].as_str(), event["clientId"].as_str()),
        (Some(actor.as_str()), Some(id.as_str()))
    );
    let (_, public) = api(
        &app,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({"name": "billing mobile", "redirectUris": ["com.example.billing:/cb"], "public": true})),
    )
    .await;
    assert!(public.get("clientSecret").is_none(), "{public}");
    assert_eq!(public["public"], true);
    let public_id = public["id"].as_str().unwrap().to_string();

    // Refused input: 422 with the words of `client create`; nothing is written.
    let before = app.state.store.list_clients().await.unwrap().len();
    for (body, code, words) in [
        (
            json!({"name": "x"}),
            "invalid_redirect_uri",
            "needs at least one --redirect-uri",
        ),
        (
            json!({"name": "x", "redirectUris": ["http://evil.example.com/cb"]}),
            "invalid_redirect_uri",
            "",
        ),
        (
            json!({"name": "x", "redirectUris": ["https://a.example.com/cb"], "grantTypes": ["password"]}),
            "invalid_client_metadata",
            "unknown grant \"password\"",
        ),
        (
            json!({"name": " ", "grantTypes": ["client_credentials"]}),
            "invalid_client_metadata",
            "1 to 100 characters",
        ),
        (
            json!({"name": "x", "grantTypes": ["client_credentials"], "public": true}),
            "invalid_client_metadata",
            "public client cannot use client_credentials",
        ),
        (
            json!({"name": "x", "grantTypes": ["client_credentials"], "idTokenAlg": "HS256"}),
            "invalid_client_metadata",
            "unknown signing algorithm",
        ),
    ] {
        let got = api(
            &app,
            Method::POST,
            "/admin/clients",
            Some(&admin),
            Some(body.clone()),
        )
        .await;
        let message = assert_error(&got, 422, code);
        assert!(message.contains(words), "{body}: {message}");
    }
    let malformed = api(
        &app,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({"redirectUris": "x"})),
    )
    .await;
    assert_error(&malformed, 400, "invalid_request");
    assert_eq!(app.state.store.list_clients().await.unwrap().len(), before);

    // Search, filter, sort, page.
    let list = |query: &str| {
        let (app, admin, path) = (&app, admin.clone(), format!("/admin/clients{query}"));
        async move {
            let (status, page) = api(app, Method::GET, &path, Some(&admin), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page
        }
    };
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let found = list("?q=BILL&sort=name&order=desc").await;
    assert_eq!(names(&found), ["billing mobile", "Billing"]);
    assert_eq!(found["total"], 2);
    assert_eq!(names(&list(&format!("?q={id}")).await), ["Billing"]);
    let all = list("?perPage=1&page=2").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        all["total"], 4,
        "the console's client, the product app and two more"
    );
    let first_party = list("?firstParty=true").await;
    assert!(names(&first_party).contains(&"Product app".to_string()));
    assert!(first_party["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["firstParty"] == true));
    let console = list("?q=portcullis-console").await;
    assert_eq!(console["items"][0]["builtIn"], true);
    for bad in [
        "?perPage=101",
        "?page=0",
        "?sort=secret",
        "?order=up",
        "?disabled=maybe",
    ] {
        assert_error(
            &api(
                &app,
                Method::GET,
                &format!("/admin/clients{bad}"),
                Some(&admin),
                None,
            )
            .await,
            400,
            "invalid_request",
        );
    }

    // One client; an unknown one is 404.
    let (status, one) = api(
        &app,
        Method::GET,
        &format!("/admin/clients/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one["redirectUris"],
        json!(["https://billing.example.com/cb"])
    );
    assert!(one.get("clientSecret").is_none());
    assert_error(
        &api(&app, Method::GET, "/admin/clients/nope", Some(&admin), None).await,
        404,
        "not_found",
    );

    // Change: validated as a whole, audited with what changed; null goes back to the default.
    let path = format!("/admin/clients/{id}");
    let (status, changed) = api(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"name": "Billing 2", "redirectUris": ["https://billing.example.com/v2/cb"], "idTokenAlg": "ES256", "requireMfa": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "Billing 2");
    assert_eq!(changed["idTokenAlg"], "ES256");
    assert_eq!(changed["requireMfa"], true);
    assert!(changed.get("clientSecret").is_none(), "the secret stays");
    assert!(secret_works(&app, &id, &secret).await);
    let event = last_event(&app, &admin, "client.updated").await;
    assert_eq!(event["actor"], actor);
    assert_eq!(
        event["detail"]["changed"],
        json!([
            "name",
            "redirect_uris",
            "id_token_signed_response_alg",
            "require_mfa"
        ])
    );
    let (_, reset) = api(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"idTokenAlg": null})),
    )
    .await;
    assert_eq!(reset["idTokenAlg"], Value::Null);
    for (body, code) in [
        (json!({"redirectUris": []}), "invalid_redirect_uri"),
        (
            json!({"redirectUris": ["https://a.example.com/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"grantTypes": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (json!({"scope": ""}), "invalid_client_metadata"),
        (
            json!({"backchannelLogoutUri": "ftp://x"}),
            "invalid_client_metadata",
        ),
    ] {
        assert_error(
            &api(&app, Method::PATCH, &path, Some(&admin), Some(body)).await,
            422,
            code,
        );
    }
    assert_error(
        &api(
            &app,
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"disabled": "yes"})),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &api(
            &app,
            Method::PATCH,
            "/admin/clients/nope",
            Some(&admin),
            Some(json!({"name": "z"})),
        )
        .await,
        404,
        "not_found",
    );

    // Switched off: unknown to the token endpoint, listed as disabled; and on again.
    let (_, off) = api(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(off["disabled"], true);
    assert!(!secret_works(&app, &id, &secret).await);
    assert_eq!(names(&list("?disabled=true").await), ["Billing 2"]);
    assert!(!names(&list("?disabled=false").await).contains(&"Billing 2".to_string()));
    assert_eq!(
        last_event(&app, &admin, "client.disabled").await["actor"],
        actor
    );
    api(
        &app,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"disabled": false})),
    )
    .await;
    assert!(secret_works(&app, &id, &secret).await);

    // Public to confidential issues a secret, once.
    let (_, now_confidential) = api(
        &app,
        Method::PATCH,
        &format!("/admin/clients/{public_id}"),
        Some(&admin),
        Some(json!({"public": false, "redirectUris": ["https://billing.example.com/m"]})),
    )
    .await;
    assert!(
        now_confidential["clientSecret"].as_str().is_some(),
        "{now_confidential}"
    );

    // Rotate: the new secret works, the old one no longer.
    let (status, rotated) = api(
        &app,
        Method::POST,
        &format!("{path}/secret"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["clientId"], id);
    let new_secret = rotated["clientSecret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(secret_works(&app, &id, new_secret).await);
    assert!(!secret_works(&app, &id, &secret).await);
    assert_eq!(
        last_event(&app, &admin, "client.secret_rotated").await["actor"],
        actor
    );
    let (_, made_public) = api(
        &app,
        Method::PATCH,
        &format!("/admin/clients/{public_id}"),
        Some(&admin),
        Some(json!({"public": true})),
    )
    .await;
    assert_eq!(made_public["public"], true);
    let no_secret = api(
        &app,
        Method::POST,
        &format!("/admin/clients/{public_id}/secret"),
        Some(&admin),
        None,
    )
    .await;
    assert_error(&no_secret, 409, "no_secret");

    // The console's own client is read-only here.
    let console = "/admin/clients/portcullis-console";
    let (status, _) = api(&app, Method::GET, console, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        (
            Method::PATCH,
            console.to_string(),
            Some(json!({"redirectUris": ["https://evil.example.com/cb"]})),
        ),
        (Method::DELETE, console.to_string(), None),
        (Method::POST, format!("{console}/secret"), None),
    ] {
        let message = assert_error(
            &api(&app, method, &path, Some(&admin), body).await,
            409,
            "built_in_client",
        );
        assert!(message.contains("console"), "{message}");
    }

    // Delete: 204, then 404; refused at once.
    let (status, _) = api(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!secret_works(&app, &id, new_secret).await);
    assert_error(
        &api(&app, Method::DELETE, &path, Some(&admin), None).await,
        404,
        "not_found",
    );
    assert_error(
        &api(&app, Method::GET, &path, Some(&admin), None).await,
        404,
        "not_found",
    );
    assert_eq!(
        last_event(&app, &admin, "client.deleted").await["actor"],
        actor
    );
}

#[tokio::test]
async fn a_client_changed_through_the_api_is_seen_at_once_by_another_instance() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    if let Some(redis) = redis_base_url() {
        settings.redis.url = Some(redis);
        // Long enough that only the announcement can explain a prompt change below.
        settings.database.client_cache_secs = 60;
    }
    let a = TestApp::spawn_with(
        settings.clone(),
        dir.clone(),
        Arc::new(portcullis::clock::SystemClock),
    )
    .await;
    let b = TestApp::spawn_instance(settings.clone(), &a.settings.issuer, dir.clone()).await;
    first_party(&a).await;
    let (_, admin) = signed_in(&a, "root@example.com", &["admin"]).await;
    let (_, created) = api(
        &a,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({"name": "Service", "grantTypes": ["client_credentials"], "scope": "api"})),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["clientSecret"].as_str().unwrap().to_string();
    assert!(
        secret_works(&b, &id, &secret).await,
        "B caches the client now"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions settle

    let path = format!("/admin/clients/{id}");
    let within = |wanted: bool| {
        let (b, id, secret) = (&b, id.clone(), secret.clone());
        async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(1500) {
                if secret_works(b, &id, &secret).await == wanted {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    let (status, _) = api(
        &a,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        within(false).await,
        "B refuses the disabled client within a second"
    );
    api(
        &a,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"disabled": false})),
    )
    .await;
    assert!(within(true).await, "B accepts it again");

    // A new secret on A: B refuses the old one.
    let (_, rotated) = api(
        &a,
        Method::POST,
        &format!("{path}/secret"),
        Some(&admin),
        None,
    )
    .await;
    let new_secret = rotated["clientSecret"].as_str().unwrap().to_string();
    assert!(
        within(false).await,
        "B refuses the old secret within a second"
    );
    assert!(secret_works(&b, &id, &new_secret).await);
}

#[tokio::test]
async fn admins_see_and_end_a_users_sessions() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (admin_user, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let sign_in = |b: reqwest::Client| {
        let (app, client, user) = (&app, &client, &user);
        async move {
            match app
                .sign_in(&b, &auth_url(app, client, &[]), user, "allow")
                .await
            {
                Landing::Client(to) => assert!(query(&to, "code").is_some()),
                Landing::Page(s, h) => panic!("{s}: {h}"),
            }
            b
        }
    };
    let first = sign_in(browser()).await;
    let second = sign_in(browser()).await;
    let path = format!("/admin/sessions?user={}", user.id);
    let (status, list) = api(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let newest = &items[0];
    assert_eq!(newest["amr"], json!(["pwd"]));
    assert_eq!(newest["userId"], user.id.to_string());
    for field in ["id", "createdAt", "lastSeenAt", "expiresAt", "authTime"] {
        assert!(newest[field].is_string(), "{field}: {newest}");
    }
    assert!(!list.to_string().contains("idHash"));
    assert_eq!(
        (list["total"].as_u64(), list["perPage"].as_u64()),
        (Some(2), Some(50))
    );
    let paged = format!("{path}&page=2&perPage=1");
    let (status, page2) = api(&app, Method::GET, &paged, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{page2}");
    assert_eq!(page2["items"][0]["id"], items[1]["id"], "the second page");
    assert_eq!(page2["total"], 2);
    let (status, _) = api(
        &app,
        Method::GET,
        &format!("{path}&perPage=101"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "perPage is capped at 100");

    // Ending one session: that browser's next request must sign in again; the other
    // browser is still signed in.
    let silent = |b: &reqwest::Client| {
        let url = auth_url(&app, &client, &[("prompt", "none")]);
        let b = b.clone();
        async move {
            let resp = b.get(url).send().await.unwrap();
            let to = crate::common::location(&resp).expect("a redirect to the client");
            query(&to, "error").unwrap_or_else(|| "ok".into())
        }
    };
    assert_eq!(
        (silent(&first).await, silent(&second).await),
        ("ok".into(), "ok".into())
    );
    let sid = newest["id"].as_str().unwrap();
    let (status, _) = api(
        &app,
        Method::DELETE,
        &format!("/admin/sessions/{sid}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut after = vec![silent(&first).await, silent(&second).await];
    after.sort();
    assert_eq!(
        after,
        ["login_required", "ok"],
        "exactly the ended session is gone"
    );
    let event = last_event(&app, &admin, "session.ended").await;
    assert_eq!(event["actor"], admin_user.id.to_string());
    assert_eq!(event["subject"], user.id.to_string());
    assert_eq!(event["detail"]["sid"], sid);
    assert_error(
        &api(
            &app,
            Method::DELETE,
            &format!("/admin/sessions/{sid}"),
            Some(&admin),
            None,
        )
        .await,
        404,
        "not_found",
    );

    // All of them: the answer says how many.
    let (status, ended) = api(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["ended"], 1);
    assert_eq!(silent(&first).await, "login_required");
    assert_eq!(silent(&second).await, "login_required");
    let (_, list) = api(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(list["items"], json!([]));

    // Bad input.
    let nobody = format!("/admin/sessions?user={}", uuid::Uuid::new_v4());
    assert_error(
        &api(&app, Method::GET, &nobody, Some(&admin), None).await,
        404,
        "not_found",
    );
    assert_error(
        &api(&app, Method::DELETE, &nobody, Some(&admin), None).await,
        404,
        "not_found",
    );
    for bad in ["/admin/sessions", "/admin/sessions?user=ada"] {
        assert_error(
            &api(&app, Method::GET, bad, Some(&admin), None).await,
            400,
            "invalid_request",
        );
    }
}

#[tokio::test]
async fn revoking_a_consent_stops_the_clients_refresh_token() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (admin_user, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let client = rp(&app).await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (_, tokens) = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let path = format!("/admin/consents?user={}", user.id);
    let (status, list) = api(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let consent = &list["items"][0];
    assert_eq!(consent["clientId"], client.id);
    assert_eq!(consent["clientName"], "Demo RP");
    assert_eq!(consent["userId"], user.id.to_string());
    assert!(consent["scope"]
        .as_str()
        .unwrap()
        .contains("offline_access"));
    let id = consent["id"].as_str().unwrap();

    let (status, _) = api(
        &app,
        Method::DELETE,
        &format!("/admin/consents/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = post_form(
        &app,
        "/token",
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (_, list) = api(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(list["items"], json!([]));
    let event = last_event(&app, &admin, "consent.revoked").await;
    assert_eq!(event["actor"], admin_user.id.to_string());
    assert_eq!(event["clientId"], client.id);

    assert_error(
        &api(
            &app,
            Method::DELETE,
            &format!("/admin/consents/{id}"),
            Some(&admin),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &api(
            &app,
            Method::DELETE,
            "/admin/consents/not-a-uuid",
            Some(&admin),
            None,
        )
        .await,
        400,
        "invalid_request",
    );
    let nobody = format!("/admin/consents?user={}", uuid::Uuid::new_v4());
    assert_error(
        &api(&app, Method::GET, &nobody, Some(&admin), None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn admins_list_rotate_and_revoke_signing_keys() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (admin_user, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let (status, keys) = api(&app, Method::GET, "/admin/keys", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let items = keys["items"].as_array().unwrap();
    let next_es = items
        .iter()
        .find(|k| k["alg"] == "ES256" && k["state"] == "next")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    for k in items {
        let mut fields: Vec<&String> = k.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "activatedAt",
                "alg",
                "createdAt",
                "kid",
                "published",
                "retiredAt",
                "state"
            ],
            "nothing private: {k}"
        );
    }

    let (status, rotated) = api(&app, Method::POST, "/admin/keys/rotate", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(rotated["active"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["alg"] == "ES256" && k["kid"] == next_es.as_str()));
    let event = last_event(&app, &admin, "keys.rotated").await;
    assert_eq!(event["actor"], admin_user.id.to_string());

    // The old ES256 key is retired; revoking it takes it out of the JWKS.
    let (_, keys) = api(&app, Method::GET, "/admin/keys", Some(&admin), None).await;
    let retired = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "ES256" && k["state"] == "retired")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, jwks) = app.get_json("/jwks.json").await;
    assert!(jwks.to_string().contains(&retired));
    let (status, _) = api(
        &app,
        Method::POST,
        &format!("/admin/keys/{retired}/revoke"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, jwks) = app.get_json("/jwks.json").await;
    assert!(!jwks.to_string().contains(&retired));
    // The admin's own token was signed with that key: it no longer verifies.
    let (status, _) = api(&app, Method::GET, "/admin/keys", Some(&admin), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, fresh) = login(&app, "root@example.com", PASSWORD).await;
    let admin = fresh["accessToken"].as_str().unwrap().to_string();
    let event = last_event(&app, &admin, "keys.revoked").await;
    assert_eq!(event["actor"], admin_user.id.to_string());
    assert_eq!(event["detail"]["kid"], retired.as_str());
    assert_error(
        &api(
            &app,
            Method::POST,
            &format!("/admin/keys/{retired}/revoke"),
            Some(&admin),
            None,
        )
        .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn admin_writes_need_a_second_factor_when_the_policy_covers_admins() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.accounts.mfa.required_for_roles = vec!["admin".into()];
    let clock = portcullis::clock::ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with(settings, dir, Arc::new(clock.clone())).await;
    first_party(&app).await;
    let other = app.create_user("bob@example.com", PASSWORD).await;
    // Signed in with a password while still a plain user, then made an admin: the token's
    // sign-in had no second factor.
    let (root, password_only) = signed_in(&app, "root@example.com", &["user"]).await;
    set_roles(&app, &root, &["admin"]).await;

    let (status, _) = api(
        &app,
        Method::GET,
        "/admin/clients",
        Some(&password_only),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "reads need no second factor");
    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/admin/clients".into(),
            Some(json!({"name": "x", "grantTypes": ["client_credentials"]})),
        ),
        (Method::POST, "/admin/keys/rotate".into(), None),
        (
            Method::DELETE,
            format!("/admin/sessions?user={}", other.id),
            None,
        ),
        (
            Method::PATCH,
            format!("/users/{}", other.id),
            Some(json!({"disabled": true})),
        ),
        (
            Method::PATCH,
            format!("/users/{}", other.id),
            Some(json!({"name": "Robert"})),
        ),
        (Method::DELETE, format!("/users/{}", other.id), None),
    ];
    for (method, path, body) in &writes {
        let got = api(
            &app,
            method.clone(),
            path,
            Some(&password_only),
            body.clone(),
        )
        .await;
        let message = assert_error(&got, 401, "insufficient_user_authentication");
        assert!(message.contains("second factor"), "{message}");
    }
    // Their own name is not an admin change.
    let (status, me) = api(
        &app,
        Method::PATCH,
        &format!("/users/{}", root.id),
        Some(&password_only),
        Some(json!({"name": "Root"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let still = app.state.store.get_user(other.id).await.unwrap().unwrap();
    assert!(!still.disabled && still.deleted_at.is_none());

    // After a sign-in with an authenticator app, the same writes pass.
    let got = login(&app, &root.email, PASSWORD).await;
    assert_error(&got, 401, "mfa_enrollment_required");
    let pending = got.1["mfaToken"].as_str().unwrap().to_string();
    let (status, started) = api(
        &app,
        Method::POST,
        "/auth/mfa/totp",
        None,
        Some(json!({"mfaToken": pending})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    use portcullis::clock::Clock;
    let code = code_at(started["secret"].as_str().unwrap(), clock.now());
    let (status, tokens) = api(
        &app,
        Method::POST,
        "/auth/login/mfa",
        None,
        Some(json!({"mfaToken": pending, "code": code})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let with_mfa = tokens["accessToken"].as_str().unwrap();
    for (method, path, body) in &writes {
        let got = api(&app, method.clone(), path, Some(with_mfa), body.clone()).await;
        assert!(got.0.is_success(), "{method} {path}: {} {}", got.0, got.1);
    }
    let gone = app.state.store.get_user(other.id).await.unwrap().unwrap();
    assert!(gone.deleted_at.is_some());
}

async fn userinfo_status(app: &TestApp, token: &str) -> StatusCode {
    app.http
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// "Sign out everywhere" reaches sessions past the idle timeout too (their refresh tokens
/// outlive it), and an access token minted straight from a code (no refresh token: the
/// console's kind) stops working with its session.
#[tokio::test]
async fn ending_sessions_reaches_idle_ones_and_tokens_minted_from_codes() {
    let clock = portcullis::clock::ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    first_party(&app).await;
    let client = app
        .register_client(portcullis::clients::ClientRegistration {
            name: "Session-bound RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scope: Some("openid email".into()),
            always_issue_refresh_token: true,
            ..Default::default()
        })
        .await;
    let user = app.create_user("ada@example.com", PASSWORD).await;
    let (_, idle) = tokens_for(&app, &client, &user, "openid email").await;
    let refresh = idle["refresh_token"].as_str().expect("a refresh token");
    clock.advance(app.state.settings.sessions.idle_timeout_secs as i64 + 1);

    let (_, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let path = format!("/admin/sessions?user={}", user.id);
    let (_, list) = api(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(
        list["items"],
        json!([]),
        "an idle session is not listed as live"
    );
    let (status, ended) = api(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    let (status, body) = post_form(
        &app,
        "/token",
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the idle session's refresh token died with it: {body}"
    );

    let other = rp(&app).await;
    let (_, fresh) = tokens_for(&app, &other, &user, "openid email").await;
    assert!(fresh.get("refresh_token").is_none(), "{fresh}");
    let access = fresh["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&app, access).await, StatusCode::OK);
    let (status, ended) = api(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!((status, ended["ended"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(
        userinfo_status(&app, access).await,
        StatusCode::UNAUTHORIZED,
        "an access token from a code is denied when its session ends"
    );
}

/// A relying party an admin signed in to holds no admin powers over other accounts, nor the
/// account API over the admin's own.
#[tokio::test]
async fn a_relying_partys_token_reads_no_other_user_and_changes_nothing() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let client = rp(&app).await;
    let (admin_user, _) = signed_in(&app, "root@example.com", &["admin"]).await;
    let other = app.create_user("ada@example.com", PASSWORD).await;
    let (_, tokens) = tokens_for(&app, &client, &admin_user, "openid email").await;
    let token = tokens["access_token"].as_str().unwrap();
    let mine = format!("/users/{}", admin_user.id);
    let (status, me) = api(&app, Method::GET, &mine, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_error(
        &api(
            &app,
            Method::GET,
            &format!("/users/{}", other.id),
            Some(token),
            None,
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &api(
            &app,
            Method::PATCH,
            &mine,
            Some(token),
            Some(json!({"name": "Mallory"})),
        )
        .await,
        403,
        "forbidden",
    );
}

/// NUL cannot be stored in text (PostgreSQL refuses the query): a search for it finds
/// nothing rather than failing.
#[tokio::test]
async fn searches_with_nul_find_nothing_and_never_fail() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (_, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    for path in [
        "/admin/clients?q=%00",
        "/users?email=a%00",
        "/users?role=%00",
        "/admin/audit?type=user.%00",
    ] {
        let (status, page) = api(&app, Method::GET, path, Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert_eq!(page["items"], json!([]), "{path}");
    }
}

#[tokio::test]
async fn admins_register_list_and_delete_resources() {
    let app = TestApp::spawn().await;
    first_party(&app).await;
    let (_, admin) = signed_in(&app, "root@example.com", &["admin"]).await;
    let body = json!({
        "identifier": "https://orders.example.com",
        "scopes": ["orders:read", "orders:write"],
        "accessTokenLifetimeSecs": 300
    });
    let (status, created) = api(
        &app,
        Method::POST,
        "/admin/resources",
        Some(&admin),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["accessTokenLifetimeSecs"], 300);
    let again = api(
        &app,
        Method::POST,
        "/admin/resources",
        Some(&admin),
        Some(body),
    )
    .await;
    assert_error(&again, 409, "resource_exists");
    for bad in [
        json!({"identifier": "not a uri", "scopes": ["x"]}),
        json!({"identifier": "https://a.example.com", "scopes": []}),
        json!({"identifier": "https://a.example.com", "scopes": ["x"], "accessTokenLifetimeSecs": 1}),
    ] {
        let got = api(
            &app,
            Method::POST,
            "/admin/resources",
            Some(&admin),
            Some(bad.clone()),
        )
        .await;
        assert_error(&got, 422, "invalid_resource");
    }
    let (status, list) = api(&app, Method::GET, "/admin/resources", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["identifier"], "https://orders.example.com");
    assert_eq!(
        last_event(&app, &admin, "resource.created").await["detail"]["resource"],
        "https://orders.example.com"
    );
    // A client gets the resource and DPoP through the clients API.
    let (status, client) = api(
        &app,
        Method::POST,
        "/admin/clients",
        Some(&admin),
        Some(json!({
            "name": "batch", "grantTypes": ["client_credentials"], "scope": "orders:read",
            "resources": ["https://orders.example.com"], "dpopBoundAccessTokens": true
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    assert_eq!(client["resources"], json!(["https://orders.example.com"]));
    assert_eq!(client["dpopBoundAccessTokens"], true);
    let path = "/admin/resources?identifier=https%3A%2F%2Forders.example.com";
    let (status, _) = api(&app, Method::DELETE, path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = api(&app, Method::DELETE, path, Some(&admin), None).await;
    assert_error(&gone, 404, "not_found");
}
