//! Chromium through the operators' console (the harness of `browser.rs`): an admin signs in via
//! the built-in client on the hosted login page, registers a client, rotates its secret, finds
//! a user, ends that user's session (whose next request is then signed out) and reads the audit
//! entry. Screenshots of the dashboard, the client list and a user page go to
//! `target/test-artifacts/`.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{
    artifacts_dir, connect, find_chromedriver, wait_for_url_prefix, ChromeDriver,
};
use crate::common::{browser as http_browser, sign_in_at, Landing, TestApp, TestUser};
use crate::console::{admin, user_with_roles};

pub(crate) async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => panic!(
            "no {css} ({e}); the browser is at {:?}: {}",
            browser.current_url().await,
            browser.source().await.unwrap_or_default()
        ),
    }
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    std::fs::write(artifacts_dir().join(name), &png).expect("write the screenshot");
}

async fn click(browser: &Client, css: &str) {
    wait_for(browser, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    let field = wait_for(browser, css).await;
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn sign_in(browser: &Client, app: &TestApp, user: &TestUser) {
    browser
        .goto(&app.url("/console"))
        .await
        .expect("open /console");
    type_into(browser, "input[name=username]", &user.email).await;
    type_into(browser, "input[name=password]", &user.password).await;
    click(browser, "form[action='/login'] button[type=submit]").await;
    wait_for(browser, "#count-users").await;
}

#[tokio::test]
async fn an_operator_runs_the_console_in_a_real_browser() {
    let Some(chromedriver) = find_chromedriver() else {
        return;
    };
    let artifacts = artifacts_dir();
    let app = TestApp::spawn().await;
    let root = admin(&app).await;
    for (i, name) in ["grace", "linus", "margaret"].iter().enumerate() {
        let user = user_with_roles(&app, &format!("{name}@example.org"), &["user"]).await;
        if i == 0 {
            // Give the dashboard a failed sign-in to show.
            let b = http_browser();
            let wrong = TestUser {
                password: "not the password".into(),
                ..user
            };
            let _ = sign_in_at(&app, &b, &app.url("/console"), &wrong, "allow").await;
        }
    }
    // Ada has a browser of her own, signed in to the hosted pages.
    let ada = user_with_roles(&app, "ada@example.org", &["user"]).await;
    let ada_browser = http_browser();
    match sign_in_at(&app, &ada_browser, &app.url("/console"), &ada, "allow").await {
        Landing::Page(403, _) => {}
        Landing::Page(status, html) => panic!("ada: {status} {html}"),
        Landing::Client(to) => panic!("ada left the server: {to}"),
    }
    let ada_session_works = |b: reqwest::Client| {
        let url = app.url("/account/security");
        async move {
            let html = b.get(url).send().await.unwrap().text().await.unwrap();
            !html.contains("action=\"/login\"")
        }
    };
    assert!(ada_session_works(ada_browser.clone()).await);

    let profile = tempfile::tempdir().expect("profile dir");
    let driver =
        ChromeDriver::start(&chromedriver, &artifacts.join("chromedriver-console.log")).await;
    let browser = connect(&driver, profile.path()).await;

    // Signing in: /console → /authorize → the login page → back to the dashboard.
    sign_in(&browser, &app, &root).await;
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.path(), "/console", "{url}");
    screenshot(&browser, "console-dashboard.png").await;

    // Register a client.
    click(&browser, "a[href='/console/clients']").await;
    click(&browser, "#new-client").await;
    type_into(&browser, "#c-name", "Billing portal").await;
    type_into(
        &browser,
        "#c-redirects",
        "https://billing.example.com/callback",
    )
    .await;
    click(&browser, "#client-form button[type=submit]").await;
    let first = wait_for(&browser, "#client-secret")
        .await
        .text()
        .await
        .unwrap();
    assert!(first.len() >= 40, "a secret shown once: {first:?}");
    let client_id = browser
        .find(Locator::Css("dl.facts dd code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stored = app
        .state
        .store
        .get_client(&client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.name, "Billing portal");
    assert!(portcullis::random::verify_secret(
        &first,
        stored.secret_hash.as_deref().unwrap()
    ));

    // Rotate its secret.
    click(&browser, "a.btn-primary").await;
    wait_for(&browser, "#rotate-secret").await;
    screenshot(&browser, "console-client.png").await;
    click(&browser, "#rotate-secret").await;
    let second = wait_for(&browser, "#client-secret")
        .await
        .text()
        .await
        .unwrap();
    assert_ne!(first, second);
    let stored = app
        .state
        .store
        .get_client(&client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(portcullis::random::verify_secret(
        &second,
        stored.secret_hash.as_deref().unwrap()
    ));
    assert!(!portcullis::random::verify_secret(
        &first,
        stored.secret_hash.as_deref().unwrap()
    ));
    browser.goto(&app.url("/console/clients")).await.unwrap();
    wait_for(&browser, "#clients").await;
    screenshot(&browser, "console-clients.png").await;

    // Find Ada and end her session.
    click(&browser, "a[href='/console/users']").await;
    wait_for_url_prefix(
        &browser,
        &app.url("/console/users"),
        Duration::from_secs(10),
    )
    .await;
    type_into(&browser, "#q", "ada").await;
    click(&browser, "form.filters button[type=submit]").await;
    // The list of the search, not the one before it.
    wait_for_url_prefix(
        &browser,
        &app.url("/console/users?q=ada"),
        Duration::from_secs(10),
    )
    .await;
    click(&browser, "#users a.strong").await;
    wait_for(&browser, "#sessions").await;
    screenshot(&browser, "console-user.png").await;
    click(&browser, "#sessions button[type=submit]").await;
    let notice = wait_for(&browser, "#notice").await.text().await.unwrap();
    assert!(notice.contains("Session ended"), "{notice}");
    assert!(
        !ada_session_works(ada_browser.clone()).await,
        "Ada's session still works after it was ended"
    );

    // The audit log has the entry, with the operator as its actor.
    browser
        .goto(&app.url("/console/audit?kind=session.ended"))
        .await
        .unwrap();
    let row = wait_for(&browser, "#audit tbody tr")
        .await
        .text()
        .await
        .unwrap();
    assert!(row.contains("session.ended"), "{row}");
    assert!(row.contains(&root.id.to_string()), "the actor: {row}");
    assert!(row.contains(&ada.id.to_string()), "the subject: {row}");
    browser
        .goto(&app.url("/console/audit?kind=client.secret_rotated"))
        .await
        .unwrap();
    let row = wait_for(&browser, "#audit tbody tr")
        .await
        .text()
        .await
        .unwrap();
    assert!(row.contains(&client_id), "{row}");
    browser.goto(&app.url("/console/audit")).await.unwrap();
    wait_for(&browser, "#audit").await;
    screenshot(&browser, "console-audit.png").await;
    browser.goto(&app.url("/console/keys")).await.unwrap();
    wait_for(&browser, "#keys").await;
    screenshot(&browser, "console-keys.png").await;

    browser.close().await.expect("close the browser session");
    drop(driver);
    app.stop().await;
}
