//! Three instances of one deployment on one database and one Redis: any instance serves any
//! request, because nothing that matters lives in one instance's memory.

use std::sync::Arc;

use portcullis::clients::ClientRegistration;
use portcullis::limiter::Policy;
use serde_json::{json, Value};

use crate::common::{
    browser, exchange, fresh_database_url, post_form, query, redis_base_url, service_client,
    test_settings, Landing, TestApp, VERIFIER,
};

#[tokio::test]
async fn three_instances_behave_as_one_provider() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    if let Some(redis) = redis_base_url() {
        settings.redis.url = Some(redis);
        // Long enough that only the announcement can explain a prompt refusal below.
        settings.database.client_cache_secs = 60;
    }
    settings.rate_limits.token = Policy {
        limit: 6,
        period_secs: 60,
    };
    let a = TestApp::spawn_with(
        settings.clone(),
        dir.clone(),
        Arc::new(portcullis::clock::SystemClock),
    )
    .await;
    let b = TestApp::spawn_instance(settings.clone(), &a.settings.issuer, dir.clone()).await;
    let c = TestApp::spawn_instance(settings.clone(), &a.settings.issuer, dir.clone()).await;

    // Keys: every instance publishes the same JWKS.
    let (_, _, jwks_a) = a.get_json("/jwks.json").await;
    for other in [&b, &c] {
        assert_eq!(other.get_json("/jwks.json").await.2, jwks_a);
    }

    // A code issued on A is redeemed on B.
    let client = a
        .register_client(ClientRegistration {
            name: "RP".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            ..Default::default()
        })
        .await;
    let user = a
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let url = crate::common::auth_url(&a, &client, &[("scope", "openid offline_access")]);
    let code = match a.sign_in(&browser(), &url, &user, "allow").await {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, h) => panic!("{s}: {h}"),
    };
    let (status, _, tokens) = exchange(&b, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();

    // A token issued on B validates on C and introspects on A.
    let info = c
        .http
        .get(c.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let rs = service_client(&a).await;
    let (_, body) = post_form(&a, "/introspect", &rs, &[("token", access)]).await;
    assert_eq!(body["active"], true);

    // The same refresh token sent to A and B at the same moment succeeds once.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (ra, rb) = tokio::join!(
        post_form(&a, "/token", &client, &form),
        post_form(&b, "/token", &client, &form)
    );
    assert_eq!(
        u16::from(ra.0 == 200) + u16::from(rb.0 == 200),
        1,
        "{ra:?} {rb:?}"
    );

    // A revocation on C is seen by A at once.
    let (status, _) = post_form(&c, "/revoke", &client, &[("token", access)]).await;
    assert_eq!(status, 200);
    let (_, body) = post_form(&a, "/introspect", &rs, &[("token", access)]).await;
    assert_eq!(body, json!({"active": false}));

    // Rate limits are one budget when Redis is configured.
    if settings.redis.url.is_some() {
        let svc = service_client(&a).await;
        let cc = [("grant_type", "client_credentials")];
        let mut statuses = Vec::new();
        for app in [&a, &b, &c, &a, &b, &c, &a] {
            statuses.push(post_form(app, "/token", &svc, &cc).await.0);
        }
        assert_eq!(
            statuses,
            vec![200, 200, 200, 200, 200, 200, 429],
            "one budget of 6"
        );
    }

    // A key rotation on A reaches B through Redis at once, not at B's next refresh (30 s).
    if settings.redis.url.is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await; // subscriptions settle
        a.state.keys.rotate().await.unwrap();
        portcullis::app::announce_keys_changed(&a.state).await;
        let (_, _, rotated) = a.get_json("/jwks.json").await;
        let mut seen = false;
        for _ in 0..20 {
            if b.get_json("/jwks.json").await.2 == rotated {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(seen, "B re-read the keys within a second");
    }

    // A client deleted on A is refused on B within a second: announced through Redis as the
    // CLI does, or (without Redis) once B's cached copy expires.
    assert!(a.state.store.delete_client(&client.id, &[]).await.unwrap());
    if let Some(redis) = &a.state.redis {
        redis.publish("clients").await.unwrap();
    }
    let deleted_at = std::time::Instant::now();
    let mut last: (u16, Value) = (0, Value::Null);
    while deleted_at.elapsed() < std::time::Duration::from_millis(1500) {
        last = post_form(&b, "/token", &client, &form).await;
        if last.0 == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (last.0, last.1["error"].as_str()),
        (401, Some("invalid_client")),
        "{}",
        last.1
    );
}
