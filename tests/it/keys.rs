//! Signing keys as a verifier sees them: through the JWKS.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::Jwk;
use josekit::jws::{EdDSA, JwsVerifier, ES256, PS256, RS256};
use josekit::jwt::JwtPayload;
use portcullis::app::Portcullis;
use portcullis::clock::{ManualClock, SystemClock};
use portcullis::keys::SigningAlg;
use portcullis::store::KeyState;
use serde_json::Value;

use crate::common::{fresh_database_url, test_settings, TestApp};

fn payload(sub: &str) -> JwtPayload {
    let mut p = JwtPayload::new();
    p.set_subject(sub);
    p.set_issuer("test");
    p
}

/// Verifies `token` against the JWKS the way a resource server would: by `kid`.
pub(crate) fn verify_with_jwks(jwks: &Value, token: &str) -> Result<(JwtPayload, String), String> {
    let header = josekit::jwt::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header
        .claim("kid")
        .and_then(Value::as_str)
        .ok_or("no kid")?
        .to_string();
    let jwk_json = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} not in JWKS"))?;
    let jwk = Jwk::from_bytes(jwk_json.to_string()).map_err(|e| e.to_string())?;
    let verifier: Box<dyn JwsVerifier> = match jwk.algorithm() {
        Some("RS256") => Box::new(RS256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?),
        Some("PS256") => Box::new(PS256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?),
        Some("ES256") => Box::new(ES256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?),
        Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?),
        other => return Err(format!("unexpected alg {other:?}")),
    };
    let (payload, _) =
        josekit::jwt::decode_with_verifier(token, &*verifier).map_err(|e| e.to_string())?;
    Ok((payload, kid))
}

#[tokio::test]
async fn jwks_verifies_tokens_signed_by_the_active_keys() {
    let app = TestApp::spawn().await;
    let (status, headers, jwks) = app.get_json("/jwks.json").await;
    assert_eq!(status, 200);
    let ring = app.state.keys.ring();
    for alg in SigningAlg::ALL {
        let token = ring.sign(alg, "at+jwt", &payload("alice")).unwrap();
        let (claims, kid) = verify_with_jwks(&jwks, &token).unwrap();
        assert_eq!(claims.subject(), Some("alice"));
        assert_eq!(Some(kid.as_str()), ring.active_kid(alg));
        let header = josekit::jwt::decode_header(&token).unwrap();
        assert_eq!(header.claim("typ"), Some(&Value::from("at+jwt")));
        assert_eq!(header.claim("alg"), Some(&Value::from(alg.as_str())));
    }
    // A token from a key the server never published does not verify.
    let stranger = TestApp::spawn().await;
    let foreign = stranger
        .state
        .keys
        .ring()
        .sign(SigningAlg::Es256, "JWT", &payload("x"))
        .unwrap();
    assert!(verify_with_jwks(&jwks, &foreign).is_err());
    let cache = headers["cache-control"].to_str().unwrap();
    let max_age: u64 = cache.rsplit("max-age=").next().unwrap().parse().unwrap();
    assert!(max_age < app.settings.longest_token_ttl_secs(), "{cache}");
}

#[tokio::test]
async fn jwks_publishes_public_members_only_with_kid_use_and_alg() {
    let app = TestApp::spawn().await;
    let (_, headers, jwks) = app.get_json("/jwks.json").await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let keys = jwks["keys"].as_array().unwrap();
    // An active and a next key for each algorithm.
    assert_eq!(keys.len(), 8, "{jwks}");
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    kids.sort();
    kids.dedup();
    assert_eq!(kids.len(), 8);
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(["RS256", "PS256", "ES256", "EdDSA"].contains(&k["alg"].as_str().unwrap()));
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(
                k.get(private).is_none(),
                "private member {private} published: {k}"
            );
        }
    }
}

#[tokio::test]
async fn rotation_publishes_old_and_new_keys_and_signs_with_the_new() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let before = app.state.keys.ring();
    let old_kid = before.active_kid(SigningAlg::Es256).unwrap().to_string();
    let old_token = before
        .sign(SigningAlg::Es256, "at+jwt", &payload("old"))
        .unwrap();
    let next_kid = before
        .summary()
        .iter()
        .find(|k| k.alg == "ES256" && k.state == KeyState::Next)
        .unwrap()
        .kid
        .clone();

    clock.advance(60);
    let promoted = app.state.keys.rotate().await.unwrap();
    assert!(
        promoted.contains(&(SigningAlg::Es256, next_kid.clone())),
        "the pre-published key signs next"
    );

    let (_, _, jwks) = app.get_json("/jwks.json").await;
    let after = app.state.keys.ring();
    let new_token = after
        .sign(SigningAlg::Es256, "at+jwt", &payload("new"))
        .unwrap();
    assert_eq!(verify_with_jwks(&jwks, &new_token).unwrap().1, next_kid);
    assert_eq!(
        verify_with_jwks(&jwks, &old_token).unwrap().1,
        old_kid,
        "retired key still published"
    );
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        12,
        "retired + active + next per alg"
    );

    // Once every token the retired key signed has expired, it leaves the JWKS.
    clock.advance(
        (app.settings.longest_token_ttl_secs() + app.settings.keys.jwks_max_age_secs) as i64 + 1,
    );
    app.state.keys.refresh().await.unwrap();
    let (_, _, jwks) = app.get_json("/jwks.json").await;
    assert!(verify_with_jwks(&jwks, &old_token).is_err());
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn a_restart_and_a_second_instance_serve_the_same_keys() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database_url(dir.path()).await;
    let settings = test_settings(dir.path(), url);
    let first = TestApp::spawn_with(settings.clone(), dir.clone(), Arc::new(SystemClock)).await;
    let second = TestApp::spawn_with(settings.clone(), dir.clone(), Arc::new(SystemClock)).await;
    let (_, _, jwks1) = first.get_json("/jwks.json").await;
    let (_, _, jwks2) = second.get_json("/jwks.json").await;
    assert_eq!(jwks1, jwks2);
    let token = second
        .state
        .keys
        .ring()
        .sign(SigningAlg::Rs256, "JWT", &payload("x"))
        .unwrap();
    verify_with_jwks(&jwks1, &token).unwrap();

    // One instance rotates; the other sees it at its next refresh.
    first.state.keys.rotate().await.unwrap();
    second.state.keys.refresh().await.unwrap();
    let (_, _, after1) = first.get_json("/jwks.json").await;
    let (_, _, after2) = second.get_json("/jwks.json").await;
    assert_eq!(after1, after2);
    assert_ne!(after1, jwks1);

    first.stop().await;
    second.stop().await;
    let restarted = TestApp::spawn_with(settings, dir, Arc::new(SystemClock)).await;
    let (_, _, again) = restarted.get_json("/jwks.json").await;
    assert_eq!(again, after1, "a restart keeps the keys");
}

#[tokio::test]
async fn a_different_master_key_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let settings = test_settings(dir.path(), url.clone());
    Portcullis::build(settings).await.unwrap();
    let other = test_settings(dir.path(), url);
    let err = Portcullis::build(other)
        .await
        .err()
        .expect("must refuse")
        .to_string();
    assert!(err.contains("master key"), "{err}");
}

#[tokio::test]
async fn scheduled_rotation_waits_for_pre_publication_and_happens_once() {
    let clock = ManualClock::new(1_800_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let every = 3_600;
    let prepublish = app.settings.keys.jwks_max_age_secs;
    assert!(
        app.state
            .keys
            .rotate_if_due(every, prepublish)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );

    clock.advance(every as i64);
    let next = app
        .state
        .keys
        .ring()
        .summary()
        .iter()
        .find(|k| k.alg == "ES256" && k.state == KeyState::Next)
        .unwrap()
        .kid
        .clone();
    // Several instances checking at the same moment: one rotation per algorithm.
    let (a, b) = tokio::join!(
        app.state.keys.rotate_if_due(every, prepublish),
        app.state.keys.rotate_if_due(every, prepublish)
    );
    assert_eq!(a.unwrap().len() + b.unwrap().len(), SigningAlg::ALL.len());
    let ring = app.state.keys.ring();
    assert_eq!(
        ring.active_kid(SigningAlg::Es256),
        Some(next.as_str()),
        "the pre-published key signs"
    );

    // Due again by age, but the new next key is younger than the JWKS cache lifetime.
    let mut store_view = app.state.store.list_signing_keys().await.unwrap();
    store_view.retain(|k| k.state == KeyState::Next);
    clock.advance(prepublish as i64 - 1);
    assert!(
        app.state
            .keys
            .rotate_if_due(1, prepublish)
            .await
            .unwrap()
            .is_empty(),
        "next key not published long enough"
    );
    clock.advance(1);
    assert_eq!(
        app.state
            .keys
            .rotate_if_due(1, prepublish)
            .await
            .unwrap()
            .len(),
        SigningAlg::ALL.len()
    );
}

#[tokio::test]
async fn an_emergency_revocation_unpublishes_a_signing_key_at_once() {
    let app = TestApp::spawn().await;
    let ring = app.state.keys.ring();
    let compromised = ring.active_kid(SigningAlg::Es256).unwrap().to_string();
    let token = ring
        .sign(SigningAlg::Es256, "at+jwt", &payload("x"))
        .unwrap();
    assert!(app.state.keys.revoke(&compromised).await.unwrap());
    let (_, _, jwks) = app.get_json("/jwks.json").await;
    assert!(
        verify_with_jwks(&jwks, &token).is_err(),
        "tokens of the revoked key no longer verify"
    );
    let ring = app.state.keys.ring();
    assert_ne!(
        ring.active_kid(SigningAlg::Es256),
        Some(compromised.as_str())
    );
    let fresh = ring
        .sign(SigningAlg::Es256, "at+jwt", &payload("y"))
        .unwrap();
    verify_with_jwks(&jwks, &fresh).unwrap();
    assert!(!app.state.keys.revoke("no-such-kid").await.unwrap());
}

/// The verification cache (keys.verify_cache_entries) remembers a checked token by the hash
/// of all of it; a revoked key, a swapped payload and expiry still decide.
#[tokio::test]
async fn a_remembered_token_still_fails_when_its_key_is_revoked_or_its_payload_is_swapped() {
    let app = TestApp::spawn().await;
    let ring = app.state.keys.ring();
    let now = std::time::SystemTime::now();
    let mut claims = payload("alice");
    claims.set_expires_at(&(now + std::time::Duration::from_secs(300)));
    let token = ring.sign(SigningAlg::Es256, "at+jwt", &claims).unwrap();
    for _ in 0..2 {
        let (checked, _, alg) = ring.verify(&token).unwrap();
        assert_eq!((checked.subject(), alg), (Some("alice"), SigningAlg::Es256));
    }

    // The genuine signature next to another payload is a different token: no hit, no pass.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged_claims = payload("mallory");
    forged_claims.set_expires_at(&(now + std::time::Duration::from_secs(300)));
    let forged_payload = URL_SAFE_NO_PAD.encode(forged_claims.to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert!(ring.verify(&forged).is_err());

    let kid = ring.active_kid(SigningAlg::Es256).unwrap().to_string();
    assert!(app.state.keys.revoke(&kid).await.unwrap());
    assert!(
        app.state.keys.ring().verify(&token).is_err(),
        "a remembered token of a revoked key no longer verifies"
    );
}

#[tokio::test]
async fn a_remembered_access_token_expires_on_time_at_userinfo() {
    let clock = ManualClock::new(1_900_000_000);
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let client = app.confidential_client().await;
    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let (_, tokens) = crate::common::tokens_for(&app, &client, &user, "openid").await;
    let access = tokens["access_token"].as_str().unwrap();
    let ttl = tokens["expires_in"].as_i64().unwrap();
    let status = |app: &TestApp| {
        let req = app.http.get(app.url("/userinfo")).bearer_auth(access);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&app).await, 200);
    assert_eq!(status(&app).await, 200);
    clock.advance(ttl + 1);
    assert_eq!(status(&app).await, 401, "the cache never outlives exp");
}
