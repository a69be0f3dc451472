//! Abuse resistance: rate limits per policy, login throttling, shared limits across instances,
//! Redis outages, client IPs behind proxies, request limits and security headers.

use std::sync::Arc;
use std::time::Duration;

use portcullis::config::Settings;
use portcullis::limiter::Policy;
use serde_json::Value;

use crate::common::{
    app_with, form_value, location, query, redis_base_url, service_client, TestApp,
};

fn assert_limited(resp: &reqwest::Response, policy: &str) -> u64 {
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(
        h["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with(&format!("\"{policy}\";q=")),
        "{h:?}"
    );
    assert!(
        h["ratelimit"].to_str().unwrap().contains(";r=0;t="),
        "{h:?}"
    );
    retry
}

#[tokio::test]
async fn the_default_policy_limits_every_endpoint_per_ip_and_recovers() {
    let app = app_with(|s| {
        s.rate_limits.default = Policy {
            limit: 3,
            period_secs: 2,
        }
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get_status("/jwks.json").await, 200);
    }
    let resp = app.get_raw("/jwks.json").await;
    let retry = assert_limited(&resp, "default");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Health probes are never limited.
    assert_eq!(
        app.http
            .get(app.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(app.get_status("/jwks.json").await, 200);

    // /authorize answers the client with temporarily_unavailable; pages show a page.
    let client = app.confidential_client().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", &client.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "s1");
    let mut last = None;
    for _ in 0..4 {
        last = Some(app.http.get(url.as_str()).send().await.unwrap());
    }
    let resp = last.unwrap();
    assert_eq!(resp.status(), 303);
    let to = location(&resp).unwrap();
    assert_eq!(
        query(&to, "error").as_deref(),
        Some("temporarily_unavailable")
    );
    assert_eq!(query(&to, "state").as_deref(), Some("s1"));
    let resp = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.text().await.unwrap().contains("Too many attempts"));
}

#[tokio::test]
async fn the_token_and_introspection_endpoints_limit_per_client() {
    let app = app_with(|s| {
        s.rate_limits.token = Policy {
            limit: 2,
            period_secs: 2,
        };
        s.rate_limits.introspection = Policy {
            limit: 2,
            period_secs: 2,
        };
    })
    .await;
    let (a, b) = (service_client(&app).await, service_client(&app).await);
    let token = |c: &crate::common::TestClient| {
        app.http
            .post(app.url("/token"))
            .basic_auth(&c.id, c.secret.as_deref())
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(token(&a).await.unwrap().status(), 200);
    assert_eq!(token(&a).await.unwrap().status(), 200);
    let resp = token(&a).await.unwrap();
    let retry = assert_limited(&resp, "token");
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "rate_limited");
    assert_eq!(
        token(&b).await.unwrap().status(),
        200,
        "another client has its own budget"
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(token(&a).await.unwrap().status(), 200);

    let introspect = || {
        app.http
            .post(app.url("/introspect"))
            .basic_auth(&b.id, b.secret.as_deref())
            .form(&[("token", "x")])
            .send()
    };
    assert_eq!(introspect().await.unwrap().status(), 200);
    assert_eq!(introspect().await.unwrap().status(), 200);
    let retry = assert_limited(&introspect().await.unwrap(), "introspection");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        introspect().await.unwrap().status(),
        200,
        "after the window"
    );
}

#[tokio::test]
async fn failed_client_authentication_is_limited_even_for_the_right_secret() {
    let app = app_with(|s| {
        s.rate_limits.client_auth_failures = Policy {
            limit: 3,
            period_secs: 2,
        }
    })
    .await;
    let c = service_client(&app).await;
    let attempt = |secret: &str| {
        app.http
            .post(app.url("/token"))
            .basic_auth(&c.id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("guess").await.unwrap().status(), 401);
    }
    let resp = attempt(c.secret.as_deref().unwrap()).await.unwrap();
    let retry = assert_limited(&resp, "client_auth_failures");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        attempt(c.secret.as_deref().unwrap())
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Posts the login form from a fresh page, as `ip` (through a trusted proxy).
async fn login_as(app: &TestApp, ip: &str, email: &str, password: &str) -> reqwest::Response {
    let b = crate::common::browser();
    let page = b
        .get(app.url("/login"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&page, "csrf").unwrap();
    b.post(app.url("/login"))
        .header("x-forwarded-for", ip)
        .form(&[
            ("csrf", csrf.as_str()),
            ("return_to", ""),
            ("username", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn fifty_parallel_wrong_passwords_cannot_slip_past_the_login_limit() {
    let app = Arc::new(
        app_with(|s| {
            s.rate_limits.login_ip = Policy {
                limit: 1000,
                period_secs: 60,
            }
        })
        .await,
    );
    app.create_user("ada@example.org", "correct horse battery")
        .await;
    let limit = app.settings.rate_limits.login_account_ip.limit as usize;
    let page = app.http.get(app.url("/login")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = cookie.split('=').nth(1).unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (app, cookie, csrf) = (app.clone(), cookie.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            app.http
                .post(app.url("/login"))
                .header("cookie", cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("return_to", ""),
                    ("username", "ada@example.org"),
                    ("password", &format!("wrong-{i}")),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut checked = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            401 => checked += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        checked <= limit,
        "{checked} passwords were checked; the limit is {limit}"
    );
    assert_eq!(checked + refused, 50);
    let audit = app.state.store.recent_audit(200).await.unwrap();
    let failures = audit.iter().filter(|e| e.kind == "login.failed").count();
    assert!(failures <= limit, "{failures} hash checks");
}

#[tokio::test]
async fn one_ip_cannot_lock_a_victim_out_and_success_resets_the_count() {
    let app =
        app_with(|s| s.http.trusted_proxies = vec!["127.0.0.1/32".into(), "::1/128".into()]).await;
    app.create_user("ada@example.org", "correct horse battery")
        .await;
    let limit = app.settings.rate_limits.login_account_ip.limit;
    for _ in 0..limit {
        assert_eq!(
            login_as(&app, "198.51.100.1", "ada@example.org", "wrong password")
                .await
                .status(),
            401
        );
    }
    let resp = login_as(&app, "198.51.100.1", "ada@example.org", "wrong password").await;
    assert_limited(&resp, "login_account_ip");
    // Even the right password from the attacker's IP waits out the window...
    assert_eq!(
        login_as(
            &app,
            "198.51.100.1",
            "ada@example.org",
            "correct horse battery"
        )
        .await
        .status(),
        429
    );
    // ...but the victim, elsewhere, signs in.
    let resp = login_as(
        &app,
        "203.0.113.5",
        "ada@example.org",
        "correct horse battery",
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("You are signed in"));
    // The audit log records the client IP from the trusted proxy's header.
    let audit = app.state.store.recent_audit(50).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == "login.failed" && e.ip.as_deref() == Some("198.51.100.1")));
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_ignored() {
    let app = app_with(|s| {
        s.rate_limits.login_account_ip = Policy {
            limit: 2,
            period_secs: 60,
        }
    })
    .await;
    app.create_user("ada@example.org", "correct horse battery")
        .await;
    // Rotating X-Forwarded-For does not buy fresh budgets when the peer is not a trusted proxy.
    for (i, ip) in ["1.1.1.1", "2.2.2.2"].iter().enumerate() {
        let status = login_as(&app, ip, "ada@example.org", "wrong password")
            .await
            .status();
        assert_eq!(status, 401, "attempt {i}");
    }
    assert_eq!(
        login_as(&app, "3.3.3.3", "ada@example.org", "wrong password")
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn two_instances_on_one_redis_enforce_one_budget() {
    let Some(redis) = redis_base_url() else {
        eprintln!("skipped: set PORTCULLIS_TEST_REDIS_URL to test shared limits");
        return;
    };
    let namespace = format!("pc-test-{}", uuid::Uuid::new_v4().simple());
    let tune = |s: &mut Settings| {
        s.redis.url = Some(redis.clone());
        s.redis.namespace = namespace.clone();
        s.rate_limits.default = Policy {
            limit: 4,
            period_secs: 30,
        };
    };
    let a = app_with(tune).await;
    let b = app_with(tune).await;
    for app in [&a, &b, &a, &b] {
        assert_eq!(app.get_status("/jwks.json").await, 200);
    }
    for app in [&a, &b] {
        let resp = app.get_raw("/jwks.json").await;
        assert_limited(&resp, "default");
    }
    let (_, _, health) = a.get_json("/health/ready").await;
    assert_eq!(health["checks"]["rate_limits"], "redis");
}

#[tokio::test]
async fn a_redis_outage_degrades_to_local_limits_and_recovers_by_itself() {
    if which_redis_server().is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide redis-server for the outage test"
        );
        eprintln!("skipped: redis-server is not installed");
        return;
    }
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let app = app_with(|s| {
        s.redis.url = Some(format!("redis://127.0.0.1:{port}"));
        s.rate_limits.default = Policy {
            limit: 3,
            period_secs: 30,
        };
    })
    .await;
    // Down: still serving, limits enforced per instance, and said so.
    for _ in 0..3 {
        assert_eq!(app.get_status("/jwks.json").await, 200);
    }
    assert_limited(&app.get_raw("/jwks.json").await, "default");
    let (status, _, health) = app.get_json("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded");
    assert!(
        health["checks"]["rate_limits"]
            .as_str()
            .unwrap()
            .contains("degraded"),
        "{health}"
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.management))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_rate_limit_degraded 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_rate_limit_rejections_total 1"),
        "{metrics}"
    );

    // Redis comes up on that port: the server notices by itself.
    let mut server = std::process::Command::new(which_redis_server().unwrap())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut recovered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = app.http.get(app.url("/jwks.json")).send().await;
        let (_, _, health) = app.get_json("/health/ready").await;
        if health["checks"]["rate_limits"] == "redis" && health["status"] == "ready" {
            recovered = true;
            break;
        }
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.management))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !recovered || metrics.contains("portcullis_rate_limit_degraded 0"),
        "{metrics}"
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(recovered, "the limiter went back to Redis");
}

fn which_redis_server() -> Option<String> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

#[tokio::test]
async fn responses_carry_security_headers_and_oversized_requests_are_refused() {
    let app = app_with(|_| {}).await;
    let resp = app.http.get(app.url("/login")).send().await.unwrap();
    let h = resp.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h.get("server").is_none(), "no banner");
    assert!(
        h.get("strict-transport-security").is_none(),
        "HSTS only over https"
    );
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self' 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let api = app.get_raw("/jwks.json").await;
    assert_eq!(
        api.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );

    let long = format!("{}?q={}", app.url("/jwks.json"), "a".repeat(9000));
    assert_eq!(app.http.get(long).send().await.unwrap().status(), 414);
    let big = app
        .http
        .get(app.url("/jwks.json"))
        .header("x-filler", "b".repeat(17_000))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 431);
    let body = app
        .http
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a".repeat(70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 413);
}

#[tokio::test]
async fn every_login_policy_refuses_past_its_limit_and_recovers_after_its_window() {
    for policy in ["login_ip", "login_account_ip", "login_account"] {
        let app = app_with(|s| {
            // Windows of 5 s: two wrong passwords (argon2id each) must fit in one even on a
            // loaded machine, or the third attempt starts a new window and is let through.
            let tight = Policy {
                limit: 2,
                period_secs: 5,
            };
            match policy {
                "login_ip" => s.rate_limits.login_ip = tight,
                "login_account_ip" => s.rate_limits.login_account_ip = tight,
                _ => {
                    s.rate_limits.login_account_ip = Policy {
                        limit: 1,
                        period_secs: 5,
                    };
                    s.rate_limits.login_account = tight;
                    s.http.trusted_proxies = vec!["127.0.0.1/32".into(), "::1/128".into()];
                }
            }
        })
        .await;
        app.create_user("ada@example.org", "correct horse battery")
            .await;
        // For the per-account total, each attempt comes from another IP.
        let ips = [
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
            "198.51.100.4",
        ];
        for ip in &ips[..2] {
            assert_eq!(
                login_as(&app, ip, "ada@example.org", "wrong password")
                    .await
                    .status(),
                401,
                "{policy}"
            );
        }
        let resp = login_as(&app, ips[2], "ada@example.org", "wrong password").await;
        let retry = assert_limited(&resp, policy);
        tokio::time::sleep(Duration::from_secs(retry)).await;
        let resp = login_as(&app, ips[3], "ada@example.org", "correct horse battery").await;
        assert_eq!(resp.status(), 200, "{policy}: after the window");
    }
}

#[tokio::test]
async fn hsts_is_sent_when_the_issuer_is_https() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let url = crate::common::fresh_database_url(dir.path()).await;
    let settings = crate::common::test_settings(dir.path(), url);
    let app = TestApp::spawn_instance(settings, "https://id.example.com", dir).await;
    let resp = app.get_raw("/jwks.json").await;
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
}

#[tokio::test]
async fn hostile_input_on_the_pages_post_authorize_and_userinfo_is_a_4xx() {
    let app = app_with(|_| {}).await;
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/authorize", form, b"client_id=a&client_id=b".to_vec()),
        ("/authorize", form, vec![0xff, b'=', 0xfe]),
        ("/authorize", "text/plain", b"client_id=x".to_vec()),
        ("/userinfo", form, b"access_token=a&access_token=b".to_vec()),
        ("/userinfo", form, vec![b'a', b'=', 0xff]),
        ("/login", form, b"csrf=a&csrf=b".to_vec()),
        ("/login", form, vec![0xff; 100]),
        ("/login", "application/json", b"{}".to_vec()),
        ("/consent", form, b"return_to=%00".to_vec()),
        ("/consent", form, b"decision=allow".to_vec()),
        (
            "/end_session",
            form,
            b"id_token_hint=a&id_token_hint=b".to_vec(),
        ),
    ];
    for (path, ct, body) in cases {
        let resp = app
            .http
            .post(app.url(path))
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{path} {ct} {body:?}: {}",
            resp.status()
        );
    }
    // A chunked body larger than the limit is refused while being read.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b'a'; 1024])).collect();
    let stream = futures_util::stream::iter(chunks);
    let resp = app
        .http
        .post(app.url("/token"))
        .header("content-type", form)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
}
