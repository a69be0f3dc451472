//! Per-IP rate limits for IPv6 clients: one budget per /64 (`rate_limits.ipv6_prefix`), an
//! IPv4-mapped address counted as its IPv4 address; the audit trail keeps the full address.
//! The clients are seen through a trusted proxy's `X-Forwarded-For`.

use portcullis::config::Settings;
use portcullis::limiter::Policy;

use crate::common::{app_with, browser, form_value, TestApp};

fn behind_the_proxy(s: &mut Settings) {
    s.http.trusted_proxies = vec!["127.0.0.1/32".into(), "::1/128".into()];
}

async fn get_as(app: &TestApp, ip: &str) -> reqwest::Response {
    app.http
        .get(app.url("/jwks.json"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

fn assert_limited(resp: &reqwest::Response, policy: &str, what: &str) {
    assert_eq!(resp.status(), 429, "{what}");
    let h = resp.headers()["ratelimit-policy"].to_str().unwrap();
    assert!(h.starts_with(&format!("\"{policy}\";")), "{what}: {h}");
}

/// A server behind a trusted proxy whose default per-IP limit is `limit` requests a minute.
async fn default_limit_of(limit: u32) -> TestApp {
    app_with(|s| {
        behind_the_proxy(s);
        s.rate_limits.default = Policy {
            limit,
            period_secs: 60,
        };
    })
    .await
}

#[tokio::test]
async fn addresses_of_one_ipv6_slash_64_share_the_default_budget_and_another_64_does_not() {
    let app = default_limit_of(3).await;
    for ip in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aaaa::3"] {
        assert_eq!(get_as(&app, ip).await.status(), 200, "{ip}");
    }
    // A fresh address of the same /64 buys no fresh budget.
    let resp = get_as(&app, "2001:db8:1:2:ffff:ffff:ffff:ffff").await;
    assert_limited(&resp, "default", "same /64");
    // The neighbouring /64 is another client.
    assert_eq!(get_as(&app, "2001:db8:1:3::1").await.status(), 200);
}

#[tokio::test]
async fn a_mapped_ipv4_address_shares_the_budget_of_the_ipv4_address() {
    let app = default_limit_of(3).await;
    for ip in ["203.0.113.5", "::ffff:203.0.113.5", "203.0.113.5"] {
        assert_eq!(get_as(&app, ip).await.status(), 200, "{ip}");
    }
    assert_limited(
        &get_as(&app, "::ffff:203.0.113.5").await,
        "default",
        "mapped",
    );
    assert_eq!(get_as(&app, "203.0.113.6").await.status(), 200);
}

#[tokio::test]
async fn the_ipv6_prefix_length_is_taken_from_the_config() {
    let app = app_with(|s| {
        behind_the_proxy(s);
        s.rate_limits.ipv6_prefix = 128;
        s.rate_limits.default = Policy {
            limit: 1,
            period_secs: 60,
        };
    })
    .await;
    assert_eq!(get_as(&app, "2001:db8:1:2::1").await.status(), 200);
    assert_eq!(get_as(&app, "2001:db8:1:2::2").await.status(), 200);
    assert_eq!(get_as(&app, "2001:db8:1:2::1").await.status(), 429);
}

/// Posts the login form, as `ip`, with a wrong password.
async fn fail_login_as(app: &TestApp, ip: &str) -> reqwest::Response {
    let b = browser();
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
            ("username", "ada@example.org"),
            ("password", "wrong password"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_limits_count_per_slash_64_while_the_audit_keeps_the_full_address() {
    let app = app_with(|s| {
        behind_the_proxy(s);
        s.rate_limits.login_ip = Policy {
            limit: 2,
            period_secs: 60,
        };
    })
    .await;
    app.create_user("ada@example.org", "correct horse battery")
        .await;
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6::2"] {
        assert_eq!(fail_login_as(&app, ip).await.status(), 401, "{ip}");
    }
    assert_limited(
        &fail_login_as(&app, "2001:db8:5:6::3").await,
        "login_ip",
        "same /64",
    );
    assert_eq!(fail_login_as(&app, "2001:db8:5:7::1").await.status(), 401);

    let audit = app.state.store.recent_audit(50).await.unwrap();
    let failed: Vec<&str> = audit
        .iter()
        .filter(|e| e.kind == "login.failed")
        .filter_map(|e| e.ip.as_deref())
        .collect();
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:7::1"] {
        assert!(failed.contains(&ip), "{ip} in {failed:?}");
    }
}

#[tokio::test]
async fn failed_client_authentication_is_counted_per_slash_64() {
    let app = app_with(|s| {
        behind_the_proxy(s);
        s.rate_limits.client_auth_failures = Policy {
            limit: 2,
            period_secs: 60,
        };
    })
    .await;
    // A different (unknown) client each time: only the per-IP budget is shared.
    let attempt = |ip: &'static str, client: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/token"))
                .header("x-forwarded-for", ip)
                .basic_auth(client, Some("not-the-secret"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(attempt("2001:db8:9:1::1", "c1").await.status(), 401);
    assert_eq!(attempt("2001:db8:9:1::2", "c2").await.status(), 401);
    assert_limited(
        &attempt("2001:db8:9:1::3", "c3").await,
        "client_auth_failures",
        "same /64",
    );
    assert_eq!(attempt("2001:db8:9:2::1", "c4").await.status(), 401);
}
