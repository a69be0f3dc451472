//! Refresh rotation and reuse detection, client credentials, revocation, introspection,
//! private_key_jwt, and a resource server that knows only the JWKS URL.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    ClientId, ClientSecret, IssuerUrl, JsonWebKey, OAuth2TokenResponse, RefreshToken,
};
use portcullis::clients::ClientRegistration;
use portcullis::clock::{ManualClock, SystemClock};
use serde_json::{json, Value};

use crate::common::{
    browser, post_form, query, test_settings, Landing, TestApp, TestClient, TestUser,
};

fn refresh_client_reg() -> ClientRegistration {
    ClientRegistration {
        name: "RP with refresh".into(),
        redirect_uris: vec!["https://rp.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..Default::default()
    }
}

/// Signs in and exchanges the code: the token response.
async fn tokens_for(app: &TestApp, client: &TestClient, user: &TestUser, scope: &str) -> Value {
    crate::common::tokens_for(app, client, user, scope).await.1
}

async fn refresh(
    app: &TestApp,
    client: &TestClient,
    token: &str,
    scope: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn userinfo_status(app: &TestApp, access: &str) -> u16 {
    app.http
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn refresh_rotates_and_reuse_of_an_old_token_kills_the_newest_one() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client_reg()).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let first = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let r0 = first["refresh_token"]
        .as_str()
        .expect("a refresh token with offline_access")
        .to_string();

    // The openidconnect crate as the relying party refreshes.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .unwrap();
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    );
    let second = rp
        .exchange_refresh_token(&RefreshToken::new(r0.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let r1 = second.refresh_token().expect("rotated").secret().clone();
    assert_ne!(r0, r1, "every use rotates");
    assert_eq!(
        userinfo_status(&app, second.access_token().secret()).await,
        200
    );

    // The old token again: reuse. The whole family dies, newest token included.
    let (status, body) = refresh(&app, &client, &r0, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&app, &client, &r1, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "newest token revoked"
    );
    // So are the access tokens the family issued.
    assert_eq!(
        userinfo_status(&app, second.access_token().secret()).await,
        401
    );
    let audit = app.state.store.recent_audit(20).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "refresh.reuse_detected"));
}

#[tokio::test]
async fn refresh_tokens_need_offline_access_and_scope_only_narrows() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client_reg()).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let plain = tokens_for(&app, &client, &user, "openid email").await;
    assert!(
        plain.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );

    let t = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (status, body) = refresh(&app, &client, r0, Some("openid profile offline_access")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) = refresh(&app, &client, r0, Some("openid offline_access")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "offline_access openid");
    assert!(body["id_token"].is_string());
    // Another client cannot use it.
    let other = app.register_client(refresh_client_reg()).await;
    let (status, _) = refresh(&app, &other, body["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_yield_exactly_one_success() {
    let app = Arc::new(TestApp::spawn().await);
    let client = Arc::new(app.register_client(refresh_client_reg()).await);
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (app, client, r0) = (app.clone(), client.clone(), r0.clone());
        tasks.push(tokio::spawn(async move {
            refresh(&app, &client, &r0, None).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            400 => assert_eq!(body["error"], "invalid_grant"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one request rotates the token");
}

#[tokio::test]
async fn the_grace_window_answers_with_the_same_successor_then_counts_as_reuse() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = crate::common::fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.tokens.refresh_grace_secs = 30;
    settings.tokens.refresh_grace_reuse_count = 1;
    let clock = ManualClock::new(1_800_000_000);
    let app = Arc::new(TestApp::spawn_with(settings, dir, Arc::new(clock.clone())).await);
    let client = Arc::new(app.register_client(refresh_client_reg()).await);
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;

    // Racing tabs: every success carries the same successor, never a second branch.
    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (app, client, r0) = (app.clone(), client.clone(), r0.clone());
        tasks.push(tokio::spawn(async move {
            refresh(&app, &client, &r0, None).await
        }));
    }
    let mut successors = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        successors.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    assert_eq!(successors[0], successors[1], "one successor");
    // Past the reuse count, it is reuse: the family is revoked.
    let (status, _) = refresh(&app, &client, &r0, None).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&app, &client, &successors[0], None).await;
    assert_eq!(status, 400, "family revoked");

    // Outside the window, a second redemption is reuse at once.
    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let (status, body) = refresh(&app, &client, &r0, None).await;
    assert_eq!(status, 200);
    let r1 = body["refresh_token"].as_str().unwrap().to_string();
    clock.advance(31);
    let (status, _) = refresh(&app, &client, &r0, None).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&app, &client, &r1, None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn refresh_families_have_idle_and_absolute_lifetimes() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let client = app.register_client(refresh_client_reg()).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let idle = app.settings.tokens.refresh_idle_ttl_secs as i64;
    let absolute = app.settings.tokens.refresh_absolute_ttl_secs as i64;

    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    clock.advance(idle + 1);
    let (status, _) = refresh(&app, &client, t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(status, 400, "idle too long");

    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    let mut current = t["refresh_token"].as_str().unwrap().to_string();
    let mut elapsed = 0;
    while elapsed + idle / 2 < absolute {
        clock.advance(idle / 2);
        elapsed += idle / 2;
        let (status, body) = refresh(&app, &client, &current, None).await;
        assert_eq!(status, 200, "{body}");
        current = body["refresh_token"].as_str().unwrap().to_string();
    }
    clock.advance(absolute - elapsed);
    let (status, _) = refresh(&app, &client, &current, None).await;
    assert_eq!(status, 400, "the family's absolute lifetime is over");
}

async fn service_client(app: &TestApp) -> TestClient {
    app.register_client(ClientRegistration {
        name: "Billing service".into(),
        grant_types: vec!["client_credentials".into()],
        scope: Some("billing:read billing:write".into()),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn client_credentials_issue_a_jwt_for_the_client_itself() {
    let app = TestApp::spawn().await;
    let svc = service_client(&app).await;
    let (status, body) = post_form(
        &app,
        "/token",
        &svc,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "billing:read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    assert_eq!(body["scope"], "billing:read");
    let (payload, _, _) = app
        .state
        .keys
        .ring()
        .verify(body["access_token"].as_str().unwrap())
        .unwrap();
    let claims = payload.claims_set();
    assert_eq!(claims["sub"], svc.id.as_str());
    assert_eq!(claims["client_id"], svc.id.as_str());

    let (status, body) = post_form(
        &app,
        "/token",
        &svc,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("billing:read billing:write"))
    );
    for scope in ["openid", "billing:admin"] {
        let (status, body) = post_form(
            &app,
            "/token",
            &svc,
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope")),
            "{scope}"
        );
    }
    // A client without the grant.
    let rp = app.confidential_client().await;
    let (status, body) =
        post_form(&app, "/token", &rp, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn revocation_ends_families_and_access_tokens() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client_reg()).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    let (r0, access) = (
        t["refresh_token"].as_str().unwrap(),
        t["access_token"].as_str().unwrap(),
    );
    let (_, rotated) = refresh(&app, &client, r0, None).await;
    let r1 = rotated["refresh_token"].as_str().unwrap();

    // Unauthenticated: 401. Another client's token: refused. Unknown: 200.
    let resp = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", r1)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let other = app.register_client(refresh_client_reg()).await;
    let (status, body) = post_form(&app, "/revoke", &other, &[("token", r1)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let (status, _) = post_form(&app, "/revoke", &client, &[("token", "no-such-token")]).await;
    assert_eq!(status, 200);

    // Revoking the current refresh token ends the family.
    let (status, _) = post_form(
        &app,
        "/revoke",
        &client,
        &[("token", r1), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = refresh(&app, &client, r1, None).await;
    assert_eq!(status, 400);

    // The family's access tokens went with it.
    assert_eq!(userinfo_status(&app, access).await, 401);

    // Revoking an access token denies it until it expires.
    let t = tokens_for(&app, &client, &user, "openid").await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&app, access).await, 200);
    let (status, _) = post_form(&app, "/revoke", &client, &[("token", access)]).await;
    assert_eq!(status, 200);
    assert_eq!(userinfo_status(&app, access).await, 401);
    let (_, body) = post_form(&app, "/introspect", &client, &[("token", access)]).await;
    assert_eq!(body, json!({"active": false}));
}

#[tokio::test]
async fn introspection_tells_resource_servers_what_a_token_is() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let client = app.register_client(refresh_client_reg()).await;
    let rs = service_client(&app).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let t = tokens_for(&app, &client, &user, "openid email offline_access").await;
    let access = t["access_token"].as_str().unwrap();

    let (status, body) = post_form(&app, "/introspect", &rs, &[("token", access)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], user.id.to_string());
    assert_eq!(body["client_id"], client.id.as_str());
    assert_eq!(body["scope"], "email offline_access openid");
    assert_eq!(body["iss"], app.base.as_str());
    assert_eq!(body["aud"], app.base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["exp"].is_i64() && body["iat"].is_i64());

    // The client sees its own refresh token; another client does not.
    let refresh_token = t["refresh_token"].as_str().unwrap();
    let (_, body) = post_form(&app, "/introspect", &client, &[("token", refresh_token)]).await;
    assert_eq!(body["active"], true);
    let (_, body) = post_form(&app, "/introspect", &rs, &[("token", refresh_token)]).await;
    assert_eq!(body, json!({"active": false}));

    // Garbage and foreign tokens are inactive; no authentication is 401.
    let stranger = TestApp::spawn().await;
    let foreign_client = stranger
        .register_client(ClientRegistration {
            name: "x".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("a".into()),
            ..Default::default()
        })
        .await;
    let (_, foreign) = post_form(
        &stranger,
        "/token",
        &foreign_client,
        &[("grant_type", "client_credentials")],
    )
    .await;
    for token in [
        "garbage",
        "a.b.c",
        foreign["access_token"].as_str().unwrap(),
    ] {
        let (status, body) = post_form(&app, "/introspect", &rs, &[("token", token)]).await;
        assert_eq!((status, body), (200, json!({"active": false})), "{token}");
    }
    let resp = app
        .http
        .post(app.url("/introspect"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let wrong = TestClient {
        secret: Some("wrong".into()),
        ..service_client(&app).await
    };
    let (status, body) = post_form(&app, "/introspect", &wrong, &[("token", access)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // Expired.
    clock.advance(app.settings.tokens.access_token_ttl_secs as i64 + 1);
    let (_, body) = post_form(&app, "/introspect", &rs, &[("token", access)]).await;
    assert_eq!(body, json!({"active": false}));
}

/// A resource server with only the JWKS URL, verifying with another JOSE implementation
/// (the `openidconnect` crate's), and refusing once the key has left the JWKS.
#[tokio::test]
async fn a_resource_server_validates_access_tokens_with_only_the_jwks() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let svc = service_client(&app).await;
    let (_, body) = post_form(
        &app,
        "/token",
        &svc,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let token = body["access_token"].as_str().unwrap().to_string();

    let http = reqwest::Client::new();
    let verify = |jwks: CoreJsonWebKeySet, token: String| {
        let mut parts = token.split('.');
        let (h, p, s) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        assert_eq!(header["typ"], "at+jwt");
        let kid = header["kid"].as_str().unwrap().to_string();
        let signature = URL_SAFE_NO_PAD.decode(s).unwrap();
        let message = format!("{h}.{p}");
        let key = jwks
            .keys()
            .iter()
            .find(|k| k.key_id().map(|id| id.as_str()) == Some(kid.as_str()));
        match key {
            None => false,
            Some(key) => key
                .verify_signature(
                    &CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                    message.as_bytes(),
                    &signature,
                )
                .is_ok(),
        }
    };
    let jwks_url = openidconnect::JsonWebKeySetUrl::new(app.url("/jwks.json")).unwrap();
    let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http)
        .await
        .unwrap();
    assert!(verify(jwks, token.clone()), "valid with the JWKS alone");
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http)
        .await
        .unwrap();
    assert!(!verify(jwks, tampered));

    // Two rotations retire the signing key; after the overlap it leaves the JWKS.
    app.state.keys.rotate().await.unwrap();
    app.state.keys.rotate().await.unwrap();
    let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http)
        .await
        .unwrap();
    assert!(
        verify(jwks, token.clone()),
        "still published during the overlap"
    );
    clock.advance(
        (app.settings.longest_token_ttl_secs() + app.settings.keys.jwks_max_age_secs) as i64 + 1,
    );
    app.state.keys.refresh().await.unwrap();
    let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http)
        .await
        .unwrap();
    assert!(
        !verify(jwks, token),
        "rejected after retirement plus overlap"
    );
}

#[tokio::test]
async fn private_key_jwt_clients_authenticate_with_signed_assertions() {
    use josekit::jws::ES256;

    let app = TestApp::spawn().await;
    let pair = ES256.generate_key_pair().unwrap();
    let mut public = josekit::jwk::KeyPair::to_jwk_public_key(&pair);
    public.set_key_id("k1");
    let jwks = json!({"keys": [serde_json::to_value(public.as_ref()).unwrap()]}).to_string();
    let client = app
        .register_client(ClientRegistration {
            name: "Signed".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("reports".into()),
            jwks: Some(jwks),
            ..Default::default()
        })
        .await;
    assert!(
        client.secret.is_none(),
        "no secret for private_key_jwt clients"
    );
    let signer = ES256
        .signer_from_der(josekit::jwk::KeyPair::to_der_private_key(&pair))
        .unwrap();
    let now = portcullis::clock::Clock::now(&SystemClock);
    let assertion =
        |aud: &str, exp: i64, jti: &str| sign_assertion(&signer, "k1", &client.id, aud, exp, jti);
    let send = |a: String| {
        let app = &app;
        async move { token_with_assertion(app, &a).await }
    };
    let good = assertion(&app.url("/token"), now + 60, "a1");
    let (status, body) = send(good.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "replayed jti"
    );
    for bad in [
        assertion("https://elsewhere.example.com/token", now + 60, "a2"),
        assertion(&app.url("/token"), now - 5, "a3"),
        assertion(&app.url("/token"), now + 3600, "a4"),
    ] {
        let (status, body) = send(bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    // The issuer is an acceptable audience too (RFC 7523 §3).
    let (status, _) = send(assertion(&app.base, now + 60, "a5")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_openidconnect_rp_revokes_its_refresh_token_and_logs_the_user_out() {
    use openidconnect::core::CoreAuthenticationFlow;
    use openidconnect::{
        AuthorizationCode, CsrfToken, EndSessionUrl, LogoutRequest, Nonce, PkceCodeChallenge,
        PostLogoutRedirectUrl, RedirectUrl, Scope, TokenResponse,
    };

    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            post_logout_redirect_uris: vec!["https://rp.example.com/bye".into()],
            ..refresh_client_reg()
        })
        .await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .unwrap();
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(client.redirect_uri.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let b = browser();
    let code = match app.sign_in(&b, auth_url.as_str(), &user, "allow").await {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, h) => panic!("{s}: {h}"),
    };
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap().clone();
    id_token.claims(&rp.id_token_verifier(), &nonce).unwrap();
    let refresh_token = tokens.refresh_token().unwrap().clone();

    // The oauth2 crate refuses a non-TLS revocation URL (RFC 7009 §2 requires TLS), and the
    // test server is plain http: revoke as the RP would, by hand.
    let (status, _) = post_form(
        &app,
        "/revoke",
        &client,
        &[("token", refresh_token.secret())],
    )
    .await;
    assert_eq!(status, 200);
    let refreshed = rp
        .exchange_refresh_token(&refresh_token)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(refreshed.is_err(), "a revoked refresh token is dead");

    let logout_url = LogoutRequest::from(EndSessionUrl::new(app.url("/end_session")).unwrap())
        .set_id_token_hint(&id_token)
        .set_post_logout_redirect_uri(
            PostLogoutRedirectUrl::new("https://rp.example.com/bye".into()).unwrap(),
        )
        .set_state(CsrfToken::new("bye-state".into()))
        .http_get_url();
    let resp = b.get(logout_url.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let to = crate::common::location(&resp).unwrap();
    assert_eq!(query(&to, "state").as_deref(), Some("bye-state"));
    let (silent, _, _) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_prompt(openidconnect::core::CoreAuthPrompt::None)
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .url();
    let resp = b.get(silent.as_str()).send().await.unwrap();
    let to = crate::common::location(&resp).unwrap();
    assert_eq!(query(&to, "error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn a_replayed_code_also_kills_the_tokens_its_refresh_family_issued() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client_reg()).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let url = crate::common::auth_url(&app, &client, &[("scope", "openid offline_access")]);
    let code = match app.sign_in(&browser(), &url, &user, "allow").await {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, h) => panic!("{s}: {h}"),
    };
    let (_, _, first) =
        crate::common::exchange(&app, &client, &code, crate::common::VERIFIER).await;
    let (status, rotated) = refresh(
        &app,
        &client,
        first["refresh_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let later_access = rotated["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&app, later_access).await, 200);
    let (status, _, _) =
        crate::common::exchange(&app, &client, &code, crate::common::VERIFIER).await;
    assert_eq!(status, 400, "replay");
    assert_eq!(
        userinfo_status(&app, later_access).await,
        401,
        "tokens from the family die too"
    );
    let (status, _) = refresh(
        &app,
        &client,
        rotated["refresh_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_used_refresh_token_with_a_wider_scope_is_still_reuse() {
    let app = TestApp::spawn().await;
    let client = app.register_client(refresh_client_reg()).await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let t = tokens_for(&app, &client, &user, "openid offline_access").await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let (_, next) = refresh(&app, &client, r0, None).await;
    let (status, _) = refresh(
        &app,
        &client,
        r0,
        Some("openid offline_access profile email"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&app, &client, next["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(status, 400, "the family was revoked");
}

/// A client assertion (RFC 7523 §3) signed with `signer`.
fn sign_assertion(
    signer: &dyn josekit::jws::JwsSigner,
    kid: &str,
    client_id: &str,
    aud: &str,
    exp: i64,
    jti: &str,
) -> String {
    let mut p = josekit::jwt::JwtPayload::new();
    p.set_issuer(client_id);
    p.set_subject(client_id);
    p.set_claim("aud", Some(json!(aud))).unwrap();
    p.set_claim("exp", Some(json!(exp))).unwrap();
    p.set_claim("jti", Some(json!(jti))).unwrap();
    let mut h = josekit::jws::JwsHeader::new();
    h.set_key_id(kid);
    josekit::jwt::encode_with_signer(&p, &h, signer).unwrap()
}

/// `client_credentials` authenticated by `assertion` alone: (status, body).
async fn token_with_assertion(app: &TestApp, assertion: &str) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
}

#[poem::handler]
fn serve_jwks(jwks: poem::web::Data<&String>) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json")
        .body(jwks.0.clone())
}

#[tokio::test]
async fn private_key_jwt_clients_may_publish_their_keys_at_a_jwks_uri() {
    use josekit::jws::ES256;
    use poem::EndpointExt;

    let pair = ES256.generate_key_pair().unwrap();
    let mut public = josekit::jwk::KeyPair::to_jwk_public_key(&pair);
    public.set_key_id("uri-key");
    let jwks = json!({"keys": [serde_json::to_value(public.as_ref()).unwrap()]}).to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks_uri = format!("http://{}/jwks", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    let keys_app = poem::Route::new()
        .at("/jwks", poem::get(serve_jwks))
        .data(jwks);
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor)
            .run(keys_app)
            .await;
    });

    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "Signed by URI".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("reports".into()),
            jwks_uri: Some(jwks_uri),
            ..Default::default()
        })
        .await;
    let signer = ES256
        .signer_from_der(josekit::jwk::KeyPair::to_der_private_key(&pair))
        .unwrap();
    let now = portcullis::clock::Clock::now(&SystemClock);
    let assertion = sign_assertion(
        &signer,
        "uri-key",
        &client.id,
        &app.url("/token"),
        now + 60,
        "uri-1",
    );
    let (status, body) = token_with_assertion(&app, &assertion).await;
    assert_eq!(status, 200, "{body}");
}
