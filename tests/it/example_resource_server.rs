//! The example resource server (examples/resource_server), run in-process against a real
//! Portcullis: it accepts good tokens and refuses the wrong audience, expired tokens, tokens
//! signed by another key, and DPoP-bound tokens without their proof; it follows key rotation.

#[path = "../../examples/resource_server/guard.rs"]
#[allow(dead_code)]
mod guard;

use std::sync::Arc;
use std::time::Duration;

use portcullis::clients::ClientRegistration;
use portcullis::clock::ManualClock;
use portcullis::resources::NewResource;
use serde_json::Value;

use crate::common::{TestApp, TestClient};
use crate::dpop_keys::{claims, now, DpopKey, Proof};

const ORDERS: &str = "https://orders.example.com";

/// The example API on a free port; its base URL.
async fn run_api(issuer: &str) -> String {
    use poem::listener::{Acceptor, Listener};
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().cloned().unwrap();
    let base = format!("http://{addr}");
    let g = guard::Guard::new(issuer, ORDERS, &base).refetch_unknown_keys_every(Duration::ZERO);
    let app = guard::app(Arc::new(g));
    tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(app).await });
    base
}

async fn token(app: &TestApp, client: &TestClient, proof: Option<String>, resource: bool) -> Value {
    let mut req = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref());
    let mut form = vec![("grant_type", "client_credentials")];
    if resource {
        form.push(("resource", ORDERS));
    }
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let resp = req.form(&form).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn call(api: &str, scheme: &str, token: &str, proof: Option<String>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("{api}/orders"))
        .header("Authorization", format!("{scheme} {token}"));
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge)
}

#[tokio::test]
async fn the_example_api_accepts_good_tokens_and_refuses_the_rest() {
    // The provider's clock starts two hours back, so its first tokens are long expired.
    let clock = ManualClock::new(now() - 7200);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let new = NewResource {
        identifier: ORDERS.into(),
        scopes: vec!["orders:read".into()],
        access_token_ttl_secs: None,
    };
    app.state.resources.create(&new, "test").await.unwrap();
    let client = app
        .register_client(ClientRegistration {
            name: "Batch".into(),
            grant_types: vec!["client_credentials".into()],
            scope: Some("orders:read".into()),
            resources: vec![ORDERS.into()],
            ..Default::default()
        })
        .await;
    let api = run_api(&app.base).await;
    let expired = token(&app, &client, None, true).await;
    // Back to the real time (which moved on while the server started).
    clock.advance(now() - portcullis::clock::Clock::now(&clock));

    let good = token(&app, &client, None, true).await;
    let at = good["access_token"].as_str().unwrap();
    assert_eq!(call(&api, "Bearer", at, None).await.0, 200);

    // Another audience (the provider's own), expired, and signed by a stranger's key.
    let other_aud = token(&app, &client, None, false).await;
    let (status, challenge) = call(
        &api,
        "Bearer",
        other_aud["access_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert_eq!(
        call(
            &api,
            "Bearer",
            expired["access_token"].as_str().unwrap(),
            None
        )
        .await
        .0,
        401
    );
    let forged = forge(at);
    assert_eq!(call(&api, "Bearer", &forged, None).await.0, 401);

    // DPoP: the bound token needs the DPoP scheme and a proof of its key.
    let key = DpopKey::generate();
    let bound = token(
        &app,
        &client,
        Some(key.proof("POST", &app.url("/token"))),
        true,
    )
    .await;
    let bt = bound["access_token"].as_str().unwrap();
    assert_eq!(claims(bt)["cnf"]["jkt"], key.jkt());
    let (status, challenge) = call(&api, "DPoP", bt, None).await;
    assert_eq!(status, 401);
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("invalid_dpop_proof"),
        "{challenge}"
    );
    assert_eq!(call(&api, "Bearer", bt, None).await.0, 401);
    let proof = key.sign(&Proof::for_request("GET", &format!("{api}/orders")).with_token(bt));
    assert_eq!(call(&api, "DPoP", bt, Some(proof.clone())).await.0, 200);
    assert_eq!(
        call(&api, "DPoP", bt, Some(proof)).await.0,
        401,
        "replayed proof"
    );

    // Rotation: the pre-published key signs next, then a key the API has never seen.
    for _ in 0..2 {
        app.state.keys.rotate().await.unwrap();
        let fresh = token(&app, &client, None, true).await;
        assert_eq!(
            call(
                &api,
                "Bearer",
                fresh["access_token"].as_str().unwrap(),
                None
            )
            .await
            .0,
            200
        );
    }
}

/// The token's header and claims, signed by a fresh key under the same `kid`.
fn forge(token: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let (header, payload) = (parts.next().unwrap(), parts.next().unwrap());
    let pair = josekit::jws::ES256.generate_key_pair().unwrap();
    let signer = josekit::jws::ES256
        .signer_from_der(josekit::jwk::KeyPair::to_der_private_key(&pair))
        .unwrap();
    use josekit::jws::JwsSigner;
    let sig = signer
        .sign(format!("{header}.{payload}").as_bytes())
        .unwrap();
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig))
}
