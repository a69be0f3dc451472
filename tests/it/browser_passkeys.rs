//! Passkeys in a real browser: headless Chromium with a virtual authenticator (the WebDriver
//! WebAuthn extension, CTAP2, internal transport, resident keys, user verification) runs our
//! `/static/webauthn.js` under the pages' CSP. A user signs in with the password, adds a passkey
//! on /account/security, signs out, signs in with the passkey alone from the login page, signs
//! out, signs in with the password again and finishes with the passkey button, ending at the
//! client each time. Screenshots of the second-factor and security pages go
//! to target/test-artifacts/.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use portcullis::clock::SystemClock;
use reqwest::Method;
use serde_json::{json, Value};

use crate::browser::{
    artifacts_dir, connect, find_chromedriver, wait_for_url_prefix, ChromeDriver,
};
use crate::common::{
    auth_url, exchange, fresh_database_url, query, test_settings, TestApp, TestClient, VERIFIER,
};

/// A command of the WebDriver WebAuthn extension (WebAuthn Level 2 §11), relative to
/// `/session/{id}/webauthn/`.
#[derive(Debug)]
struct WebAuthnCmd {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthnCmd {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

async fn webauthn(browser: &Client, method: Method, path: &str, body: Option<Value>) -> Value {
    let cmd = WebAuthnCmd {
        method,
        path: path.to_string(),
        body,
    };
    browser
        .issue_cmd(cmd)
        .await
        .unwrap_or_else(|e| panic!("webauthn/{path}: {e}"))
}

/// §11.3 "Add Virtual Authenticator": a platform authenticator that keeps discoverable
/// credentials and verifies the user without asking. Returns its id.
async fn add_authenticator(browser: &Client) -> String {
    let options = json!({
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": true,
        "hasUserVerification": true,
        "isUserVerified": true,
        "isUserConsenting": true,
        "automaticPresenceSimulation": true,
    });
    let id = webauthn(browser, Method::POST, "authenticator", Some(options)).await;
    id.as_str().expect("an authenticator id").to_string()
}

/// Keeps the authenticator's credentials but makes them non-discoverable (§11.5-11.8: get,
/// remove all, add back), so the login page's autofill request finds none and the password
/// path is taken; an allow-list (the second factor) still finds them.
async fn make_non_resident(browser: &Client, authenticator: &str) {
    let path = format!("authenticator/{authenticator}/credentials");
    let credentials = webauthn(browser, Method::GET, &path, None).await;
    let credentials = credentials
        .as_array()
        .expect("a list of credentials")
        .clone();
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    webauthn(browser, Method::DELETE, &path, None).await;
    for mut credential in credentials {
        credential["isResidentCredential"] = json!(false);
        let path = format!("authenticator/{authenticator}/credential");
        webauthn(browser, Method::POST, &path, Some(credential)).await;
    }
}

async fn sign_out(browser: &Client, app: &TestApp) {
    browser
        .goto(&app.url("/end_session"))
        .await
        .expect("open the sign-out page");
    element(browser, "button[name=decision][value=logout]")
        .await
        .click()
        .await
        .expect("click sign out");
    for _ in 0..100 {
        let source = browser.source().await.unwrap_or_default();
        if source.contains("You are signed out") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not signed out: at {:?}", browser.current_url().await);
}

/// The claims of the ID token for the code in a client redirect.
async fn id_token(app: &TestApp, client: &TestClient, back: &url::Url) -> Value {
    let code = query(back, "code").expect("a code");
    let (status, _, tokens) = exchange(app, client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn assert_passkey_sign_in(id: &Value) {
    assert_eq!(id["acr"], "phr", "{id}");
    let amr = id["amr"].as_array().unwrap();
    assert!(
        amr.contains(&json!("user")) && amr.contains(&json!("mfa")),
        "{id}"
    );
    assert!(
        amr.contains(&json!("hwk")) || amr.contains(&json!("swk")),
        "{id}"
    );
}

async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let source = browser.source().await.unwrap_or_default();
            panic!(
                "no {css} ({e}) at {:?}:\n{source}",
                browser.current_url().await
            )
        }
    }
}

/// Waits until the element is shown (the script unhides `data-webauthn-only` elements).
async fn visible(browser: &Client, css: &str) -> fantoccini::elements::Element {
    let found = element(browser, css).await;
    for _ in 0..100 {
        if found.is_displayed().await.unwrap_or(false) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} stayed hidden: did /static/webauthn.js run?");
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(artifacts_dir().join(name), &png).expect("write a screenshot");
}

async fn password_sign_in(browser: &Client, url: &str, email: &str, password: &str) {
    browser.goto(url).await.expect("open the page");
    element(browser, "input[name=username]")
        .await
        .send_keys(email)
        .await
        .expect("type the email");
    element(browser, "input[name=password]")
        .await
        .send_keys(password)
        .await
        .expect("type the password");
    element(browser, "form[action='/login'] button[type=submit]")
        .await
        .click()
        .await
        .expect("click sign in");
}

#[tokio::test]
async fn a_real_browser_adds_a_passkey_and_signs_in_with_it() {
    let Some(chromedriver) = find_chromedriver() else {
        return;
    };
    let artifacts = artifacts_dir();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let app =
        TestApp::spawn_localhost(test_settings(dir.path(), url), dir, Arc::new(SystemClock)).await;
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;

    let profile = tempfile::tempdir().expect("profile dir");
    let driver =
        ChromeDriver::start(&chromedriver, &artifacts.join("chromedriver-passkeys.log")).await;
    let browser = connect(&driver, profile.path()).await;
    let authenticator = add_authenticator(&browser).await;

    // A password sign-in, through consent, to the client.
    let first = auth_url(&app, &client, &[]);
    password_sign_in(&browser, &first, &user.email, &user.password).await;
    let _ = element(&browser, "button[name=decision][value=allow]")
        .await
        .click()
        .await;
    wait_for_url_prefix(&browser, &client.redirect_uri, Duration::from_secs(20)).await;

    // Add a passkey on the security page.
    browser
        .goto(&app.url("/account/security"))
        .await
        .expect("open the security page");
    visible(&browser, "#add-passkey")
        .await
        .find(Locator::Css("input[name=name]"))
        .await
        .expect("the name field")
        .send_keys("This browser")
        .await
        .expect("type a name");
    element(&browser, "#add-passkey button[type=submit]")
        .await
        .click()
        .await
        .expect("click add a passkey");
    visible(&browser, "form[data-webauthn=register] button[type=submit]")
        .await
        .click()
        .await
        .expect("click create the passkey");
    element(&browser, "#recovery-codes").await;
    browser
        .goto(&app.url("/account/security"))
        .await
        .expect("open the security page again");
    let listed = element(&browser, "#factors").await.text().await.unwrap();
    assert!(listed.contains("This browser"), "{listed}");
    screenshot(&browser, "account-security.png").await;

    // Signed out, the login page offers the passkey (autofill, or its button) and that alone
    // signs in.
    sign_out(&browser, &app).await;
    browser.goto(&first).await.expect("open the login page");
    let at_client = |url: &Result<url::Url, _>| {
        url.as_ref()
            .is_ok_and(|u: &url::Url| u.as_str().starts_with(&client.redirect_uri))
    };
    let mut by_autofill = false;
    for _ in 0..30 {
        if at_client(&browser.current_url().await) {
            by_autofill = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !by_autofill {
        let _ = visible(
            &browser,
            "form[data-webauthn=discover] [data-webauthn-start]",
        )
        .await
        .click()
        .await;
    }
    println!("passwordless sign-in by autofill: {by_autofill}");
    let back = wait_for_url_prefix(&browser, &client.redirect_uri, Duration::from_secs(20)).await;
    let id = id_token(&app, &client, &back).await;
    assert_passkey_sign_in(&id);
    assert!(
        !id["amr"].as_array().unwrap().contains(&json!("pwd")),
        "{id}"
    );

    // Signed out again, with a passkey autofill cannot offer: the password, then the passkey
    // button of the second-factor page.
    sign_out(&browser, &app).await;
    make_non_resident(&browser, &authenticator).await;
    password_sign_in(&browser, &first, &user.email, &user.password).await;
    let button = visible(
        &browser,
        "form[data-webauthn=authenticate] button[type=submit]",
    )
    .await;
    screenshot(&browser, "mfa-second-factor.png").await;
    let _ = button.click().await;
    let back = wait_for_url_prefix(&browser, &client.redirect_uri, Duration::from_secs(20)).await;
    browser.close().await.expect("close the browser session");
    drop(driver);

    let id = id_token(&app, &client, &back).await;
    assert_passkey_sign_in(&id);
    assert!(
        id["amr"].as_array().unwrap().contains(&json!("pwd")),
        "{id}"
    );
    app.stop().await;
}
