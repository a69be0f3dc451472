//! Upstream sign-in through a plain OAuth 2.0 provider: a small fake of GitHub's OAuth app
//! endpoints (token, `/user`, `/user/emails`), started in the test, and `[[upstream]]` entries
//! of kind `github` (and `oauth2` with a claim mapping) whose URL overrides point at it. The
//! fake has no authorization page: the test reads `state` and `redirect_uri` from the URL our
//! button sends the browser to, makes a code at the fake, and brings it back to our callback
//! in the same browser.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Form, Json};
use poem::{get, handler, post, EndpointExt, IntoResponse, Request, Response, Route, Server};
use portcullis::config::{Settings, UpstreamKind, UpstreamSettings};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{
    app_with, auth_url, browser, challenge, exchange, location, query, sign_in_at, unescape,
    Landing, TestApp, TestClient, TestUser, VERIFIER,
};
use crate::upstream::{audit_kinds, claims_of, nobody, press_provider_button, user_count};

const CLIENT_ID: &str = "Iv1.8a61f9b3a7aba766";
const CLIENT_SECRET: &str = "fake-github-client-secret-1234567890";
const ID: &str = "github";
const NAME: &str = "GitHub";
/// GitHub's numeric user id: the identity's subject.
const OCTOCAT: u64 = 583231;

/// One entry of `GET /user/emails`.
#[derive(Debug, Clone, Serialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
    visibility: Option<String>,
}

#[derive(Debug, Clone)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
    emails: Vec<GithubEmail>,
    /// More members of `GET /user` (a generic provider's `email`, `email_verified`).
    extra: serde_json::Map<String, Value>,
}

impl GithubUser {
    fn new(id: u64, login: &str, name: Option<&str>) -> GithubUser {
        GithubUser {
            id,
            login: login.into(),
            name: name.map(str::to_string),
            emails: Vec::new(),
            extra: Default::default(),
        }
    }

    fn with_email(mut self, email: &str, primary: bool, verified: bool) -> GithubUser {
        self.emails.push(GithubEmail {
            email: email.into(),
            primary,
            verified,
            visibility: primary.then(|| "private".to_string()),
        });
        self
    }
}

/// A code the fake issued: for whom, and what the token request must prove.
struct Grant {
    user: u64,
    redirect_uri: String,
    code_challenge: String,
}

#[derive(Default)]
struct FakeState {
    /// The callback URL registered for the OAuth app.
    callback: String,
    users: HashMap<u64, GithubUser>,
    codes: HashMap<String, Grant>,
    /// Access token → user id (the user is read at each request, so changes show).
    tokens: HashMap<String, u64>,
    /// Answer every token request with this error (GitHub answers errors with 200).
    token_error: Option<String>,
    /// Answer `GET /user` with this status.
    user_status: Option<u16>,
    /// How the client authenticated at the token endpoint: "body" or "basic".
    client_auth: Vec<&'static str>,
    /// Why the fake refused a request, for the test's messages.
    refusals: Vec<String>,
}

type Shared = Arc<Mutex<FakeState>>;

/// The fake GitHub, on 127.0.0.1; stopped when dropped.
struct FakeGithub {
    base: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGithub {
    async fn start() -> FakeGithub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Shared::default();
        let app = Route::new()
            .at("/login/oauth/access_token", post(access_token))
            .at("/user", get(user_api))
            .at("/user/emails", get(emails_api))
            .data(state.clone());
        let acceptor = TcpAcceptor::from_std(listener).unwrap();
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        FakeGithub {
            base,
            state,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    fn add(&self, user: GithubUser) {
        self.lock().users.insert(user.id, user);
    }

    /// An `[[upstream]]` of kind `github` at this fake.
    fn upstream(&self) -> UpstreamSettings {
        UpstreamSettings {
            id: ID.into(),
            name: NAME.into(),
            kind: UpstreamKind::Github,
            issuer: None,
            client_id: CLIENT_ID.into(),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
            client_secret_env: None,
            scopes: None,
            trust_email: false,
            auto_create: true,
            trust_amr: false,
            icon_url: None,
            authorization_url: Some(self.url("/login/oauth/authorize")),
            token_url: Some(self.url("/login/oauth/access_token")),
            userinfo_url: Some(self.url("/user")),
            emails_url: Some(self.url("/user/emails")),
            claims: Default::default(),
        }
    }

    /// What GitHub's authorization page does once `user` allows the app: checks the request
    /// and answers the callback URL with a fresh code and the `state`.
    fn approve(&self, authorize: &url::Url, user: u64, github: bool) -> url::Url {
        assert!(
            authorize
                .as_str()
                .starts_with(&self.url("/login/oauth/authorize?")),
            "{authorize}"
        );
        let param = |name: &str| query(authorize, name).unwrap_or_default();
        let mut st = self.lock();
        assert_eq!(param("client_id"), CLIENT_ID);
        assert_eq!(
            param("redirect_uri"),
            st.callback,
            "the registered callback"
        );
        assert_eq!(param("response_type"), "code");
        assert_eq!(param("code_challenge_method"), "S256");
        assert_eq!(param("code_challenge").len(), 43);
        let state = param("state");
        assert!(state.len() >= 43, "an unguessable state: {state:?}");
        if github {
            let scope = param("scope");
            let scopes: Vec<&str> = scope.split(' ').collect();
            assert!(
                scopes.contains(&"read:user") && scopes.contains(&"user:email"),
                "{scope}"
            );
        }
        let code = uuid::Uuid::new_v4().simple().to_string();
        st.codes.insert(
            code.clone(),
            Grant {
                user,
                redirect_uri: param("redirect_uri"),
                code_challenge: param("code_challenge"),
            },
        );
        let mut back = url::Url::parse(&param("redirect_uri")).unwrap();
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
        back
    }
}

/// GitHub's error shape (it answers token errors with 200).
fn oauth_error(code: &str) -> Response {
    Json(json!({
        "error": code,
        "error_description": "The code passed is incorrect or expired.",
        "error_uri": "https://docs.github.com/apps/troubleshooting",
    }))
    .into_response()
}

/// The client's credentials: in the body, or (RFC 6749 §2.3.1) form-encoded in Basic.
fn client_credentials(
    req: &Request,
    form: &HashMap<String, String>,
) -> Option<(&'static str, String)> {
    if let Some(basic) = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unform = |s: &str| {
            url::form_urlencoded::parse(format!("v={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some(("basic", format!("{}:{}", unform(id)?, unform(secret)?)));
    }
    Some((
        "body",
        format!("{}:{}", form.get("client_id")?, form.get("client_secret")?),
    ))
}

#[handler]
fn access_token(
    req: &Request,
    Form(form): Form<HashMap<String, String>>,
    fake: Data<&Shared>,
) -> Response {
    let mut st = fake.lock().unwrap();
    if let Some(code) = st.token_error.clone() {
        return oauth_error(&code);
    }
    let Some((how, credentials)) = client_credentials(req, &form) else {
        st.refusals.push("no client credentials".into());
        return oauth_error("incorrect_client_credentials");
    };
    st.client_auth.push(how);
    if credentials != format!("{CLIENT_ID}:{CLIENT_SECRET}") {
        st.refusals.push("wrong client credentials".into());
        return oauth_error("incorrect_client_credentials");
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    // Single use, as at GitHub.
    let Some(grant) = st.codes.remove(field("code")) else {
        st.refusals.push("unknown or used code".into());
        return oauth_error("bad_verification_code");
    };
    if field("redirect_uri") != grant.redirect_uri {
        st.refusals
            .push(format!("redirect_uri {:?}", field("redirect_uri")));
        return oauth_error("redirect_uri_mismatch");
    }
    // RFC 7636 §4.6.
    if challenge(field("code_verifier")) != grant.code_challenge {
        st.refusals.push("PKCE verifier does not match".into());
        return oauth_error("bad_verification_code");
    }
    let token = format!("gho_{}", uuid::Uuid::new_v4().simple());
    st.tokens.insert(token.clone(), grant.user);
    let body = [
        ("access_token", token.as_str()),
        ("token_type", "bearer"),
        ("scope", "read:user,user:email"),
    ];
    // GitHub answers JSON only when asked to; form-encoded otherwise.
    let wants_json = req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        Json(json!(BTreeMap::from(body))).into_response()
    } else {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(body)
            .finish();
        Response::builder()
            .content_type("application/x-www-form-urlencoded")
            .body(form)
    }
}

/// The user a request's bearer token belongs to, or the status and message GitHub answers.
fn authorized(req: &Request, st: &mut FakeState) -> Result<GithubUser, (StatusCode, &'static str)> {
    // GitHub refuses API requests without a User-Agent.
    if req.header("user-agent").is_none_or(str::is_empty) {
        st.refusals.push("no User-Agent".into());
        return Err((StatusCode::FORBIDDEN, "Missing User-Agent"));
    }
    let token = req.header("authorization").and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("token "))
    });
    match token.and_then(|t| st.tokens.get(t)).copied() {
        Some(id) => Ok(st.users[&id].clone()),
        None => {
            st.refusals.push("bad access token".into());
            Err((StatusCode::UNAUTHORIZED, "Bad credentials"))
        }
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

#[handler]
fn user_api(req: &Request, fake: Data<&Shared>) -> Response {
    let mut st = fake.lock().unwrap();
    let user = match authorized(req, &mut st) {
        Ok(u) => u,
        Err((status, message)) => return api_error(status, message),
    };
    if let Some(status) = st.user_status {
        let status = StatusCode::from_u16(status).unwrap();
        return api_error(status, "Server Error");
    }
    let mut body = json!({
        "id": user.id,
        "login": user.login,
        "name": user.name,
        "type": "User",
    });
    body.as_object_mut().unwrap().extend(user.extra);
    Json(body).into_response()
}

#[handler]
fn emails_api(req: &Request, fake: Data<&Shared>) -> Response {
    let mut st = fake.lock().unwrap();
    match authorized(req, &mut st) {
        Ok(user) => Json(json!(user.emails)).into_response(),
        Err((status, message)) => api_error(status, message),
    }
}

/// Ours, trusting the fake through `upstream` (tuned by `tune`), and a relying party.
async fn ours_with(
    fake: &FakeGithub,
    upstream: UpstreamSettings,
    tune: impl FnOnce(&mut Settings),
) -> (TestApp, TestClient) {
    let ours = app_with(|s| {
        s.upstream = vec![upstream];
        tune(s);
    })
    .await;
    fake.lock().callback = ours.url(&format!("/upstream/{ID}/callback"));
    let rp = ours.confidential_client().await;
    (ours, rp)
}

/// Presses "Sign in with GitHub" on our login page and lets `user` allow the app at the
/// fake: the callback URL to bring back to ours.
async fn github_answer(
    ours: &TestApp,
    fake: &FakeGithub,
    b: &reqwest::Client,
    url: &str,
    user: u64,
) -> url::Url {
    let github = ours.settings.upstream[0].kind == UpstreamKind::Github;
    let start = press_provider_button(ours, b, url, ID, NAME).await;
    assert_eq!(start.status(), 303, "{:?}", start.text().await);
    let to = location(&start).unwrap();
    fake.approve(&to, user, github)
}

/// The whole trip for `user`: our login page, the fake, our callback and consent.
async fn through_github(
    ours: &TestApp,
    fake: &FakeGithub,
    b: &reqwest::Client,
    url: &str,
    user: u64,
) -> Landing {
    let back = github_answer(ours, fake, b, url, user).await;
    sign_in_at(ours, b, back.as_str(), &nobody(), "allow").await
}

/// Signs `user` in through the fake for `rp` and redeems the code: the ID token's claims.
async fn id_token_through_github(
    ours: &TestApp,
    rp: &TestClient,
    fake: &FakeGithub,
    user: u64,
) -> Value {
    let b = browser();
    let url = auth_url(ours, rp, &[("scope", "openid email profile")]);
    let back = match through_github(ours, fake, &b, &url, user).await {
        Landing::Client(back) => back,
        Landing::Page(status, html) => panic!(
            "stopped at a page ({status}); the fake refused {:?}: {html}",
            fake.lock().refusals
        ),
    };
    let code = query(&back, "code").expect("a code for the relying party");
    let (status, _, tokens) = exchange(ours, rp, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    claims_of(tokens["id_token"].as_str().unwrap())
}

fn octocat() -> GithubUser {
    GithubUser::new(OCTOCAT, "octocat", Some("The Octocat"))
        .with_email("octo@old.example", false, false)
        .with_email("octocat@github.example", true, true)
}

#[tokio::test]
async fn a_github_sign_in_creates_an_account_from_the_verified_primary_address_and_numeric_id() {
    let fake = FakeGithub::start().await;
    fake.add(octocat());
    // Trusted for addresses: its verified primary address is verified here too.
    let trusted = UpstreamSettings {
        trust_email: true,
        ..fake.upstream()
    };
    let (ours, rp) = ours_with(&fake, trusted, |_| {}).await;

    let claims = id_token_through_github(&ours, &rp, &fake, OCTOCAT).await;
    assert_eq!(claims["email"], "octocat@github.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["amr"], json!(["fed"]));
    let sub: uuid::Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let user = ours.state.store.get_user(sub).await.unwrap().unwrap();
    assert_eq!(user.email, "octocat@github.example");
    assert!(
        user.email_verified,
        "GitHub vouched for the primary address"
    );
    assert_eq!(user.name.as_deref(), Some("The Octocat"));
    assert!(user.password_hash.is_none());
    let ids = ours.state.store.identities_of(sub).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].provider, ID);
    assert_eq!(ids[0].subject, OCTOCAT.to_string(), "the numeric id");
    // The fake's checks all passed, with the credentials in the body as GitHub wants them.
    {
        let st = fake.lock();
        assert!(st.refusals.is_empty(), "{:?}", st.refusals);
        assert_eq!(st.client_auth, vec!["body"]);
    }
    let kinds = audit_kinds(&ours).await;
    assert!(kinds
        .iter()
        .any(|(k, d)| k == "upstream.account_created" && d["provider"] == ID));
}

#[tokio::test]
async fn a_returning_github_user_is_found_by_id_even_after_changing_address() {
    let fake = FakeGithub::start().await;
    fake.add(octocat());
    let (ours, rp) = ours_with(&fake, fake.upstream(), |_| {}).await;
    let first = id_token_through_github(&ours, &rp, &fake, OCTOCAT).await;

    // A new primary address, and no display name (the login stands in).
    let mut changed = GithubUser::new(OCTOCAT, "octocat", None);
    changed = changed.with_email("mona@new.example", true, true);
    fake.add(changed);
    let again = id_token_through_github(&ours, &rp, &fake, OCTOCAT).await;
    assert_eq!(again["sub"], first["sub"], "the same account");
    assert_eq!(user_count(&ours).await, 1, "no second account");
    let sub: uuid::Uuid = again["sub"].as_str().unwrap().parse().unwrap();
    let ids = ours.state.store.identities_of(sub).await.unwrap();
    assert_eq!(ids[0].email.as_deref(), Some("mona@new.example"));
    assert_eq!(ids[0].name.as_deref(), Some("octocat"));
    assert!(ids[0].last_used_at.is_some());
}

#[tokio::test]
async fn an_unverified_primary_github_address_gives_an_unverified_new_account() {
    let fake = FakeGithub::start().await;
    // A verified secondary address does not make the primary one verified.
    fake.add(
        GithubUser::new(OCTOCAT, "octocat", Some("The Octocat"))
            .with_email("octocat@github.example", true, false)
            .with_email("octo@verified.example", false, true),
    );
    let mut upstream = fake.upstream();
    upstream.trust_email = true;
    let (ours, rp) = ours_with(&fake, upstream, |_| {}).await;
    let claims = id_token_through_github(&ours, &rp, &fake, OCTOCAT).await;
    assert_eq!(claims["email"], "octocat@github.example");
    let sub: uuid::Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let user = ours.state.store.get_user(sub).await.unwrap().unwrap();
    assert!(!user.email_verified, "GitHub did not vouch for it");
}

/// A `trust_email` GitHub whose octocat has the primary address (`verified` or not) of an
/// account that already exists at ours.
async fn trusted_with_existing_account(
    verified: bool,
) -> (FakeGithub, TestApp, TestClient, TestUser) {
    let fake = FakeGithub::start().await;
    fake.add(GithubUser::new(OCTOCAT, "octocat", None).with_email(
        "ada@ours.example",
        true,
        verified,
    ));
    let mut upstream = fake.upstream();
    upstream.trust_email = true;
    let (ours, rp) = ours_with(&fake, upstream, |_| {}).await;
    let existing = ours
        .create_user("ada@ours.example", "our own password 1")
        .await;
    (fake, ours, rp, existing)
}

#[tokio::test]
async fn an_unverified_primary_github_address_never_links_to_an_existing_account_even_if_trusted() {
    let (fake, ours, rp, existing) = trusted_with_existing_account(false).await;
    let b = browser();
    let url = auth_url(&ours, &rp, &[]);
    let back = github_answer(&ours, &fake, &b, &url, OCTOCAT).await;
    let page = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().contains("portcullis-session=")));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("already exists here") && html.contains("action=\"/login\""),
        "the existing account's own sign-in is asked for: {html}"
    );
    let store = &ours.state.store;
    assert_eq!(store.identities_of(existing.id).await.unwrap().len(), 0);
    let octocat = store.find_identity(ID, &OCTOCAT.to_string()).await;
    assert!(
        octocat.unwrap().is_none(),
        "GitHub's octocat is linked to nobody"
    );
    assert_eq!(user_count(&ours).await, 1);
    assert!(!audit_kinds(&ours)
        .await
        .iter()
        .any(|(k, _)| k == "upstream.linked"));
}

#[tokio::test]
async fn a_trusted_verified_primary_github_address_links_to_the_existing_account() {
    let (fake, ours, rp, existing) = trusted_with_existing_account(true).await;
    let claims = id_token_through_github(&ours, &rp, &fake, OCTOCAT).await;
    assert_eq!(claims["sub"], existing.id.to_string());
    assert_eq!(user_count(&ours).await, 1);
    let ids = ours.state.store.identities_of(existing.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].subject, OCTOCAT.to_string());
    assert!(audit_kinds(&ours)
        .await
        .iter()
        .any(|(k, d)| k == "upstream.linked" && d["provider"] == ID));
}

/// The callback ends on a clear page (not a 500), with no account, no session, and the
/// failure audited.
async fn assert_refused_cleanly(ours: &TestApp, fake: &FakeGithub) {
    let rp = ours.confidential_client().await;
    let b = browser();
    let url = auth_url(ours, &rp, &[]);
    let back = github_answer(ours, fake, &b, &url, OCTOCAT).await;
    let page = b.get(back.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 502, "the provider's fault, said so");
    assert!(page
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().contains("portcullis-session=")));
    let html = unescape(&page.text().await.unwrap());
    assert!(html.contains("GitHub's answer was not accepted"), "{html}");
    assert_eq!(user_count(ours).await, 0, "no account");
    // Not signed in: the account pages ask for a sign-in.
    let account = b.get(ours.url("/account/security")).send().await.unwrap();
    assert!(
        account.status().is_redirection() || {
            let html = account.text().await.unwrap();
            html.contains("action=\"/login\"")
        },
        "no session"
    );
    assert!(audit_kinds(ours)
        .await
        .iter()
        .any(|(k, d)| k == "upstream.failed" && d["provider"] == ID));
}

#[tokio::test]
async fn a_refused_github_code_exchange_ends_on_a_clear_page_without_an_account() {
    let fake = FakeGithub::start().await;
    fake.add(octocat());
    fake.lock().token_error = Some("bad_verification_code".into());
    let (ours, _) = ours_with(&fake, fake.upstream(), |_| {}).await;
    assert_refused_cleanly(&ours, &fake).await;
    assert!(audit_kinds(&ours)
        .await
        .iter()
        .any(|(k, d)| k == "upstream.failed" && d["reason"] == "bad_response"));
}

#[tokio::test]
async fn a_failing_github_user_api_ends_on_a_clear_page_without_an_account() {
    let fake = FakeGithub::start().await;
    fake.add(octocat());
    fake.lock().user_status = Some(500);
    let (ours, _) = ours_with(&fake, fake.upstream(), |_| {}).await;
    assert_refused_cleanly(&ours, &fake).await;
    assert!(
        fake.lock().refusals.is_empty(),
        "the code exchange itself worked"
    );
}

#[tokio::test]
async fn an_oauth2_upstream_maps_the_user_api_answer_with_its_claims_table() {
    let fake = FakeGithub::start().await;
    let mut person = GithubUser::new(4242, "grace", Some("Grace Hopper"));
    person.extra = json!({"email": "grace@navy.example", "email_verified": true})
        .as_object()
        .unwrap()
        .clone();
    fake.add(person);
    let mut upstream = fake.upstream();
    upstream.kind = UpstreamKind::Oauth2;
    upstream.trust_email = true;
    upstream.emails_url = None;
    upstream.claims = [
        ("sub", "id"),
        ("email", "email"),
        ("email_verified", "email_verified"),
        ("name", "name"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (ours, rp) = ours_with(&fake, upstream, |_| {}).await;

    let claims = id_token_through_github(&ours, &rp, &fake, 4242).await;
    assert_eq!(claims["email"], "grace@navy.example");
    let sub: uuid::Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let user = ours.state.store.get_user(sub).await.unwrap().unwrap();
    assert!(
        user.email_verified,
        "email_verified mapped from the user API"
    );
    assert_eq!(user.name.as_deref(), Some("Grace Hopper"));
    let ids = ours.state.store.identities_of(sub).await.unwrap();
    assert_eq!(ids[0].subject, "4242");
    let st = fake.lock();
    assert!(st.refusals.is_empty(), "{:?}", st.refusals);
    // A generic OAuth 2.0 client authenticates with HTTP Basic (RFC 6749 §2.3.1).
    assert_eq!(st.client_auth, vec!["basic"]);
}
