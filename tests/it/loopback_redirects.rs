//! Loopback redirect URIs (RFC 8252 §7.3, RFC 9700 §2.1): any port only for public native
//! clients; confidential clients, non-loopback URIs and post-logout URIs match exactly.

use portcullis::clients::ClientRegistration;

use crate::common::{auth_url, browser, code_for, exchange, TestApp, TestClient, VERIFIER};

async fn client(app: &TestApp, public: bool, uris: &[&str]) -> TestClient {
    app.register_client(ClientRegistration {
        name: if public { "Native app" } else { "Web app" }.into(),
        redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
        post_logout_redirect_uris: if public {
            vec!["http://127.0.0.1:7777/bye".into()]
        } else {
            vec![]
        },
        public,
        ..Default::default()
    })
    .await
}

/// The authorization request for `client` naming `redirect_uri`.
async fn authorize(app: &TestApp, client: &TestClient, redirect_uri: &str) -> reqwest::Response {
    let url = auth_url(app, client, &[("redirect_uri", redirect_uri)]);
    browser().get(url).send().await.unwrap()
}

/// RFC 6749 §4.1.2.1: the error page, never a redirect towards the presented URI.
async fn assert_refused_with_a_page(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 400, "{what}");
    assert!(
        resp.headers().get("location").is_none(),
        "{what}: must not redirect"
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("Invalid sign-in request"), "{what}: {html}");
}

/// Accepted: with no session yet, the request goes on to the sign-in form.
async fn assert_accepted(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 200, "{what}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("action=\"/login\""), "{what}: {html}");
}

#[tokio::test]
async fn a_confidential_client_is_never_redirected_to_another_loopback_port() {
    let app = TestApp::spawn().await;
    let web = client(
        &app,
        false,
        &[
            "http://localhost:7777/cb",
            "http://127.0.0.1:7777/cb",
            "http://127.0.0.1/cb",
        ],
    )
    .await;
    for registered in [
        "http://localhost:7777/cb",
        "http://127.0.0.1:7777/cb",
        "http://127.0.0.1/cb",
    ] {
        assert_accepted(authorize(&app, &web, registered).await, registered).await;
    }
    for other_port in [
        "http://localhost:7778/cb",
        "http://localhost/cb",
        "http://127.0.0.1:7778/cb",
        "http://127.0.0.1:49152/cb",
    ] {
        assert_refused_with_a_page(authorize(&app, &web, other_port).await, other_port).await;
    }
}

#[tokio::test]
async fn a_public_native_client_may_use_any_port_on_its_loopback_uris() {
    let app = TestApp::spawn().await;
    let native = client(
        &app,
        true,
        &["http://127.0.0.1/cb", "http://localhost:7777/cb"],
    )
    .await;
    for any_port in [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:49152/cb",
        "http://localhost:7777/cb",
        "http://localhost:7778/cb",
        "http://localhost/cb",
    ] {
        assert_accepted(authorize(&app, &native, any_port).await, any_port).await;
    }
    // Only the port varies: not the host, the path, the scheme; never with a fragment.
    for other in [
        "http://localhost:7778/other",
        "http://127.0.0.1:7778/cb?x=1",
        "http://127.0.0.2:7778/cb",
        "http://[::1]:7778/cb",
        "https://localhost:7778/cb",
        "http://127.0.0.1:7778/cb#frag",
    ] {
        assert_refused_with_a_page(authorize(&app, &native, other).await, other).await;
    }

    // The whole flow on an ephemeral port: the code goes there and redeems there.
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let on_port = TestClient {
        id: native.id.clone(),
        secret: None,
        redirect_uri: "http://localhost:50123/cb".into(),
    };
    let (code, _) = code_for(&app, &on_port, &user).await;
    let resp = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", on_port.id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", on_port.redirect_uri.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_non_loopback_redirect_uri_never_varies_for_either_kind_of_client() {
    let app = TestApp::spawn().await;
    for public in [false, true] {
        let c = client(&app, public, &["https://app.example.com/cb"]).await;
        assert_accepted(
            authorize(&app, &c, "https://app.example.com/cb").await,
            "registered",
        )
        .await;
        for other in [
            "https://app.example.com:8443/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/cb/",
        ] {
            let what = format!("public={public} {other}");
            assert_refused_with_a_page(authorize(&app, &c, other).await, &what).await;
        }
    }
}

#[tokio::test]
async fn a_confidential_client_still_completes_the_flow_on_its_registered_loopback_port() {
    let app = TestApp::spawn().await;
    let web = client(&app, false, &["http://localhost:7777/cb"]).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (code, _) = code_for(&app, &web, &user).await;
    let (status, _, body) = exchange(&app, &web, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn post_logout_redirect_uris_match_exactly_even_for_native_clients() {
    let app = TestApp::spawn().await;
    let native = client(&app, true, &["http://127.0.0.1/cb"]).await;
    let end_session = |uri: &str| {
        let mut url = url::Url::parse(&app.url("/end_session")).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", &native.id)
            .append_pair("post_logout_redirect_uri", uri);
        url.to_string()
    };
    let resp = browser()
        .get(end_session("http://127.0.0.1:7778/bye"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    // The registered one is accepted (no session: the confirmation or a redirect, not a 400).
    let resp = browser()
        .get(end_session("http://127.0.0.1:7777/bye"))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 400);
}
