//! DPoP (RFC 9449): proofs at the token endpoint, bound tokens at userinfo and introspection,
//! replay across instances, server nonces, and public clients' bound refresh tokens.

use std::sync::Arc;

use portcullis::clients::ClientRegistration;
use serde_json::{json, Value};

use crate::common::{
    auth_url, browser, fresh_database_url, query, redis_base_url, test_settings, Landing, Served,
    TestApp, TestClient, VERIFIER,
};
use crate::dpop_keys::{claims, now, DpopKey, Proof};

async fn service(app: &TestApp, dpop_bound: bool) -> TestClient {
    app.register_client(ClientRegistration {
        name: "Service".into(),
        grant_types: vec!["client_credentials".into()],
        scope: Some("reports".into()),
        dpop_bound_access_tokens: dpop_bound,
        ..Default::default()
    })
    .await
}

/// `POST /token` with the client's credentials and these DPoP headers.
async fn token(
    app: &impl Served,
    client: &TestClient,
    proofs: &[String],
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.http().post(app.url("/token")).form(form);
    if let Some(secret) = &client.secret {
        req = req.basic_auth(&client.id, Some(secret));
    }
    for p in proofs {
        req = req.header("DPoP", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// Two instances of one deployment: one database, Redis when the tests have one.
async fn two_instances(require_nonce: bool) -> (TestApp, TestApp) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    settings.redis.url = redis_base_url();
    settings.dpop.require_nonce = require_nonce;
    let a = TestApp::spawn_with(
        settings.clone(),
        dir.clone(),
        Arc::new(portcullis::clock::SystemClock),
    )
    .await;
    let b = TestApp::spawn_instance(settings, &a.settings.issuer, dir).await;
    (a, b)
}

const CC: [(&str, &str); 1] = [("grant_type", "client_credentials")];

#[tokio::test]
async fn a_valid_proof_binds_the_token_to_the_key() {
    let app = TestApp::spawn().await;
    let client = service(&app, false).await;
    let key = DpopKey::generate();
    let (status, _, body) =
        token(&app, &client, &[key.proof("POST", &app.url("/token"))], &CC).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["cnf"], json!({"jkt": key.jkt()}));
    // RFC 9449 §6.2: introspection reports the binding.
    let (_, info) = crate::common::post_form(
        &app,
        "/introspect",
        &client,
        &[("token", body["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(info["active"], true);
    assert_eq!(info["cnf"], json!({"jkt": key.jkt()}));
    assert_eq!(info["token_type"], "DPoP");
    // Without a proof the token is a plain bearer token, as before.
    let (status, _, body) = token(&app, &client, &[], &CC).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")));
    assert!(claims(body["access_token"].as_str().unwrap())
        .get("cnf")
        .is_none());
    // Discovery lists the proof algorithms.
    let (_, _, meta) = app.get_json("/.well-known/openid-configuration").await;
    assert!(meta["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES256")));
}

#[tokio::test]
async fn a_proof_with_any_field_wrong_is_invalid_dpop_proof() {
    let app = TestApp::spawn().await;
    let client = service(&app, false).await;
    let key = DpopKey::generate();
    let other = DpopKey::generate();
    let url = app.url("/token");
    let good = || Proof::for_request("POST", &url);
    let cases: Vec<(&str, String)> = vec![
        (
            "typ",
            key.sign(&Proof {
                typ: "JWT",
                ..good()
            }),
        ),
        (
            "alg none",
            key.sign(&Proof {
                alg: "none",
                ..good()
            }),
        ),
        (
            "alg HS256",
            key.sign(&Proof {
                alg: "HS256",
                ..good()
            }),
        ),
        (
            "private key in jwk",
            key.sign(&Proof {
                jwk_extra: Some(("d".into(), json!("AAAA"))),
                ..good()
            }),
        ),
        (
            "htm",
            key.sign(&Proof {
                htm: "GET".into(),
                ..good()
            }),
        ),
        (
            "htu",
            key.sign(&Proof {
                htu: app.url("/userinfo"),
                ..good()
            }),
        ),
        (
            "iat too old",
            key.sign(&Proof {
                iat: now() - 600,
                ..good()
            }),
        ),
        (
            "iat in the future",
            key.sign(&Proof {
                iat: now() + 600,
                ..good()
            }),
        ),
        (
            "no jti",
            key.sign(&Proof {
                without: vec!["jti"],
                ..good()
            }),
        ),
        (
            "no htu",
            key.sign(&Proof {
                without: vec!["htu"],
                ..good()
            }),
        ),
        (
            "no iat",
            key.sign(&Proof {
                without: vec!["iat"],
                ..good()
            }),
        ),
        (
            "nonce not ours",
            key.sign(&Proof {
                nonce: Some("bm9wZQ".into()),
                ..good()
            }),
        ),
        ("not a JWT", "not.a.jwt".into()),
    ];
    for (what, proof) in cases {
        let (status, _, body) = token(&app, &client, &[proof], &CC).await;
        let want = if what == "nonce not ours" {
            "use_dpop_nonce"
        } else {
            "invalid_dpop_proof"
        };
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(want)),
            "{what}: {body}"
        );
    }
    // Signed by another key than the one in its header.
    let mut parts: Vec<String> = key
        .proof("POST", &url)
        .split('.')
        .map(String::from)
        .collect();
    parts[2] = other
        .proof("POST", &url)
        .split('.')
        .nth(2)
        .unwrap()
        .to_string();
    let (status, _, body) = token(&app, &client, &[parts.join(".")], &CC).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    // RFC 9449 §4.3 step 1: one DPoP header only.
    let two = [key.proof("POST", &url), key.proof("POST", &url)];
    let (status, _, body) = token(&app, &client, &two, &CC).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    // The proof's htu is compared without query and fragment.
    let (status, _, body) = token(
        &app,
        &client,
        &[key.proof("POST", &format!("{url}?x=1"))],
        &CC,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_replayed_proof_is_refused_on_every_instance() {
    let (a, b) = two_instances(false).await;
    let client = service(&a, false).await;
    let key = DpopKey::generate();
    let proof = key.proof("POST", &a.url("/token"));
    let (status, _, body) = token(&a, &client, std::slice::from_ref(&proof), &CC).await;
    assert_eq!(status, 200, "{body}");
    for instance in [&a, &b] {
        let (status, _, body) = token(instance, &client, std::slice::from_ref(&proof), &CC).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{body}"
        );
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("used before"));
    }
    // Of parallel uses of one fresh proof on two instances exactly one wins.
    let proof = key.proof("POST", &a.url("/token"));
    let (x, y) = tokio::join!(
        token(&a, &client, std::slice::from_ref(&proof), &CC),
        token(&b, &client, std::slice::from_ref(&proof), &CC)
    );
    assert_eq!(
        [x.0, y.0].iter().filter(|s| **s == 200).count(),
        1,
        "{} {}",
        x.2,
        y.2
    );
}

#[tokio::test]
async fn a_server_nonce_is_asked_for_and_any_instance_accepts_it() {
    let (a, b) = two_instances(true).await;
    let client = service(&a, false).await;
    let key = DpopKey::generate();
    let endpoint = a.url("/token");
    let (status, headers, body) = token(&a, &client, &[key.proof("POST", &endpoint)], &CC).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{body}"
    );
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_string();
    // The retry with the nonce succeeds, on the other instance too.
    let retry = key.sign(&Proof {
        nonce: Some(nonce),
        ..Proof::for_request("POST", &endpoint)
    });
    let (status, _, body) = token(&b, &client, &[retry], &CC).await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
}

#[tokio::test]
async fn a_dpop_bound_client_must_send_a_proof() {
    let app = TestApp::spawn().await;
    let client = service(&app, true).await;
    let (status, _, body) = token(&app, &client, &[], &CC).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let key = DpopKey::generate();
    let (status, _, body) =
        token(&app, &client, &[key.proof("POST", &app.url("/token"))], &CC).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")));
}

/// A public client's code flow with a DPoP proof at the token endpoint.
async fn spa(app: &TestApp) -> TestClient {
    app.register_client(ClientRegistration {
        name: "SPA".into(),
        redirect_uris: vec!["https://spa.example.com/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: Some("openid email offline_access".into()),
        public: true,
        ..Default::default()
    })
    .await
}

/// Signs a new user in at `url`: the code.
async fn code_at(app: &TestApp, url: &str) -> String {
    let email = format!("{}@example.org", uuid::Uuid::new_v4());
    let user = app.create_user(&email, "correct horse battery").await;
    match app.sign_in(&browser(), url, &user, "allow").await {
        Landing::Client(to) => query(&to, "code").unwrap(),
        Landing::Page(s, html) => panic!("{s}: {html}"),
    }
}

/// Redeems a public client's code with these proofs.
async fn redeem(app: &TestApp, client: &TestClient, code: &str, proofs: &[String]) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", client.id.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let (status, _, body) = token(app, client, proofs, &form).await;
    (status, body)
}

/// A public client's code flow with a DPoP proof at the token endpoint.
async fn public_tokens(app: &TestApp, key: &DpopKey) -> (TestClient, Value) {
    let client = spa(app).await;
    let url = auth_url(app, &client, &[("scope", "openid email offline_access")]);
    let code = code_at(app, &url).await;
    let (status, body) = redeem(
        app,
        &client,
        &code,
        &[key.proof("POST", &app.url("/token"))],
    )
    .await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
    (client, body)
}

#[tokio::test]
async fn a_code_bound_to_a_key_is_redeemed_only_with_a_proof_of_it() {
    let app = TestApp::spawn().await;
    let client = spa(&app).await;
    let key = DpopKey::generate();
    let endpoint = app.url("/token");
    // RFC 9449 §10: `dpop_jkt` at /authorize.
    let url = auth_url(&app, &client, &[("dpop_jkt", &key.jkt())]);
    let code = code_at(&app, &url).await;
    for (what, proofs) in [
        ("no proof", vec![]),
        (
            "another key",
            vec![DpopKey::generate().proof("POST", &endpoint)],
        ),
    ] {
        let (status, body) = redeem(&app, &client, &code, &proofs).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}"
        );
    }
    // The refusals did not spend the code.
    let (status, body) = redeem(&app, &client, &code, &[key.proof("POST", &endpoint)]).await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );

    // RFC 9449 §10.1: a proof at /par binds the pushed request's code to its key.
    let challenge = crate::common::challenge(VERIFIER);
    let push = |proof: String, jkt: Option<String>| {
        let (app, client, challenge) = (&app, &client, challenge.clone());
        async move {
            let mut form = vec![
                ("client_id".to_string(), client.id.clone()),
                ("response_type".into(), "code".into()),
                ("redirect_uri".into(), client.redirect_uri.clone()),
                ("scope".into(), "openid".into()),
                ("code_challenge".into(), challenge),
                ("code_challenge_method".into(), "S256".into()),
            ];
            if let Some(j) = jkt {
                form.push(("dpop_jkt".into(), j));
            }
            let resp = app
                .http
                .post(app.url("/par"))
                .header("DPoP", proof)
                .form(&form)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let par = app.url("/par");
    let (status, body) = push(key.proof("POST", &par), Some(DpopKey::generate().jkt())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    let (status, body) = push(key.proof("POST", &par), None).await;
    assert_eq!(status, 201, "{body}");
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("request_uri", body["request_uri"].as_str().unwrap());
    let code = code_at(&app, url.as_str()).await;
    let other = DpopKey::generate().proof("POST", &endpoint);
    let (status, body) = redeem(&app, &client, &code, &[other]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = redeem(&app, &client, &code, &[key.proof("POST", &endpoint)]).await;
    assert_eq!(status, 200, "{body}");
}

async fn userinfo(
    app: &TestApp,
    scheme: &str,
    token: &str,
    proof: Option<String>,
) -> (u16, String, Value) {
    let mut req = app
        .http
        .get(app.url("/userinfo"))
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
    (status, challenge, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_bound_token_needs_its_key_at_userinfo() {
    let app = TestApp::spawn().await;
    let key = DpopKey::generate();
    let (_, tokens) = public_tokens(&app, &key).await;
    let at = tokens["access_token"].as_str().unwrap();
    let url = app.url("/userinfo");
    let proof = |p: Proof| key.sign(&p);

    let (status, _, body) = userinfo(
        &app,
        "DPoP",
        at,
        Some(proof(Proof::for_request("GET", &url).with_token(at))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["email"].as_str().unwrap().ends_with("@example.org"),
        "{body}"
    );
    // RFC 9449 §7.2: presented as a bearer token it is refused.
    let (status, challenge, _) = userinfo(&app, "Bearer", at, None).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // Without a proof, with the wrong ath, htm or htu, or another key's proof.
    let other = DpopKey::generate();
    let cases = [
        ("no proof", None, "invalid_dpop_proof"),
        (
            "ath",
            Some(proof(
                Proof::for_request("GET", &url).with_token("another token"),
            )),
            "invalid_dpop_proof",
        ),
        (
            "no ath",
            Some(proof(Proof::for_request("GET", &url))),
            "invalid_dpop_proof",
        ),
        (
            "htm",
            Some(proof(Proof::for_request("POST", &url).with_token(at))),
            "invalid_dpop_proof",
        ),
        (
            "htu",
            Some(proof(
                Proof::for_request("GET", &app.url("/token")).with_token(at),
            )),
            "invalid_dpop_proof",
        ),
        (
            "other key",
            Some(other.sign(&Proof::for_request("GET", &url).with_token(at))),
            "invalid_token",
        ),
    ];
    for (what, p, code) in cases {
        let (status, challenge, _) = userinfo(&app, "DPoP", at, p).await;
        assert_eq!(status, 401, "{what}");
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains(code),
            "{what}: {challenge}"
        );
        assert!(challenge.contains("algs=\""), "{what}: {challenge}");
    }
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_key() {
    let app = TestApp::spawn().await;
    let key = DpopKey::generate();
    let (client, tokens) = public_tokens(&app, &key).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", client.id.as_str()),
    ];
    let endpoint = app.url("/token");
    let (status, _, body) = token(
        &app,
        &client,
        &[DpopKey::generate().proof("POST", &endpoint)],
        &form,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "another key"
    );
    let (status, _, body) = token(&app, &client, &[], &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "no proof"
    );
    let (status, _, body) = token(&app, &client, &[key.proof("POST", &endpoint)], &form).await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
}

#[tokio::test]
async fn userinfo_challenges_a_stale_nonce_and_accepts_the_retry() {
    let app = TestApp::spawn().await;
    let key = DpopKey::generate();
    let (_, tokens) = public_tokens(&app, &key).await;
    let at = tokens["access_token"].as_str().unwrap();
    let url = app.url("/userinfo");
    let stale = Proof {
        nonce: Some("c3RhbGU".into()),
        ..Proof::for_request("GET", &url).with_token(at)
    };
    let resp = app
        .http
        .get(&url)
        .header("Authorization", format!("DPoP {at}"))
        .header("DPoP", key.sign(&stale))
        .send()
        .await
        .unwrap();
    // RFC 9449 §9: 401 with a DPoP challenge and a fresh nonce.
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
    let nonce = resp.headers()["dpop-nonce"].to_str().unwrap().to_string();
    let retry = Proof {
        nonce: Some(nonce),
        ..Proof::for_request("GET", &url).with_token(at)
    };
    let (status, _, body) = userinfo(&app, "DPoP", at, Some(key.sign(&retry))).await;
    assert_eq!(status, 200, "{body}");
}
