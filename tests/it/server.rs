//! The HTTP surface of the foundation: discovery, health, request ids, unknown routes.

use std::sync::Arc;

use portcullis::clock::SystemClock;
use serde_json::Value;

use crate::common::{fresh_database_url, test_settings, TestApp};

#[tokio::test]
async fn discovery_documents_name_the_exact_issuer_and_jwks() {
    let app = TestApp::spawn().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, headers, doc) = app.get_json(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        // OIDC Discovery §4.3: the issuer must equal the URL the document was fetched under.
        assert_eq!(doc["issuer"], app.base.as_str());
        assert_eq!(doc["jwks_uri"], app.url("/jwks.json").as_str());
        assert_eq!(
            doc["subject_types_supported"],
            serde_json::json!(["public"])
        );
        assert_eq!(
            doc["authorization_endpoint"],
            app.url("/authorize").as_str()
        );
        assert_eq!(doc["token_endpoint"], app.url("/token").as_str());
        assert_eq!(doc["userinfo_endpoint"], app.url("/userinfo").as_str());
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["response_modes_supported"],
            serde_json::json!(["query", "form_post"])
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none"
            ])
        );
        assert_eq!(doc["revocation_endpoint"], app.url("/revoke").as_str());
        assert_eq!(
            doc["introspection_endpoint"],
            app.url("/introspect").as_str()
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256", "PS256", "ES256", "EdDSA"])
        );
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["request_uri_parameter_supported"], false);
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!([
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "urn:ietf:params:oauth:grant-type:device_code"
            ])
        );
        assert_eq!(
            doc["device_authorization_endpoint"],
            app.url("/device_authorization").as_str()
        );
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let resp = app.http.get(app.url("/health/live")).send().await.unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let resp = app
        .http
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");

    // A hostile id (log injection) is replaced, not echoed.
    let resp = app
        .http
        .get(app.url("/health/live"))
        .header("x-request-id", "evil\tid with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "evil\tid with spaces");
}

fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn error_bodies_and_error_pages_carry_the_trace_id() {
    let app = TestApp::spawn().await;
    // RFC 6749 §5.2 JSON errors: the code, and the trace id as an extra member.
    let send = || {
        app.http
            .post(app.url("/token"))
            .form(&[("grant_type", "password")])
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    assert!(first["error"].is_string(), "{first}");
    let trace = first["trace_id"].as_str().unwrap_or_default();
    assert!(is_trace_id(trace), "{first}");
    let second: Value = send().await.unwrap().json().await.unwrap();
    assert_ne!(
        second["trace_id"], first["trace_id"],
        "one trace per request"
    );

    // RFC 6750 bearer errors and unknown routes too.
    let (status, _, body) = app.get_json("/userinfo").await;
    assert_eq!(status, 401);
    assert!(is_trace_id(body["trace_id"].as_str().unwrap_or_default()));
    let (_, _, body) = app.get_json("/no/such/thing").await;
    assert!(is_trace_id(body["trace_id"].as_str().unwrap_or_default()));

    // The hosted error page shows it next to the request id.
    let page = app
        .get_raw("/authorize?client_id=nobody&response_type=code")
        .await
        .text()
        .await
        .unwrap();
    let shown = page
        .split("Trace: <code>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default();
    assert!(is_trace_id(shown), "{page}");
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = TestApp::spawn().await;
    let (status, _, body) = app.get_json("/no/such/thing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn health_endpoints_report_readiness() {
    let app = TestApp::spawn().await;
    let (status, _, body) = app.get_json("/health/live").await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
    let (status, headers, body) = app.get_json("/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(headers["cache-control"], "no-store");
    let expected_redis = if app.settings.redis.url.is_some() {
        "ok"
    } else {
        "not configured"
    };
    assert_eq!(body["checks"]["redis"], expected_redis);
}

#[tokio::test]
async fn readiness_reports_a_redis_outage_as_degraded_with_the_reason() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    // A port with nothing listening on it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    settings.redis.url = Some(format!("redis://127.0.0.1:{port}"));
    let app = TestApp::spawn_with(settings, dir, Arc::new(SystemClock)).await;
    let (status, _, body) = app.get_json("/health/ready").await;
    assert_eq!(status, 200, "keeps serving: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], "ok");
    let reason = body["checks"]["redis"].as_str().unwrap();
    assert!(reason.contains("Redis"), "{reason}");
    // Discovery does not depend on Redis.
    let (status, _, _) = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn hostile_paths_and_methods_never_produce_a_server_error() {
    let app = TestApp::spawn().await;
    for path in [
        "/jwks.json?x=%ff%fe",
        "/.well-known/openid-configuration?%00=%00",
        "/%2e%2e/%2e%2e/etc/passwd",
        &format!("/{}", "a".repeat(8000)),
    ] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert!(resp.status().as_u16() < 500, "{path}: {}", resp.status());
    }
    let resp = app
        .http
        .post(app.url("/jwks.json"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn the_management_listener_serves_metrics_that_move_with_traffic() {
    let app = TestApp::spawn().await;
    let metrics = || async {
        app.http
            .get(format!("{}/metrics", app.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = metrics().await;
    for series in [
        "portcullis_http_requests_total",
        "portcullis_tokens_issued_total",
        "portcullis_logins_total",
        "portcullis_refresh_reuse_detected_total",
        "portcullis_rate_limit_rejections_total",
        "portcullis_password_hash_duration_seconds",
        "portcullis_password_hash_in_flight",
        "portcullis_db_pool_connections",
        "portcullis_redis_up",
    ] {
        assert!(
            before.contains(&format!("# TYPE {series}")),
            "{series} missing:\n{before}"
        );
    }
    // Traffic: a client_credentials grant.
    let svc = crate::common::service_client(&app).await;
    let (status, _) = crate::common::post_form(
        &app,
        "/token",
        &svc,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200);
    let after = metrics().await;
    assert!(
        after.contains(&format!(
            "portcullis_tokens_issued_total{{grant=\"client_credentials\",client_id=\"{}\"}} 1",
            svc.id
        )),
        "{after}"
    );
    assert!(
        after.contains("portcullis_http_requests_total{route=\"/token\",status=\"200\"} 1"),
        "{after}"
    );
    assert!(after.contains("portcullis_http_request_duration_seconds_count{route=\"/token\"} 1"));
    // Health on both listeners; metrics only on the management one.
    let live = app
        .http
        .get(format!("{}/health/ready", app.management))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
