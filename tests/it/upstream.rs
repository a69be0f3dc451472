//! Upstream sign-in ("Sign in with …"): a second Portcullis server started in the test is the
//! upstream OpenID Connect provider; the `openidconnect` relying party signs in at ours
//! through it. Linking rules, unlinking, and the upstream's failures each end where they must.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse,
};
use portcullis::clients::ClientRegistration;
use portcullis::clock::SystemClock;
use portcullis::config::{Settings, UpstreamKind, UpstreamSettings};
use secrecy::SecretString;
use serde_json::Value;

use crate::common::{
    auth_url, browser, exchange, form_value, fresh_database_url, location, query, reserve,
    sign_in_at, test_settings, Landing, TestApp, TestClient, TestUser, VERIFIER,
};

pub(crate) const PROVIDER: &str = "corp";

/// Our server, the upstream Portcullis it trusts, a relying party at ours, and a person with
/// an account at the upstream.
pub(crate) struct Pair {
    pub upstream: TestApp,
    pub ours: TestApp,
    pub rp: TestClient,
    pub up_user: TestUser,
}

pub(crate) fn oidc_upstream(issuer: &str, client: &TestClient) -> UpstreamSettings {
    UpstreamSettings {
        id: PROVIDER.into(),
        name: "Corp".into(),
        kind: UpstreamKind::Oidc,
        issuer: Some(issuer.to_string()),
        client_id: client.id.clone(),
        client_secret: client.secret.clone().map(SecretString::from),
        client_secret_env: None,
        scopes: None,
        trust_email: false,
        auto_create: true,
        trust_amr: false,
        icon_url: None,
        authorization_url: None,
        token_url: None,
        userinfo_url: None,
        emails_url: None,
        claims: Default::default(),
    }
}

/// The upstream listens on `localhost`, ours on `127.0.0.1`: one browser keeps separate
/// cookies for each (cookies ignore ports).
pub(crate) async fn pair(tune: impl FnOnce(&mut Settings)) -> Pair {
    pair_with(|_| {}, tune).await
}

/// [`pair`] with the upstream's settings tuned too.
pub(crate) async fn pair_with(
    tune_upstream: impl FnOnce(&mut Settings),
    tune: impl FnOnce(&mut Settings),
) -> Pair {
    let up_dir = Arc::new(tempfile::tempdir().unwrap());
    let up_url = fresh_database_url(up_dir.path()).await;
    let mut up_settings = test_settings(up_dir.path(), up_url);
    tune_upstream(&mut up_settings);
    let upstream = TestApp::spawn_localhost(up_settings, up_dir, Arc::new(SystemClock)).await;
    let (listener, issuer) = reserve();
    let up_client = upstream
        .register_client(ClientRegistration {
            name: "Downstream Portcullis".into(),
            redirect_uris: vec![format!("{issuer}/upstream/{PROVIDER}/callback")],
            ..Default::default()
        })
        .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.upstream = vec![oidc_upstream(&upstream.base, &up_client)];
    tune(&mut settings);
    let ours = TestApp::spawn_on(listener, issuer, settings, dir, Arc::new(SystemClock)).await;
    let rp = ours.confidential_client().await;
    let up_user = upstream
        .create_user("ada@corp.example", "correct horse battery")
        .await;
    Pair {
        upstream,
        ours,
        rp,
        up_user,
    }
}

/// Opens the authorization URL at ours and presses "Sign in with Corp": the redirect to the
/// upstream.
pub(crate) async fn press_upstream_button(
    ours: &TestApp,
    b: &reqwest::Client,
    auth_url: &str,
) -> reqwest::Response {
    press_provider_button(ours, b, auth_url, PROVIDER, "Corp").await
}

/// Opens the authorization URL at ours and presses "Sign in with {name}" of the provider `id`.
pub(crate) async fn press_provider_button(
    ours: &TestApp,
    b: &reqwest::Client,
    auth_url: &str,
    id: &str,
    name: &str,
) -> reqwest::Response {
    let mut resp = b.get(auth_url).send().await.unwrap();
    while resp.status().is_redirection() {
        let to = location(&resp).unwrap();
        resp = b.get(to).send().await.unwrap();
    }
    let html = resp.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"/upstream/{id}/start\"")),
        "the login page offers the provider: {html}"
    );
    assert!(html.contains(&format!("Sign in with {name}")));
    let form = [
        ("csrf", form_value(&html, "csrf").unwrap()),
        ("return_to", form_value(&html, "return_to").unwrap()),
    ];
    b.post(ours.url(&format!("/upstream/{id}/start")))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Presses the button and signs in at the upstream as `who` (answering its consent with
/// `consent`): the callback URL the upstream sends the browser to.
pub(crate) async fn upstream_answer(
    p: &Pair,
    b: &reqwest::Client,
    auth_url: &str,
    who: &TestUser,
    consent: &str,
) -> url::Url {
    let start = press_upstream_button(&p.ours, b, auth_url).await;
    assert_eq!(start.status(), 303);
    let to = location(&start).unwrap();
    assert!(to.as_str().starts_with(&p.upstream.base), "{to}");
    match sign_in_at(&p.upstream, b, to.as_str(), who, consent).await {
        Landing::Client(back) => back,
        Landing::Page(status, html) => panic!("stopped at the upstream ({status}): {html}"),
    }
}

/// The whole trip: our login page, the upstream's login and consent, back to ours, and on
/// (signing in to `ours_user` if ours asks for its own sign-in) to the relying party.
pub(crate) async fn through_upstream(
    p: &Pair,
    b: &reqwest::Client,
    auth_url: &str,
    ours_user: Option<&TestUser>,
) -> Landing {
    let back = upstream_answer(p, b, auth_url, &p.up_user, "allow").await;
    assert!(
        back.as_str()
            .starts_with(&p.ours.url(&format!("/upstream/{PROVIDER}/callback"))),
        "{back}"
    );
    let nobody = nobody();
    sign_in_at(
        &p.ours,
        b,
        back.as_str(),
        ours_user.unwrap_or(&nobody),
        "allow",
    )
    .await
}

/// A person with no account at ours: a login form filled as them is refused.
pub(crate) fn nobody() -> TestUser {
    TestUser {
        id: uuid::Uuid::nil(),
        email: "nobody@example.org".into(),
        password: "not the password".into(),
    }
}

pub(crate) fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Signs in through the upstream and redeems the code: the token response.
async fn tokens_through_upstream(p: &Pair, ours_user: Option<&TestUser>) -> Value {
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[("scope", "openid email profile")]);
    let back = match through_upstream(p, &b, &url, ours_user).await {
        Landing::Client(back) => back,
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    };
    let code = query(&back, "code").expect("a code for the relying party");
    let (status, _, tokens) = exchange(&p.ours, &p.rp, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// Changes a user's address directly in the database (the test stands in for the whole
/// verified email-change flow of the upstream).
async fn set_email(app: &TestApp, id: uuid::Uuid, email: &str) {
    let url = &app.settings.database.url;
    let sql = "UPDATE users SET email = $1, email_lower = $2 WHERE id = $3";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(email)
            .bind(email)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(email)
            .bind(email)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// No identity is linked to the user.
async fn assert_unlinked(app: &TestApp, user: uuid::Uuid) {
    assert!(app
        .state
        .store
        .identities_of(user)
        .await
        .unwrap()
        .is_empty());
}

/// A fresh browser signs in at the upstream for the relying party and comes back: our page.
async fn come_back_from_upstream(p: &Pair) -> String {
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let back = upstream_answer(p, &b, &url, &p.up_user, "allow").await;
    b.get(back.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub(crate) async fn user_count(app: &TestApp) -> usize {
    app.state.store.list_users().await.unwrap().len()
}

pub(crate) async fn audit_kinds(app: &TestApp) -> Vec<(String, Value)> {
    app.state
        .store
        .recent_audit(200)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect()
}

#[tokio::test]
async fn a_relying_party_signs_a_new_user_in_through_an_upstream_portcullis() {
    // Trusted for addresses and for its `amr`.
    let p = pair(|s| {
        s.upstream[0].trust_email = true;
        s.upstream[0].trust_amr = true;
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata = Box::pin(CoreProviderMetadata::discover_async(
        IssuerUrl::new(p.ours.base.clone()).unwrap(),
        &http,
    ))
    .await
    .expect("discovery");
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(p.rp.id.clone()),
        p.rp.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(p.rp.redirect_uri.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();

    let b = browser();
    let back = match Box::pin(through_upstream(&p, &b, url.as_str(), None)).await {
        Landing::Client(back) => back,
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    };
    assert!(back.as_str().starts_with(&p.rp.redirect_uri));
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let request = rp
        .exchange_code(AuthorizationCode::new(query(&back, "code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier);
    let tokens = Box::pin(request.request_async(&http))
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&rp.id_token_verifier(), &nonce)
        .expect("a valid ID token from ours");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@corp.example"));
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    // `fed`, then the upstream's own method (a password there).
    assert_eq!(amr, vec!["fed".to_string(), "pwd".to_string()]);

    // A new account (auto_create), its address verified because the trusted upstream vouched
    // for it, and the identity that finds it next time.
    let sub: uuid::Uuid = claims.subject().parse().unwrap();
    let user = p.ours.state.store.get_user(sub).await.unwrap().unwrap();
    assert!(user.email_verified);
    assert!(user.password_hash.is_none());
    let ids = p.ours.state.store.identities_of(sub).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].provider, PROVIDER);
    assert_eq!(ids[0].subject, p.up_user.id.to_string());
    let kinds = audit_kinds(&p.ours).await;
    assert!(kinds
        .iter()
        .any(|(k, d)| k == "upstream.account_created" && d["provider"] == PROVIDER));
    assert!(kinds.iter().any(|(k, _)| k == "upstream.succeeded"));
    let metrics = p
        .ours
        .http
        .get(format!("{}/metrics", p.ours.management))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("portcullis_upstream_sign_ins_total{provider=\"corp\",result=\"created\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_returning_upstream_user_is_found_by_subject_even_after_changing_address() {
    let mut p = pair(|_| {}).await;
    let first = tokens_through_upstream(&p, None).await;
    let sub = claims_of(first["id_token"].as_str().unwrap())["sub"].clone();
    // The person changes their address at the upstream.
    set_email(&p.upstream, p.up_user.id, "ada.lovelace@corp.example").await;
    p.up_user.email = "ada.lovelace@corp.example".into();
    let again = tokens_through_upstream(&p, None).await;
    let claims = claims_of(again["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], sub, "the same account");
    // Not trusted for its `amr` (the default): one factor, `fed` alone.
    assert_eq!(claims["amr"], serde_json::json!(["fed"]));
    assert_eq!(claims["acr"], "1fa");
    // Nor for addresses: the account it made has an unverified one.
    let user = p
        .ours
        .state
        .store
        .get_user(sub.as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!user.email_verified);
    assert_eq!(user_count(&p.ours).await, 1, "no second account");
    let ids = p
        .ours
        .state
        .store
        .identities_of(sub.as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(ids[0].email.as_deref(), Some("ada.lovelace@corp.example"));
    assert!(ids[0].last_used_at.is_some());
}

#[tokio::test]
async fn a_trusted_verified_address_links_to_the_existing_account() {
    let p = pair(|s| s.upstream[0].trust_email = true).await;
    let existing = p
        .ours
        .create_user("ada@corp.example", "our own password 1")
        .await;
    let tokens = tokens_through_upstream(&p, None).await;
    let claims = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], existing.id.to_string());
    assert_eq!(user_count(&p.ours).await, 1);
    let ids = p.ours.state.store.identities_of(existing.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert!(audit_kinds(&p.ours)
        .await
        .iter()
        .any(|(k, _)| k == "upstream.linked"));
}

#[tokio::test]
async fn an_untrusted_address_must_prove_the_existing_account_before_linking() {
    let p = pair(|_| {}).await;
    let existing = p
        .ours
        .create_user("ada@corp.example", "our own password 1")
        .await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let back = upstream_answer(&p, &b, &url, &p.up_user, "allow").await;
    // Ours asks for the existing account's own sign-in, and links nothing yet.
    let page = b.get(back.as_str()).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("already exists here"), "{html}");
    assert!(html.contains("action=\"/login\""));
    assert!(
        !html.contains("/upstream/corp/start"),
        "no provider buttons on this page"
    );
    assert_unlinked(&p.ours, existing.id).await;
    // A wrong password links nothing either.
    let return_to = form_value(&html, "return_to").unwrap();
    assert!(return_to.starts_with("/upstream/link?pending="));
    let wrong = b
        .post(p.ours.url("/login"))
        .form(&[
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", return_to.clone()),
            ("username", existing.email.clone()),
            ("password", "not it".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_unlinked(&p.ours, existing.id).await;
    // The held link in another browser, even signed in as the owner, is refused.
    let other = browser();
    let landing = sign_in_at(&p.ours, &other, &p.ours.url(&return_to), &existing, "allow").await;
    assert!(matches!(landing, Landing::Page(400, _)));
    assert_unlinked(&p.ours, existing.id).await;
    // The password in the browser that came back: linked, and on to the relying party.
    let landing = sign_in_at(&p.ours, &b, &p.ours.url(&return_to), &existing, "allow").await;
    let Landing::Client(rp_back) = landing else {
        panic!("the sign-in goes on to the relying party");
    };
    assert!(query(&rp_back, "code").is_some());
    let ids = p.ours.state.store.identities_of(existing.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    // Next time the upstream alone signs in to that account.
    let tokens = tokens_through_upstream(&p, None).await;
    assert_eq!(
        claims_of(tokens["id_token"].as_str().unwrap())["sub"],
        existing.id.to_string()
    );
}

#[tokio::test]
async fn with_auto_create_off_a_stranger_gets_a_sign_up_closed_page_and_no_account() {
    let p = pair(|s| s.upstream[0].auto_create = false).await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let Landing::Page(status, html) = through_upstream(&p, &b, &url, None).await else {
        panic!("no account, no code");
    };
    assert_eq!(status, 403);
    assert!(html.contains("Sign-up is closed"), "{html}");
    assert_eq!(user_count(&p.ours).await, 0);
    assert!(audit_kinds(&p.ours)
        .await
        .iter()
        .any(|(k, d)| k == "upstream.failed" && d["reason"] == "sign_up_closed"));
}

#[tokio::test]
async fn an_admin_signing_in_upstream_without_mfa_there_must_pass_our_second_factor() {
    let p = pair(|s| {
        s.upstream[0].trust_email = true;
        s.accounts.mfa.required_for_roles = vec!["admin".into()];
    })
    .await;
    let admin = p
        .ours
        .create_user("ada@corp.example", "our own password 1")
        .await;
    let mut user = p
        .ours
        .state
        .store
        .get_user(admin.id)
        .await
        .unwrap()
        .unwrap();
    user.roles = vec!["admin".into()];
    assert!(p.ours.state.store.update_user(&user, &[]).await.unwrap());
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let Landing::Page(status, html) = through_upstream(&p, &b, &url, None).await else {
        panic!("no code without the second factor");
    };
    assert_eq!(status, 200);
    assert!(
        html.contains("name=\"mfa_token\""),
        "the second-factor page: {html}"
    );
    assert!(html.contains("Add an authenticator app"), "{html}");
    assert!(
        p.ours
            .state
            .store
            .user_sessions(admin.id, p.ours.state.clock.now(), 0)
            .await
            .unwrap()
            .is_empty(),
        "no session yet"
    );
}

#[tokio::test]
async fn prompt_login_and_max_age_are_passed_on_to_the_upstream() {
    let p = pair(|_| {}).await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[("prompt", "login"), ("max_age", "60")]);
    let start = press_upstream_button(&p.ours, &b, &url).await;
    let to = location(&start).unwrap();
    assert_eq!(query(&to, "prompt").as_deref(), Some("login"));
    assert_eq!(query(&to, "max_age").as_deref(), Some("60"));
    assert_eq!(query(&to, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query(&to, "nonce").is_some_and(|n| n.len() >= 43));
    assert!(query(&to, "state").is_some_and(|s| s.len() >= 43));
}

#[tokio::test]
async fn a_replayed_callback_and_a_refused_consent_end_on_pages_without_a_session() {
    let p = pair(|_| {}).await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let back = upstream_answer(&p, &b, &url, &p.up_user, "allow").await;
    let first = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let again = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert!(again
        .headers()
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap().contains("portcullis-session=")));
    assert!(again.text().await.unwrap().contains("no longer valid"));

    // Deny at the upstream (another person, asked for consent there): its error comes back,
    // and ours says so.
    let grace = p
        .upstream
        .create_user("grace@corp.example", "correct horse battery")
        .await;
    let b = browser();
    let back = upstream_answer(&p, &b, &url, &grace, "deny").await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    let page = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("did not sign you in"));
    let kinds = audit_kinds(&p.ours).await;
    assert!(kinds
        .iter()
        .any(|(k, d)| k == "upstream.failed" && d["reason"] == "bad_state"));
    assert!(kinds
        .iter()
        .any(|(k, d)| k == "upstream.failed" && d["reason"] == "denied"));
    assert_eq!(
        user_count(&p.ours).await,
        1,
        "only the first sign-in's account"
    );
}

#[tokio::test]
async fn a_callback_in_another_browser_is_refused_and_leaves_the_flow_unspent() {
    let p = pair(|_| {}).await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let back = upstream_answer(&p, &b, &url, &p.up_user, "allow").await;
    let elsewhere = browser().get(back.as_str()).send().await.unwrap();
    assert_eq!(elsewhere.status(), 403);
    // The right browser still finishes.
    let here = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(here.status(), 303);
}

#[tokio::test]
async fn an_unreachable_upstream_ends_on_a_clear_page() {
    let (dead, _) = reserve();
    let dead_issuer = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let p = pair(|s| s.upstream[0].issuer = Some(dead_issuer)).await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    let start = press_upstream_button(&p.ours, &b, &url).await;
    assert_eq!(start.status(), 502);
    assert!(start.text().await.unwrap().contains("cannot be reached"));
    assert!(audit_kinds(&p.ours)
        .await
        .iter()
        .any(|(k, d)| k == "upstream.failed" && d["reason"] == "unreachable"));
}

#[tokio::test]
async fn the_security_page_lists_links_and_unlinks_identities_but_not_the_last_way_in() {
    let p = pair(|_| {}).await;
    // A new account from the upstream: the identity is its only way in.
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[]);
    assert!(matches!(
        through_upstream(&p, &b, &url, None).await,
        Landing::Client(_)
    ));
    let html = b
        .get(p.ours.url("/account/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Sign-in providers") && html.contains("Corp"),
        "{html}"
    );
    let csrf = form_value(&html, "csrf").unwrap();
    let refused = b
        .post(p.ours.url("/account/security/unlink"))
        .form(&[("csrf", csrf.as_str()), ("provider", PROVIDER)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("last way to sign in"));
    // "Download my data" lists the identity.
    let page = b
        .get(p.ours.url("/account/data"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let export: Value = b
        .post(p.ours.url("/account/data/export"))
        .form(&[("csrf", form_value(&page, "csrf").unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["identities"][0]["provider"], PROVIDER);
    assert_eq!(export["identities"][0]["email"], "ada@corp.example");

    // An account with a password links the provider from its security page, then unlinks it.
    let owner = p
        .ours
        .create_user("grace@ours.example", "our own password 1")
        .await;
    let b = browser();
    let _ = p.ours.sign_in(&b, &url, &owner, "allow").await;
    let html = b
        .get(p.ours.url("/account/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Link Corp"), "{html}");
    let csrf = form_value(&html, "csrf").unwrap();
    let start = b
        .post(p.ours.url(&format!("/upstream/{PROVIDER}/start")))
        .form(&[("csrf", csrf.as_str()), ("link", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let to = location(&start).unwrap();
    // Another person at the upstream, so the link is not "already linked elsewhere".
    let grace_up = p
        .upstream
        .create_user("grace@corp.example", "correct horse battery")
        .await;
    let Landing::Client(back) = sign_in_at(&p.upstream, &b, to.as_str(), &grace_up, "allow").await
    else {
        panic!("back to ours");
    };
    let linked = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(linked.status(), 200);
    let html = linked.text().await.unwrap();
    assert!(html.contains("Corp is linked"), "{html}");
    assert!(html.contains("grace@corp.example"));
    let csrf = form_value(&html, "csrf").unwrap();
    let unlinked = b
        .post(p.ours.url("/account/security/unlink"))
        .form(&[("csrf", csrf.as_str()), ("provider", PROVIDER)])
        .send()
        .await
        .unwrap();
    assert_eq!(unlinked.status(), 200);
    assert!(unlinked.text().await.unwrap().contains("Corp is unlinked"));
    assert_unlinked(&p.ours, owner.id).await;
    let kinds = audit_kinds(&p.ours).await;
    assert!(kinds.iter().any(|(k, _)| k == "upstream.unlinked"));
}

#[tokio::test]
async fn an_upstream_key_rotation_is_followed_by_refetching_its_keys() {
    let p = pair(|_| {}).await;
    tokens_through_upstream(&p, None).await;
    // The upstream publishes its next key ahead of time, so two rotations make its active
    // key one that ours has never seen in the key set it cached.
    p.upstream.state.keys.rotate().await.unwrap();
    p.upstream.state.keys.rotate().await.unwrap();
    tokens_through_upstream(&p, None).await;
    assert_eq!(user_count(&p.ours).await, 1);
}

#[tokio::test]
async fn a_trusted_provider_vouching_for_nothing_still_needs_the_existing_accounts_sign_in() {
    // The upstream lets people sign in before they verify their address.
    let p = pair_with(
        |up| up.accounts.require_verified_email = false,
        |s| s.upstream[0].trust_email = true,
    )
    .await;
    // The upstream says the address is not verified.
    let mut up = p
        .upstream
        .state
        .store
        .get_user(p.up_user.id)
        .await
        .unwrap()
        .unwrap();
    up.email_verified = false;
    assert!(p.upstream.state.store.update_user(&up, &[]).await.unwrap());
    let existing = p
        .ours
        .create_user("ada@corp.example", "our own password 1")
        .await;
    let html = come_back_from_upstream(&p).await;
    assert!(html.contains("already exists here"), "{html}");
    assert_unlinked(&p.ours, existing.id).await;
    assert_eq!(user_count(&p.ours).await, 1, "no second account either");
}

#[tokio::test]
async fn a_trusted_address_never_links_to_an_account_whose_own_address_is_unproved() {
    // Someone registered the address here first, without proving it: the provider's word
    // must not hand the real owner's sign-ins to that account (pre-account takeover).
    let p = pair(|s| s.upstream[0].trust_email = true).await;
    let squatter = p
        .ours
        .create_user("ada@corp.example", "the squatters password")
        .await;
    let mut user = p
        .ours
        .state
        .store
        .get_user(squatter.id)
        .await
        .unwrap()
        .unwrap();
    user.email_verified = false;
    assert!(p.ours.state.store.update_user(&user, &[]).await.unwrap());
    let html = come_back_from_upstream(&p).await;
    assert!(html.contains("already exists here"), "{html}");
    assert_unlinked(&p.ours, squatter.id).await;
}

#[tokio::test]
async fn a_fresh_sign_in_demanded_by_the_relying_party_goes_through_the_upstream() {
    let p = pair(|_| {}).await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[("prompt", "login"), ("max_age", "0")]);
    let Landing::Client(back) = through_upstream(&p, &b, &url, None).await else {
        panic!("prompt=login through the upstream ends with a code");
    };
    assert!(query(&back, "code").is_some());
}

#[tokio::test]
async fn a_plain_oauth2_provider_cannot_prove_a_fresh_sign_in_and_is_refused_for_one() {
    let p = pair(|s| {
        let mut gh = s.upstream[0].clone();
        gh.id = "gh".into();
        gh.name = "GitHub".into();
        gh.kind = UpstreamKind::Github;
        gh.issuer = None;
        s.upstream.push(gh);
    })
    .await;
    let b = browser();
    let url = auth_url(&p.ours, &p.rp, &[("prompt", "login")]);
    let mut resp = b.get(&url).send().await.unwrap();
    while resp.status().is_redirection() {
        resp = b.get(location(&resp).unwrap()).send().await.unwrap();
    }
    let html = resp.text().await.unwrap();
    let start = b
        .post(p.ours.url("/upstream/gh/start"))
        .form(&[
            ("csrf", form_value(&html, "csrf").unwrap()),
            ("return_to", form_value(&html, "return_to").unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 403);
    assert!(start.text().await.unwrap().contains("fresh sign-in"));
}
