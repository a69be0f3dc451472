//! A real browser through both servers' pages: headless Chromium opens our `/authorize`,
//! presses "Sign in with Corp" on our login page, signs in and allows the consent at the
//! upstream Portcullis (on `localhost`), comes back to ours (on `127.0.0.1`), allows our
//! consent, and ends at the relying party's redirect URI with a code that redeems. The
//! harness is `browser.rs`'s; like it, this skips without chromedriver except under CI.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{
    artifacts_dir, connect, find_chromedriver, wait_for_url_prefix, ChromeDriver,
};
use crate::browser_console::wait_for;
use crate::common::{auth_url, exchange, query, VERIFIER};
use crate::upstream::{claims_of, pair, PROVIDER};

const WAIT: Duration = Duration::from_secs(15);

/// Waits for `css` on the page at `prefix`, or fails saying where the browser is.
async fn element_at(browser: &Client, prefix: &str, css: &str) -> fantoccini::elements::Element {
    wait_for_url_prefix(browser, prefix, WAIT).await;
    wait_for(browser, css).await
}

#[tokio::test]
async fn a_real_browser_signs_in_through_an_upstream_portcullis_and_both_consent_pages() {
    let Some(chromedriver) = find_chromedriver() else {
        return;
    };
    let artifacts = artifacts_dir();
    // Trusted for its `amr`: the upstream's password shows in ours.
    let p = pair(|s| s.upstream[0].trust_amr = true).await;
    let state = uuid::Uuid::new_v4().simple().to_string();
    let url = auth_url(
        &p.ours,
        &p.rp,
        &[("scope", "openid profile email"), ("state", state.as_str())],
    );

    // Declared before the driver, so the profile is removed only after Chromium is gone.
    let profile = tempfile::tempdir().expect("profile dir");
    let driver =
        ChromeDriver::start(&chromedriver, &artifacts.join("chromedriver-upstream.log")).await;
    let browser = connect(&driver, profile.path()).await;

    // Our login page, with the provider's button under the password form.
    browser.goto(&url).await.expect("open /authorize");
    let button = element_at(
        &browser,
        &p.ours.base,
        &format!("button[data-upstream={PROVIDER}]"),
    )
    .await;
    assert_eq!(
        button.text().await.expect("button text").trim(),
        "Sign in with Corp"
    );
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    std::fs::write(artifacts.join("login-page-upstream.png"), &png)
        .expect("write login-page-upstream.png");
    button.click().await.expect("press Sign in with Corp");

    // The upstream's own login page.
    let username = element_at(&browser, &p.upstream.base, "input[name=username]").await;
    username
        .send_keys(&p.up_user.email)
        .await
        .expect("type the upstream email");
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("the upstream password field")
        .send_keys(&p.up_user.password)
        .await
        .expect("type the upstream password");
    browser
        .find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await
        .expect("the upstream sign-in button")
        .click()
        .await
        .expect("sign in at the upstream");

    // The upstream's consent for our server, then ours for the relying party.
    let allow = "button[name=decision][value=allow]";
    element_at(&browser, &p.upstream.base, allow)
        .await
        .click()
        .await
        .expect("allow at the upstream");
    let ours_allow = element_at(&browser, &p.ours.base, allow).await;
    let page = browser.source().await.expect("our consent page");
    assert!(
        page.contains("Demo RP"),
        "our consent names the client: {page}"
    );
    // The click may report an error for the navigation to the unreachable client; where the
    // browser ends up is what counts.
    let _ = ours_allow.click().await;
    let back = wait_for_url_prefix(&browser, &p.rp.redirect_uri, Duration::from_secs(20)).await;
    browser.close().await.expect("close the browser session");
    drop(driver);

    assert_eq!(query(&back, "state").as_deref(), Some(state.as_str()));
    assert_eq!(query(&back, "iss").as_deref(), Some(p.ours.base.as_str()));
    let code = query(&back, "code").expect("a code in the redirect");
    let (status, _, tokens) = exchange(&p.ours, &p.rp, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let claims = claims_of(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(claims["email"], p.up_user.email);
    assert_eq!(claims["amr"], json!(["fed", "pwd"]));
    let sub: uuid::Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let ids = p.ours.state.store.identities_of(sub).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].subject, p.up_user.id.to_string());
}
