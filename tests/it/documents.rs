//! Discovery and the JWKS as caches see them: an `ETag`, `304 Not Modified` for a current copy
//! (RFC 9110 §13.1.2, §15.4.5), and a new tag on every instance right after a key rotation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::clock::SystemClock;
use reqwest::StatusCode;

use crate::common::{fresh_database_url, redis_base_url, test_settings, TestApp};

async fn etag_of(app: &TestApp, path: &str) -> String {
    let resp = app.get_raw(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.headers()["etag"].to_str().unwrap().to_string()
}

async fn conditional(app: &TestApp, path: &str, if_none_match: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .header("if-none-match", if_none_match)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn discovery_and_jwks_answer_304_to_a_current_etag_and_200_otherwise() {
    let app = TestApp::spawn().await;
    for (path, cache_control) in [
        ("/.well-known/openid-configuration", "public, max-age=300"),
        (
            "/.well-known/oauth-authorization-server",
            "public, max-age=300",
        ),
        ("/jwks.json", "public, max-age=300"),
    ] {
        let full = app.get_raw(path).await;
        assert_eq!(full.status(), StatusCode::OK);
        let etag = full.headers()["etag"].to_str().unwrap().to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong tag: {etag}"
        );
        assert_eq!(full.headers()["cache-control"], cache_control);
        assert!(full.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: serde_json::Value = full.json().await.unwrap();
        assert!(body.is_object());

        for current in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".into(),
        ] {
            let resp = conditional(&app, path, &current).await;
            assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{path} {current}");
            assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
            assert_eq!(resp.headers()["cache-control"], cache_control);
            assert!(resp.bytes().await.unwrap().is_empty(), "a 304 has no body");
        }
        let stale = conditional(&app, path, "\"stale\"").await;
        assert_eq!(stale.status(), StatusCode::OK);
        assert_eq!(stale.headers()["etag"].to_str().unwrap(), etag);
    }
    // Both discovery paths serve one document.
    assert_eq!(
        etag_of(&app, "/.well-known/openid-configuration").await,
        etag_of(&app, "/.well-known/oauth-authorization-server").await
    );
}

#[tokio::test]
async fn a_rotation_changes_the_jwks_and_its_etag_on_every_instance() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    let announced = redis_base_url();
    match &announced {
        // The rotation is announced through Redis: instances re-read their keys at once.
        Some(redis) => settings.redis.url = Some(redis.clone()),
        // Without Redis, instances catch up at their next key refresh.
        None => settings.keys.refresh_secs = 1,
    }
    let a = TestApp::spawn_with(settings.clone(), dir.clone(), Arc::new(SystemClock)).await;
    let b = TestApp::spawn_instance(settings, &a.settings.issuer, dir.clone()).await;
    let before = etag_of(&a, "/jwks.json").await;
    assert_eq!(etag_of(&b, "/jwks.json").await, before, "instances agree");
    // Give B's subscription a moment to be in place before the announcement.
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.state.keys.rotate().await.unwrap();
    portcullis::app::announce_keys_changed(&a.state).await;

    let after = etag_of(&a, "/jwks.json").await;
    assert_ne!(
        after, before,
        "the rotating instance serves the new set at once"
    );
    let stale = conditional(&a, "/jwks.json", &before).await;
    assert_eq!(stale.status(), StatusCode::OK, "an old copy is not current");
    let limit = if announced.is_some() { 2 } else { 4 };
    let started = Instant::now();
    loop {
        if etag_of(&b, "/jwks.json").await == after {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(limit),
            "the other instance still serves the old JWKS after {limit} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        conditional(&b, "/jwks.json", &after).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        a.get_json("/jwks.json").await.2,
        b.get_json("/jwks.json").await.2
    );
}
