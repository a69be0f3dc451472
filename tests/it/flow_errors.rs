//! Every way an authorization request or a code exchange can go wrong: the exact error, the
//! status, and where the user ends up.

use std::sync::Arc;

use portcullis::clients::ClientRegistration;
use portcullis::clock::ManualClock;
use serde_json::Value;

use crate::common::{
    auth_url, browser, code_for, exchange, form_value, location, query, Landing, TestApp,
    TestClient, TestUser, VERIFIER,
};

async fn setup() -> (TestApp, TestClient, TestUser) {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    (app, client, user)
}

/// Asserts an error redirect to the client with `state` and `iss`.
fn assert_error_redirect(
    app: &TestApp,
    client: &TestClient,
    resp: &reqwest::Response,
    error: &str,
) {
    assert_eq!(resp.status(), 303, "an error redirect");
    let to = location(resp).unwrap();
    assert!(to.as_str().starts_with(&client.redirect_uri), "{to}");
    assert_eq!(query(&to, "error").as_deref(), Some(error), "{to}");
    assert!(query(&to, "error_description").is_some());
    assert_eq!(query(&to, "state").as_deref(), Some("st4te"));
    assert_eq!(query(&to, "iss").as_deref(), Some(app.base.as_str()));
    assert!(query(&to, "code").is_none());
}

async fn get(url: &str) -> reqwest::Response {
    browser().get(url).send().await.unwrap()
}

/// Signs in and returns a fresh code, and the browser (which holds the session).
#[tokio::test]
async fn unknown_clients_and_unregistered_redirect_uris_show_a_page_and_never_redirect() {
    let (app, client, _) = setup().await;
    for extra in [
        vec![("redirect_uri", "https://evil.example.com/cb")],
        vec![("redirect_uri", "https://rp.example.com/cb/../evil")],
        vec![("redirect_uri", "https://rp.example.com/cb?x=1")],
        vec![("client_id", "no-such-client")],
        vec![("client_id", "")],
        vec![("redirect_uri", "")],
    ] {
        let resp = get(&auth_url(&app, &client, &extra)).await;
        assert_eq!(resp.status(), 400, "{extra:?}");
        assert!(
            resp.headers().get("location").is_none(),
            "{extra:?}: must not redirect"
        );
        let html = resp.text().await.unwrap();
        assert!(html.contains("Invalid sign-in request"), "{html}");
    }
}

#[tokio::test]
async fn request_errors_go_back_to_the_client_with_state_and_iss() {
    let (app, client, _) = setup().await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "S512")], "invalid_request"),
        (vec![("code_challenge", "too-short")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("prompt", "none login")], "invalid_request"),
        (vec![("max_age", "-1")], "invalid_request"),
        (vec![("response_mode", "fragment")], "invalid_request"),
        (vec![("request", "eyJ...")], "request_not_supported"),
        (
            vec![("request_uri", "https://x.example/r")],
            "request_uri_not_supported",
        ),
        (vec![("id_token_hint", "not-a-token")], "invalid_request"),
    ];
    for (extra, error) in cases {
        let resp = get(&auth_url(&app, &client, &extra)).await;
        assert_error_redirect(&app, &client, &resp, error);
    }
}

#[tokio::test]
async fn clients_without_the_code_grant_are_unauthorized() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "Service".into(),
            redirect_uris: vec!["https://svc.example.com/cb".into()],
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        })
        .await;
    let resp = get(&auth_url(&app, &client, &[])).await;
    assert_error_redirect(&app, &client, &resp, "unauthorized_client");
}

#[tokio::test]
async fn prompt_none_needs_a_session_and_a_consent() {
    let (app, client, user) = setup().await;
    let resp = get(&auth_url(&app, &client, &[("prompt", "none")])).await;
    assert_error_redirect(&app, &client, &resp, "login_required");

    // Signed in, but the scope grows beyond what was consented.
    let (_, b) = code_for(&app, &client, &user).await;
    let resp = b
        .get(auth_url(
            &app,
            &client,
            &[("prompt", "none"), ("scope", "openid email profile")],
        ))
        .send()
        .await
        .unwrap();
    assert_error_redirect(&app, &client, &resp, "consent_required");
    // Within the consented scope, prompt=none succeeds silently.
    let resp = b
        .get(auth_url(&app, &client, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    let to = location(&resp).unwrap();
    assert!(query(&to, "code").is_some(), "{to}");
    // max_age=0 demands a fresh login, which prompt=none cannot give.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = b
        .get(auth_url(
            &app,
            &client,
            &[("prompt", "none"), ("max_age", "0")],
        ))
        .send()
        .await
        .unwrap();
    assert_error_redirect(&app, &client, &resp, "login_required");
}

#[tokio::test]
async fn a_remembered_consent_is_not_asked_again_until_the_scopes_grow() {
    let (app, client, user) = setup().await;
    let (_, b) = code_for(&app, &client, &user).await;
    let resp = b.get(auth_url(&app, &client, &[])).send().await.unwrap();
    assert_eq!(resp.status(), 303, "no page: consent remembered");
    assert!(query(&location(&resp).unwrap(), "code").is_some());
    let resp = b
        .get(auth_url(
            &app,
            &client,
            &[("scope", "openid email profile")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("action=\"/consent\""));
    // prompt=consent asks even when remembered.
    let resp = b
        .get(auth_url(&app, &client, &[("prompt", "consent")]))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("action=\"/consent\""));
}

#[tokio::test]
async fn first_party_clients_skip_consent() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "Our app".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            first_party: true,
            ..Default::default()
        })
        .await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    // "deny" would be sent if a consent page appeared; landing with a code proves it did not.
    let Landing::Client(to) = app
        .sign_in(&browser(), &auth_url(&app, &client, &[]), &user, "deny")
        .await
    else {
        panic!("expected a redirect");
    };
    assert!(query(&to, "code").is_some(), "{to}");
}

#[tokio::test]
async fn denying_consent_answers_access_denied() {
    let (app, client, user) = setup().await;
    let Landing::Client(to) = app
        .sign_in(&browser(), &auth_url(&app, &client, &[]), &user, "deny")
        .await
    else {
        panic!("expected a redirect");
    };
    assert_eq!(query(&to, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&to, "state").as_deref(), Some("st4te"));
    assert_eq!(query(&to, "iss").as_deref(), Some(app.base.as_str()));
}

#[tokio::test]
async fn login_failures_show_one_message_and_logins_get_a_new_session_id() {
    let (app, client, user) = setup().await;
    let b = browser();
    let page = b
        .get(auth_url(&app, &client, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&page, "csrf").unwrap();
    let return_to = form_value(&page, "return_to").unwrap();
    let mut messages = Vec::new();
    for (username, password) in [
        ("ada@example.org", "wrong password!"),
        ("nobody@example.org", "correct horse battery"),
        ("not an email", "whatever123"),
    ] {
        let resp = b
            .post(app.url("/login"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("return_to", return_to.as_str()),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let html = resp.text().await.unwrap();
        let start = html.find("role=\"alert\"").expect("an alert");
        messages.push(html[start..start + 200].to_string());
        assert!(html.contains("Incorrect email or password."));
    }
    assert!(
        messages.windows(2).all(|w| w[0] == w[1]),
        "one uniform message"
    );

    // A missing or wrong CSRF token is refused.
    let resp = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", "forged"),
            ("return_to", return_to.as_str()),
            ("username", user.email.as_str()),
            ("password", user.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A session id planted before login is replaced (fixation).
    let planted = "planted-session-id-planted-session-id";
    let resp = app
        .http
        .post(app.url("/login"))
        .header(
            "cookie",
            format!("portcullis-csrf={csrf}; portcullis-session={planted}"),
        )
        .form(&[
            ("csrf", csrf.as_str()),
            ("return_to", return_to.as_str()),
            ("username", user.email.as_str()),
            ("password", user.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("portcullis-session="), "{cookie}");
    assert!(!cookie.contains(planted));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );
    // Only the continuation of our own authorization request is a place to return to.
    let resp = b
        .post(app.url("/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("return_to", "https://evil.example.com/"),
            ("username", user.email.as_str()),
            ("password", user.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "signed in, but not sent elsewhere");
}

#[tokio::test]
async fn code_exchange_errors_follow_rfc6749_section_5_2() {
    let (app, client, user) = setup().await;
    let (code, _) = code_for(&app, &client, &user).await;

    // Wrong client secret: 401 with a Basic challenge, and the code survives.
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, Some("wrong-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let (status, _, body) = exchange(
        &app,
        &client,
        &code,
        "wrong-verifier-wrong-verifier-wrong-verifier-x",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let (status, headers, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let info = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);

    // Replay: invalid_grant, and the access token issued from the code is revoked.
    let (status, _, body) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let info = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);
    assert!(info.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn codes_are_bound_to_client_redirect_uri_and_verifier() {
    let (app, client, user) = setup().await;
    let other = app.confidential_client().await;
    let (code, _) = code_for(&app, &client, &user).await;
    // Another client's credentials.
    let (status, _, body) = exchange(&app, &other, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // A different redirect_uri.
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://rp.example.com/other"),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Missing verifier.
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", client.redirect_uri.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    // Still redeemable by its rightful owner: failed attempts did not burn it.
    let (status, _, _) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(status, 200);
    // A made-up code.
    let (status, _, body) = exchange(&app, &client, "made-up", VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (code, _) = code_for(&app, &client, &user).await;
    clock.advance(61);
    let (status, _, body) = exchange(&app, &client, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_yield_exactly_one_success() {
    let (app, client, user) = setup().await;
    let (code, _) = code_for(&app, &client, &user).await;
    let app = Arc::new(app);
    let client = Arc::new(client);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (app, client, code) = (app.clone(), client.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            exchange(&app, &client, &code, VERIFIER).await.0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 400),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn public_clients_need_pkce_and_send_no_secret() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "SPA".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            public: true,
            ..Default::default()
        })
        .await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    // RFC 8252 §7.3: any port on a loopback redirect URI.
    let with_port = TestClient {
        id: client.id.clone(),
        secret: None,
        redirect_uri: "http://127.0.0.1:49152/cb".into(),
    };
    let resp = get(&auth_url(
        &app,
        &with_port,
        &[("code_challenge", ""), ("code_challenge_method", "")],
    ))
    .await;
    assert_error_redirect(&app, &with_port, &resp, "invalid_request");
    let (code, _) = code_for(&app, &with_port, &user).await;
    let send = |form: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(app.url("/token"))
                .form(&form)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // A secret from a public client is refused.
    let (status, body) = send(vec![
        ("grant_type", "authorization_code".into()),
        ("client_id", client.id.clone()),
        ("client_secret", "anything".into()),
        ("code", code.clone()),
        ("redirect_uri", with_port.redirect_uri.clone()),
        ("code_verifier", VERIFIER.into()),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = send(vec![
        ("grant_type", "authorization_code".into()),
        ("client_id", client.id.clone()),
        ("code", code.clone()),
        ("redirect_uri", with_port.redirect_uri.clone()),
        ("code_verifier", VERIFIER.into()),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
}

#[tokio::test]
async fn form_post_response_mode_delivers_the_code_in_a_self_submitting_form() {
    let (app, client, user) = setup().await;
    let b = browser();
    let url = auth_url(&app, &client, &[("response_mode", "form_post")]);
    let Landing::Page(status, html) = app.sign_in(&b, &url, &user, "allow").await else {
        panic!("form_post answers with a page");
    };
    assert_eq!(status, 200);
    assert!(
        html.contains("action=\"https://rp.example.com/cb\""),
        "{html}"
    );
    assert!(form_value(&html, "code").is_some());
    assert_eq!(form_value(&html, "state").as_deref(), Some("st4te"));
    assert_eq!(form_value(&html, "iss").as_deref(), Some(app.base.as_str()));
    assert!(html.contains("<noscript>"), "works without JavaScript");
}

#[tokio::test]
async fn userinfo_takes_the_token_from_the_header_or_the_form_never_both() {
    let (app, client, user) = setup().await;
    let (code, _) = code_for(&app, &client, &user).await;
    let (_, _, tokens) = exchange(&app, &client, &code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();

    let resp = app
        .http
        .post(app.url("/userinfo"))
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let claims: Value = resp.json().await.unwrap();
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["email"], "ada@example.org");
    assert!(claims.get("name").is_none(), "profile was not granted");

    let resp = app
        .http
        .post(app.url("/userinfo"))
        .bearer_auth(access)
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    for (auth, expected) in [
        (None, 401),
        (Some("Bearer"), 401),
        (Some("Bearer garbage"), 401),
        (Some("Basic Zm9vOmJhcg=="), 401),
        (Some("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."), 401),
    ] {
        let mut req = app.http.get(app.url("/userinfo"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), expected, "{auth:?}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "{challenge}"
        );
    }
    // An ID token is not an access token.
    let id_token = tokens["id_token"].as_str().unwrap();
    let resp = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn hostile_input_gets_a_4xx_in_the_right_format_never_a_5xx() {
    let (app, client, _) = setup().await;
    let base = auth_url(&app, &client, &[]);
    let long_state = "s".repeat(5000);
    for url in [
        format!("{base}&state=again"),
        format!("{base}&x=%ff%fe"),
        format!("{base}&state={long_state}"),
        format!("{}?client_id=%00", app.url("/authorize")),
        app.url("/authorize"),
        format!("{}?{}", app.url("/authorize"), "a=b&".repeat(5000)),
    ] {
        let resp = get(&url).await;
        assert!(
            resp.status().is_client_error(),
            "{}: {}",
            &url[..url.len().min(120)],
            resp.status()
        );
    }
    // Malformed token requests: RFC 6749 JSON errors.
    let token_url = app.url("/token");
    let cases: Vec<reqwest::RequestBuilder> = vec![
        app.http
            .post(&token_url)
            .body("grant_type=authorization_code"),
        app.http
            .post(&token_url)
            .header("content-type", "application/json")
            .body("{}"),
        app.http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=a&grant_type=b"),
        app.http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe, b'=', b'1']),
        app.http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("client_id=x&grant_type=password"),
        app.http
            .post(&token_url)
            .header("authorization", "Basic !!!")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=authorization_code"),
        app.http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x".repeat(100_000)),
    ];
    for req in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        assert!(status.is_client_error(), "{status}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
    let resp = app
        .http
        .post(&token_url)
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let resp = app.http.get(&token_url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn sessions_end_after_idle_and_absolute_timeouts() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (_, b) = code_for(&app, &client, &user).await;
    let silent = auth_url(&app, &client, &[("prompt", "none")]);

    // Active use keeps the session alive past the idle timeout...
    let idle = app.settings.sessions.idle_timeout_secs as i64;
    for _ in 0..3 {
        clock.advance(idle - 100);
        let resp = b.get(&silent).send().await.unwrap();
        assert!(
            query(&location(&resp).unwrap(), "code").is_some(),
            "still signed in"
        );
    }
    // ...but not an idle gap.
    clock.advance(idle + 1);
    let resp = b.get(&silent).send().await.unwrap();
    assert_error_redirect(&app, &client, &resp, "login_required");

    // The absolute timeout ends even a busy session.
    let (_, b) = code_for(&app, &client, &user).await;
    let absolute = app.settings.sessions.absolute_timeout_secs as i64;
    let mut elapsed = 0;
    while elapsed + idle / 2 < absolute {
        clock.advance(idle / 2);
        elapsed += idle / 2;
        let resp = b.get(&silent).send().await.unwrap();
        assert!(query(&location(&resp).unwrap(), "code").is_some());
    }
    clock.advance(absolute - elapsed + 1);
    let resp = b.get(&silent).send().await.unwrap();
    assert_error_redirect(&app, &client, &resp, "login_required");
}

#[tokio::test]
async fn pages_carry_the_configured_branding_and_refuse_framing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = crate::common::fresh_database_url(dir.path()).await;
    let mut settings = crate::common::test_settings(dir.path(), url);
    settings.branding.product_name = "Acme ID".into();
    settings.branding.primary_color = "#0a7d33".into();
    settings.branding.logo_url = Some("https://acme.example/logo.svg".into());
    let app = TestApp::spawn_with(settings, dir, Arc::new(portcullis::clock::SystemClock)).await;
    let client = app.confidential_client().await;
    let resp = get(&auth_url(
        &app,
        &client,
        &[("login_hint", "ada@example.org")],
    ))
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("Acme ID")
            && html.contains("#0a7d33")
            && html.contains("https://acme.example/logo.svg")
    );
    assert!(html.contains("<input name=\"username\"") || html.contains("name=\"username\""));
    assert_eq!(
        form_value(&html, "username").as_deref(),
        Some("ada@example.org"),
        "login_hint prefills"
    );
    assert!(html.contains("Demo RP"), "the client's name is shown");
    let css = get(&app.url("/static/portcullis.css")).await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}
