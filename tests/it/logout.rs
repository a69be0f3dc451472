//! RP-initiated logout, back-channel logout, and CORS for browser clients.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use poem::web::Data;
use poem::{handler, post, EndpointExt, Route, Server};
use portcullis::clients::ClientRegistration;
use serde_json::Value;

use crate::common::{form_value, location, query, Landing, TestApp, TestClient, TestUser};

fn auth_url(app: &TestApp, client: &TestClient, scope: &str, prompt: Option<&str>) -> String {
    crate::common::auth_url(
        app,
        client,
        &[("scope", scope), ("prompt", prompt.unwrap_or(""))],
    )
}

/// Signs in with a browser and exchanges the code: (browser, token response).
async fn signed_in(
    app: &TestApp,
    client: &TestClient,
    user: &TestUser,
    scope: &str,
) -> (reqwest::Client, Value) {
    crate::common::tokens_for(app, client, user, scope).await
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A relying party that registered `https://rp.example.com/bye` for after logout.
async fn rp_with_logout_return(app: &TestApp) -> TestClient {
    app.register_client(ClientRegistration {
        name: "RP".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        post_logout_redirect_uris: vec!["https://rp.example.com/bye".into()],
        ..Default::default()
    })
    .await
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

#[handler]
async fn receive(body: String, got: Data<&Received>) -> &'static str {
    got.0 .0.lock().unwrap().push(body);
    "ok"
}

/// A relying party's back-channel logout endpoint on a free loopback port.
async fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let got = Received::default();
    let app = Route::new().at("/bcl", post(receive)).data(got.clone());
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}/bcl"), got)
}

#[tokio::test]
async fn logout_with_a_matching_hint_ends_the_session_tells_the_rp_and_returns_with_state() {
    let app = TestApp::spawn().await;
    let (bcl_uri, received) = receiver().await;
    let client = app
        .register_client(ClientRegistration {
            name: "RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            post_logout_redirect_uris: vec!["https://rp.example.com/bye".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            backchannel_logout_uri: Some(bcl_uri),
            backchannel_logout_session_required: true,
            ..Default::default()
        })
        .await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (b, tokens) = signed_in(&app, &client, &user, "openid email").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let sid = claims_of(id_token)["sid"].as_str().unwrap().to_string();
    let access = tokens["access_token"].as_str().unwrap();

    let mut url = url::Url::parse(&app.url("/end_session")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "https://rp.example.com/bye")
        .append_pair("state", "after-logout");
    let resp = b.get(url.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let to = location(&resp).unwrap();
    assert!(to.as_str().starts_with("https://rp.example.com/bye"));
    assert_eq!(query(&to, "state").as_deref(), Some("after-logout"));

    // Afterwards prompt=none answers login_required.
    let resp = b
        .get(auth_url(&app, &client, "openid email", Some("none")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(&location(&resp).unwrap(), "error").as_deref(),
        Some("login_required")
    );
    let _ = access;

    // The RP received a logout token that validates against the JWKS.
    let mut body = None;
    for _ in 0..50 {
        if let Some(b) = received.0.lock().unwrap().first().cloned() {
            body = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = body.expect("a logout token was delivered");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let (_, _, jwks) = app.get_json("/jwks.json").await;
    crate::keys::verify_with_jwks(&jwks, &token).expect("verifies against the JWKS");
    let (payload, header, _) = app
        .state
        .keys
        .ring()
        .verify(&token)
        .expect("signed by a published key");
    assert_eq!(header.token_type(), Some("logout+jwt"));
    let claims = payload.claims_set();
    assert_eq!(claims["iss"], app.base.as_str());
    assert_eq!(claims["aud"], client.id.as_str());
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["sub"], user.id.to_string());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    assert!(claims["jti"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());
}

#[tokio::test]
async fn logout_revokes_session_bound_refresh_tokens_but_not_offline_ones() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            always_issue_refresh_token: true,
            ..Default::default()
        })
        .await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (b, online) = signed_in(&app, &client, &user, "openid").await;
    // Same browser, same session: an offline_access grant too.
    let code = match app
        .sign_in(
            &b,
            &auth_url(&app, &client, "openid offline_access", None),
            &user,
            "allow",
        )
        .await
    {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, h) => panic!("{s}: {h}"),
    };
    let (_, _, offline) =
        crate::common::exchange(&app, &client, &code, crate::common::VERIFIER).await;

    let mut url = url::Url::parse(&app.url("/end_session")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", online["id_token"].as_str().unwrap());
    let resp = b.get(url.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("You are signed out"));

    let refresh = |t: &Value| {
        let token = t["refresh_token"].as_str().unwrap().to_string();
        let app = &app;
        let client = &client;
        async move {
            app.http
                .post(app.url("/token"))
                .basic_auth(&client.id, client.secret.as_deref())
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(refresh(&online).await, 400, "bound to the ended session");
    assert_eq!(
        refresh(&offline).await,
        200,
        "offline_access outlives the session"
    );
}

#[tokio::test]
async fn logout_without_a_hint_asks_for_confirmation() {
    let app = TestApp::spawn().await;
    let client = rp_with_logout_return(&app).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (b, _) = signed_in(&app, &client, &user, "openid").await;
    let mut url = url::Url::parse(&app.url("/end_session")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("post_logout_redirect_uri", "https://rp.example.com/bye")
        .append_pair("state", "x");
    let page = b
        .get(url.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign out?"), "{page}");
    // Still signed in until confirmed.
    let resp = b
        .get(auth_url(&app, &client, "openid", Some("none")))
        .send()
        .await
        .unwrap();
    assert!(query(&location(&resp).unwrap(), "code").is_some());
    let form: Vec<(String, String)> = ["csrf", "client_id", "post_logout_redirect_uri", "state"]
        .iter()
        .map(|k| (k.to_string(), form_value(&page, k).unwrap()))
        .chain([("decision".to_string(), "logout".to_string())])
        .collect();
    let resp = b
        .post(app.url("/end_session"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        query(&location(&resp).unwrap(), "state").as_deref(),
        Some("x")
    );
    let resp = b
        .get(auth_url(&app, &client, "openid", Some("none")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(&location(&resp).unwrap(), "error").as_deref(),
        Some("login_required")
    );

    // An unregistered return address is refused with a page, never followed.
    let mut url = url::Url::parse(&app.url("/end_session")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("post_logout_redirect_uri", "https://evil.example.com/");
    let resp = b.get(url.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    let resp = b
        .get(format!("{}?id_token_hint=forged", app.url("/end_session")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn cors_answers_only_registered_web_origins_and_never_on_pages() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "SPA".into(),
            redirect_uris: vec!["https://spa.example.com/callback".into()],
            public: true,
            ..Default::default()
        })
        .await;
    for path in [
        "/token",
        "/userinfo",
        "/revoke",
        "/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let resp = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://spa.example.com")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{path}");
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "https://spa.example.com"
        );
        let resp = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://evil.example.com")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    let resp = app
        .http
        .get(app.url("/jwks.json"))
        .header("origin", "https://spa.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://spa.example.com"
    );
    let resp = app
        .http
        .get(auth_url(&app, &client, "openid", None))
        .header("origin", "https://spa.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "never on /authorize"
    );
}

#[tokio::test]
async fn confirming_a_logout_whose_hint_names_another_user_still_returns_to_the_client() {
    let app = TestApp::spawn().await;
    let client = rp_with_logout_return(&app).await;
    let ada = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let bob = app
        .create_user("bob@example.org", "another long password")
        .await;
    let (_, bobs) = signed_in(&app, &client, &bob, "openid").await;
    let (b, _) = signed_in(&app, &client, &ada, "openid").await;
    let mut url = url::Url::parse(&app.url("/end_session")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", bobs["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "https://rp.example.com/bye");
    let page = b
        .get(url.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Sign out?"),
        "another user's hint needs confirmation"
    );
    let form: Vec<(String, String)> = ["csrf", "id_token_hint", "post_logout_redirect_uri"]
        .iter()
        .map(|k| (k.to_string(), form_value(&page, k).unwrap()))
        .chain([("decision".to_string(), "logout".to_string())])
        .collect();
    let resp = b
        .post(app.url("/end_session"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(location(&resp)
        .unwrap()
        .as_str()
        .starts_with("https://rp.example.com/bye"));
}
