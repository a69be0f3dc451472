//! An upstream OpenID Connect provider that misbehaves: a small fake provider started in the
//! test hands out ID tokens with one defect each (wrong `iss`, wrong `aud`, a bad signature,
//! no `nonce`, expired). Each ends on a page saying the provider's answer was refused, with no
//! account, no session, and an audit event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use josekit::jws::{JwsHeader, JwsSigner, ES256};
use josekit::jwt::JwtPayload;
use poem::web::{Data, Form, Json};
use poem::{get, handler, post, EndpointExt, Route};
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::UpstreamSettings;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::common::{
    auth_url, browser, fresh_database_url, location, query, reserve, test_settings, TestApp,
    TestClient,
};
use crate::upstream::{oidc_upstream, press_upstream_button, PROVIDER};

/// ID tokens the fake's token endpoint answers, by code.
#[derive(Clone, Default)]
struct Minted(Arc<Mutex<HashMap<String, String>>>);

#[derive(Clone)]
struct Fake {
    issuer: String,
    jwks: Value,
}

#[handler]
fn discovery(fake: Data<&Fake>) -> Json<Value> {
    let i = &fake.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

#[handler]
fn jwks(fake: Data<&Fake>) -> Json<Value> {
    Json(fake.jwks.clone())
}

#[handler]
fn token(minted: Data<&Minted>, Form(form): Form<HashMap<String, String>>) -> Json<Value> {
    let code = form.get("code").cloned().unwrap_or_default();
    let id_token = minted
        .0
         .0
        .lock()
        .unwrap()
        .get(&code)
        .cloned()
        .unwrap_or_default();
    Json(
        json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 60, "id_token": id_token}),
    )
}

struct Setup {
    ours: TestApp,
    rp: TestClient,
    minted: Minted,
    issuer: String,
    signer: Box<dyn JwsSigner>,
    stranger: Box<dyn JwsSigner>,
}

async fn setup() -> Setup {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let pair = ES256.generate_key_pair().unwrap();
    let mut public = josekit::jwk::KeyPair::to_jwk_public_key(&pair);
    public.set_key_id("k1");
    let fake = Fake {
        issuer: issuer.clone(),
        jwks: json!({"keys": [serde_json::to_value(public.as_ref()).unwrap()]}),
    };
    let minted = Minted::default();
    let app = Route::new()
        .at("/.well-known/openid-configuration", get(discovery))
        .at("/jwks", get(jwks))
        .at("/token", post(token))
        .data(fake)
        .data(minted.clone());
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    let signer = ES256
        .signer_from_der(josekit::jwk::KeyPair::to_der_private_key(&pair))
        .unwrap();
    let other = ES256.generate_key_pair().unwrap();
    let stranger = ES256
        .signer_from_der(josekit::jwk::KeyPair::to_der_private_key(&other))
        .unwrap();

    let (listener, ours_issuer) = reserve();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    let client = TestClient {
        id: "downstream".into(),
        secret: Some("downstream-secret".into()),
        redirect_uri: String::new(),
    };
    let upstream: UpstreamSettings = UpstreamSettings {
        client_secret: Some(SecretString::from("downstream-secret")),
        ..oidc_upstream(&issuer, &client)
    };
    settings.upstream = vec![upstream];
    let ours = TestApp::spawn_on(listener, ours_issuer, settings, dir, Arc::new(SystemClock)).await;
    let rp = ours.confidential_client().await;
    Setup {
        ours,
        rp,
        minted,
        issuer,
        signer: Box::new(signer),
        stranger: Box::new(stranger),
    }
}

fn id_token(signer: &dyn JwsSigner, claims: Value) -> String {
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id("k1");
    let payload = JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap();
    josekit::jwt::encode_with_signer(&payload, &header, signer).unwrap()
}

/// Presses the button, has the fake answer with `token` for the flow, and comes back: the page.
async fn come_back_with(s: &Setup, token_for: impl FnOnce(&str) -> String) -> (u16, String, bool) {
    let b = browser();
    let start = press_upstream_button(&s.ours, &b, &auth_url(&s.ours, &s.rp, &[])).await;
    assert_eq!(start.status(), 303);
    let to = location(&start).unwrap();
    assert!(to.as_str().starts_with(&s.issuer));
    let nonce = query(&to, "nonce").unwrap();
    let state = query(&to, "state").unwrap();
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    s.minted
        .0
        .lock()
        .unwrap()
        .insert(code.clone(), token_for(&nonce));
    let mut back = url::Url::parse(&s.ours.url(&format!("/upstream/{PROVIDER}/callback"))).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let resp = b.get(back).send().await.unwrap();
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap_or("").contains("portcullis-session="));
    (status, resp.text().await.unwrap(), session)
}

fn good_claims(s: &Setup, nonce: &str) -> Value {
    let now = SystemClock.now();
    json!({
        "iss": s.issuer,
        "sub": "fake-user-1",
        "aud": "downstream",
        "exp": now + 300,
        "iat": now,
        "nonce": nonce,
        "email": "eve@fake.example",
        "email_verified": true,
    })
}

#[tokio::test]
async fn each_defect_of_an_upstream_id_token_ends_on_a_page_without_account_or_session() {
    let s = setup().await;
    type Defect = fn(&mut Value);
    let defects: [(&str, Defect); 5] = [
        ("wrong iss", |c| c["iss"] = json!("https://evil.example")),
        ("wrong aud", |c| c["aud"] = json!("someone-else")),
        ("no nonce", |c| {
            c.as_object_mut().unwrap().remove("nonce");
        }),
        ("other nonce", |c| c["nonce"] = json!("not-the-flows-nonce")),
        ("expired", |c| c["exp"] = json!(SystemClock.now() - 600)),
    ];
    for (name, defect) in defects {
        let (status, html, session) = come_back_with(&s, |nonce| {
            let mut claims = good_claims(&s, nonce);
            defect(&mut claims);
            id_token(s.signer.as_ref(), claims)
        })
        .await;
        assert_eq!(status, 502, "{name}: {html}");
        assert!(html.contains("was not accepted"), "{name}: {html}");
        assert!(!session, "{name}: no session");
    }
    // Signed by a key the provider never published.
    let (status, html, session) = come_back_with(&s, |nonce| {
        id_token(s.stranger.as_ref(), good_claims(&s, nonce))
    })
    .await;
    assert_eq!(status, 502, "bad signature: {html}");
    assert!(!session);
    // No ID token at all.
    let (status, _, session) = come_back_with(&s, |_| String::new()).await;
    assert_eq!(status, 502);
    assert!(!session);

    assert!(
        s.ours.state.store.list_users().await.unwrap().is_empty(),
        "no account"
    );
    let failures = s
        .ours
        .state
        .store
        .recent_audit(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.kind == "upstream.failed"
                && matches!(
                    e.detail["reason"].as_str(),
                    Some("invalid_id_token" | "bad_response")
                )
        })
        .count();
    assert_eq!(failures, 7);

    // The same provider with a sound token signs in: the checks, not the fake, refused.
    let (status, html, session) = come_back_with(&s, |nonce| {
        id_token(s.signer.as_ref(), good_claims(&s, nonce))
    })
    .await;
    assert_eq!(status, 303, "{html}");
    assert!(session);
    assert_eq!(s.ours.state.store.list_users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_mixed_up_iss_in_the_callback_is_refused() {
    let s = setup().await;
    let b = browser();
    let start = press_upstream_button(&s.ours, &b, &auth_url(&s.ours, &s.rp, &[])).await;
    let to = location(&start).unwrap();
    let state = query(&to, "state").unwrap();
    let mut back = url::Url::parse(&s.ours.url(&format!("/upstream/{PROVIDER}/callback"))).unwrap();
    back.query_pairs_mut()
        .append_pair("code", "whatever")
        .append_pair("state", &state)
        .append_pair("iss", "https://another-provider.example");
    let resp = b.get(back).send().await.unwrap();
    // RFC 9207: the answer came from (or through) another issuer.
    assert_eq!(resp.status(), 502);
    assert!(s.ours.state.store.list_users().await.unwrap().is_empty());
}

#[tokio::test]
async fn hostile_callbacks_get_clear_4xx_pages() {
    let s = setup().await;
    let b = browser();
    for path in [
        format!("/upstream/{PROVIDER}/callback"),
        format!("/upstream/{PROVIDER}/callback?state="),
        format!("/upstream/{PROVIDER}/callback?state=%00%ff&code=x"),
        format!(
            "/upstream/{PROVIDER}/callback?state={}&code=x",
            "a".repeat(5000)
        ),
        "/upstream/nope/callback?state=abc&code=x".to_string(),
    ] {
        let resp = b.get(s.ours.url(&path)).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    // Signed out, a held link's page asks for a sign-in, and a malformed one is not kept.
    let page = b
        .get(s.ours.url("/upstream/link?pending=../../etc"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/login\""));
    assert_eq!(
        crate::common::form_value(&page, "return_to").as_deref(),
        Some("")
    );
    let resp = b
        .post(s.ours.url("/upstream/nope/start"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert!((400..500).contains(&resp.status().as_u16()));
}
