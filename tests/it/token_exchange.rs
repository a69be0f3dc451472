//! RFC 8693 token exchange: a client trades a user's token it holds for a narrower one to
//! another API, optionally naming the actor; a token of another client's, a DPoP-bound one,
//! and everything else are refused with the RFC's error codes.

use portcullis::clients::ClientRegistration;
use portcullis::resources::NewResource;
use serde_json::Value;

use crate::common::{post_form, tokens_for, TestApp, TestClient};
use crate::dpop_keys::claims;

const ORDERS: &str = "https://orders.example.com";
const LEDGER: &str = "https://ledger.example.com";
const ELSEWHERE: &str = "https://elsewhere.example.com";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const IDT: &str = "urn:ietf:params:oauth:token-type:id_token";

struct Setup {
    app: TestApp,
    /// The user's app, allowed the Orders API.
    web: TestClient,
    /// Another client allowed the same APIs and the grant: it may not use the web shop's tokens.
    orders_api: TestClient,
    /// The user's access token for the Orders API.
    user_token: String,
    id_token: String,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    for (id, scopes) in [
        (ORDERS, vec!["orders:read", "orders:write"]),
        (LEDGER, vec!["orders:read"]),
        (ELSEWHERE, vec!["orders:read"]),
    ] {
        let new = NewResource {
            identifier: id.into(),
            scopes: scopes.into_iter().map(String::from).collect(),
            access_token_ttl_secs: None,
        };
        app.state.resources.create(&new, "test").await.unwrap();
    }
    let web = app
        .register_client(ClientRegistration {
            name: "Web shop".into(),
            redirect_uris: vec!["https://shop.example.com/cb".into()],
            grant_types: vec![
                "authorization_code".into(),
                "client_credentials".into(),
                EXCHANGE.into(),
            ],
            scope: Some("openid email orders:read orders:write".into()),
            resources: vec![ORDERS.into(), LEDGER.into()],
            ..Default::default()
        })
        .await;
    let orders_api = app
        .register_client(ClientRegistration {
            name: "Orders API".into(),
            grant_types: vec!["client_credentials".into(), EXCHANGE.into()],
            scope: Some("orders:read".into()),
            resources: vec![ORDERS.into(), LEDGER.into()],
            ..Default::default()
        })
        .await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (_, tokens) = tokens_for(&app, &web, &user, "openid orders:read orders:write").await;
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    // A second sign-in whose token request names the Orders API: the user's token for it.
    let user_token = orders_token(&app, &web, &user).await;
    Setup {
        app,
        web,
        orders_api,
        user_token,
        id_token,
    }
}

async fn orders_token(app: &TestApp, web: &TestClient, user: &crate::common::TestUser) -> String {
    use crate::common::{auth_url, browser, query, Landing, VERIFIER};
    let url = auth_url(
        app,
        web,
        &[
            ("scope", "openid orders:read orders:write"),
            ("resource", ORDERS),
        ],
    );
    let code = match app.sign_in(&browser(), &url, user, "allow").await {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, h) => panic!("{s}: {h}"),
    };
    let (status, body) = post_form(
        app,
        "/token",
        web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &web.redirect_uri),
            ("code_verifier", VERIFIER),
            ("resource", ORDERS),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn exchange(s: &Setup, client: &TestClient, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", s.user_token.as_str()),
        ("subject_token_type", AT),
        ("resource", LEDGER),
    ];
    for (k, v) in extra {
        form.retain(|(name, _)| name != k);
        if !v.is_empty() {
            form.push((k, v));
        }
    }
    post_form(&s.app, "/token", client, &form).await
}

#[tokio::test]
async fn a_client_trades_a_users_token_for_a_narrower_one_for_another_api() {
    let s = setup().await;
    let (status, body) = exchange(&s, &s.web, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], AT);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let at = claims(body["access_token"].as_str().unwrap());
    let user_at = claims(&s.user_token);
    assert_eq!(at["aud"], LEDGER);
    assert_eq!(at["sub"], user_at["sub"]);
    assert_eq!(at["client_id"], s.web.id.as_str());
    // It expires no later than the token it came from.
    assert!(at["exp"].as_i64().unwrap() <= user_at["exp"].as_i64().unwrap());
    // Only the ledger's scopes of what the user's token carried.
    assert_eq!(at["scope"], "orders:read");
    assert!(at.get("act").is_none());
    // Audited.
    let events = s.app.state.store.recent_audit(20).await.unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == "token.exchanged")
        .expect("audit event");
    assert_eq!(e.client_id.as_deref(), Some(s.web.id.as_str()));
    assert_eq!(e.detail["resource"], LEDGER);

    // `audience` names the same registered API.
    let (status, body) = exchange(&s, &s.web, &[("resource", ""), ("audience", LEDGER)]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_actor_token_becomes_the_act_claim() {
    let s = setup().await;
    let (status, own) = post_form(
        &s.app,
        "/token",
        &s.web,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{own}");
    let actor = own["access_token"].as_str().unwrap();
    let (status, body) = exchange(
        &s,
        &s.web,
        &[("actor_token", actor), ("actor_token_type", AT)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["act"]["sub"], s.web.id.as_str());
    // Introspection shows who acts.
    let (_, info) = post_form(
        &s.app,
        "/introspect",
        &s.web,
        &[("token", body["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(info["act"]["sub"], s.web.id.as_str());
    // actor_token_type without actor_token (and the other way round) is malformed.
    let (status, body) = exchange(&s, &s.web, &[("actor_token_type", AT)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn the_scope_may_only_narrow() {
    let s = setup().await;
    let (status, body) = exchange(&s, &s.web, &[("scope", "orders:read")]).await;
    assert_eq!(status, 200, "{body}");
    for wider in ["orders:read admin", "email"] {
        let (status, body) = exchange(&s, &s.web, &[("scope", wider)]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope")),
            "{wider}"
        );
    }
    // orders:write is the user's, but not the ledger's: nothing would be left.
    let (status, body) = exchange(&s, &s.web, &[("scope", "orders:write")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
}

#[tokio::test]
async fn exchanges_outside_the_policy_are_refused() {
    let s = setup().await;
    let no_grant = s
        .app
        .register_client(ClientRegistration {
            name: "Plain".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("orders:read".into()),
            resources: vec![ORDERS.into(), LEDGER.into()],
            ..Default::default()
        })
        .await;
    let (status, body) = exchange(&s, &no_grant, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    // A target the client is not allowed.
    let (status, body) = exchange(&s, &s.web, &[("resource", ELSEWHERE)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let (status, body) = exchange(&s, &s.web, &[("resource", "")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "no target"
    );
    // The web shop's token, presented by another client allowed the same APIs and the
    // grant: it may not become a token in that client's name.
    let (status, body) = exchange(&s, &s.orders_api, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("another client"));
    // Nor may another client's token be its actor.
    let (_, theirs) = post_form(
        &s.app,
        "/token",
        &s.orders_api,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let (status, body) = exchange(
        &s,
        &s.web,
        &[
            ("actor_token", theirs["access_token"].as_str().unwrap()),
            ("actor_token_type", AT),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // A subject token meant for neither the client nor its APIs.
    let outsider = s
        .app
        .register_client(ClientRegistration {
            name: "Outsider".into(),
            grant_types: vec![EXCHANGE.into()],
            scope: Some("orders:read".into()),
            resources: vec![LEDGER.into()],
            ..Default::default()
        })
        .await;
    let (status, body) = exchange(&s, &outsider, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // Garbage, the wrong token type, or an unsupported requested type.
    for extra in [
        [("subject_token", "not-a-token"), ("subject_token_type", AT)],
        [
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            ("scope", ""),
        ],
        [
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            ("scope", ""),
        ],
        [("subject_token", ""), ("scope", "")],
    ] {
        let (status, body) = exchange(&s, &s.web, &extra).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{extra:?}: {body}"
        );
    }
    // A revoked subject token is refused.
    let (status, _) = post_form(
        &s.app,
        "/revoke",
        &s.web,
        &[("token", s.user_token.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = exchange(&s, &s.web, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "revoked"
    );
}

#[tokio::test]
async fn a_client_may_trade_the_id_token_it_was_issued() {
    let s = setup().await;
    let (status, body) = exchange(
        &s,
        &s.web,
        &[
            ("subject_token", s.id_token.as_str()),
            ("subject_token_type", IDT),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        (at["aud"].as_str(), at["scope"].as_str()),
        (Some(LEDGER), Some("orders:read"))
    );
    // Another client's ID token is not.
    let (status, body) = exchange(
        &s,
        &s.orders_api,
        &[
            ("subject_token", s.id_token.as_str()),
            ("subject_token_type", IDT),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn a_public_client_cannot_be_registered_for_token_exchange() {
    let app = TestApp::spawn().await;
    let err = portcullis::clients::prepare(
        &ClientRegistration {
            name: "SPA".into(),
            redirect_uris: vec!["https://spa.example.com/cb".into()],
            grant_types: vec!["authorization_code".into(), EXCHANGE.into()],
            public: true,
            ..Default::default()
        },
        0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("token exchange"), "{err}");
    drop(app);
}

#[tokio::test]
async fn the_servers_own_audience_and_openid_scopes_are_no_apis() {
    let app = TestApp::spawn().await;
    let own = NewResource {
        identifier: app.settings.issuer.clone(),
        scopes: vec!["read".into()],
        access_token_ttl_secs: None,
    };
    // Tokens for the server's own audience open userinfo and the account API.
    assert!(app.state.resources.create(&own, "test").await.is_err());
    let openid = NewResource {
        identifier: "https://api.example.com".into(),
        scopes: vec!["read".into(), "openid".into()],
        access_token_ttl_secs: None,
    };
    let err = app
        .state
        .resources
        .create(&openid, "test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("openid"), "{err}");
}
