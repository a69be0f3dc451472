//! The storage contract: one suite, run against the SQLite and the PostgreSQL adapter.

use std::sync::Arc;

use portcullis::store::{
    self, AccountToken, AuditEvent, AuditQuery, AuthorizationCode, BrowserSession, Client,
    EmailChange, FactorKind, KeyState, MfaChallenge, MfaFactor, RefreshToken, SigningKeyRecord,
    Store, StoreError, TokenPurpose, User, UserQuery,
};
use portcullis::store::{ClientQuery, ClientSort, UserSort};
use uuid::Uuid;

use crate::common::{fresh_pg_database, pg_base_url};

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        name: "Demo".into(),
        secret_hash: Some("ab".repeat(32)),
        redirect_uris: vec!["https://app.example.com/cb".into()],
        post_logout_redirect_uris: vec![],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: "openid profile".into(),
        token_endpoint_auth_method: "client_secret_basic".into(),
        first_party: false,
        id_token_signed_response_alg: Some("ES256".into()),
        access_token_signed_response_alg: None,
        always_issue_refresh_token: true,
        backchannel_logout_uri: Some("https://app.example.com/bcl".into()),
        backchannel_logout_session_required: true,
        jwks: None,
        jwks_uri: Some("https://app.example.com/jwks".into()),
        require_mfa: true,
        disabled: false,
        require_par: true,
        dynamic: true,
        logo_uri: Some("https://app.example.com/logo.png".into()),
        client_uri: Some("https://app.example.com/".into()),
        application_type: "native".into(),
        resources: vec![],
        dpop_bound_access_tokens: false,
        created_at: 100,
        updated_at: 100,
    }
}

fn user(email: &str) -> User {
    User {
        id: Uuid::new_v4(),
        email: email.into(),
        email_verified: false,
        name: Some("Ada".into()),
        password_hash: Some("$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA".into()),
        roles: vec!["user".into(), "expert".into()],
        disabled: false,
        created_at: 100,
        updated_at: 100,
        deleted_at: None,
    }
}

fn key(kid: &str, alg: &str, state: KeyState) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: alg.into(),
        state,
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        private_key: vec![1, 2, 3, 0, 255],
        created_at: 100,
        activated_at: (state == KeyState::Active).then_some(100),
        retired_at: None,
    }
}

async fn clients_round_trip_and_delete(store: Arc<dyn Store>) {
    let mut public = client("pub");
    public.secret_hash = None;
    public.token_endpoint_auth_method = "none".into();
    store.create_client(&client("conf"), &[]).await.unwrap();
    store.create_client(&public, &[]).await.unwrap();
    assert_eq!(
        store.get_client("conf").await.unwrap(),
        Some(client("conf"))
    );
    assert_eq!(store.get_client("pub").await.unwrap(), Some(public));
    assert_eq!(store.get_client("nope").await.unwrap(), None);
    assert_eq!(store.list_clients().await.unwrap().len(), 2);
    assert_eq!(store.first_party_client().await.unwrap(), None);
    let mut own = client("own");
    own.first_party = true;
    store.create_client(&own, &[]).await.unwrap();
    assert_eq!(store.first_party_client().await.unwrap(), Some(own));
    assert!(store.delete_client("own", &[]).await.unwrap());
    assert!(matches!(
        store.create_client(&client("conf"), &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.delete_client("conf", &[]).await.unwrap());
    assert!(!store.delete_client("conf", &[]).await.unwrap());
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
}

async fn emails_are_unique_whatever_their_case(store: Arc<dyn Store>) {
    let ada = user("Ada@Example.org");
    store.create_user(&ada, &[]).await.unwrap();
    let found = store
        .find_user_by_email(&User::email_key("ADA@example.ORG"))
        .await
        .unwrap();
    assert_eq!(found, Some(ada.clone()));
    assert_eq!(store.get_user(ada.id).await.unwrap(), Some(ada));
    let err = store
        .create_user(&user("ada@example.org"), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    assert_eq!(store.get_user(Uuid::new_v4()).await.unwrap(), None);
}

async fn first_keys_are_inserted_once_even_when_instances_race(store: Arc<dyn Store>) {
    let a = [
        key("a1", "ES256", KeyState::Active),
        key("a2", "ES256", KeyState::Next),
    ];
    let b = [
        key("b1", "ES256", KeyState::Active),
        key("b2", "ES256", KeyState::Next),
    ];
    let (ra, rb) = tokio::join!(store.insert_initial_keys(&a), store.insert_initial_keys(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb, "exactly one instance wins: {ra} {rb}");
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "no half-written set: {keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.state == KeyState::Active).count(),
        1
    );
    let stored = keys.iter().find(|k| k.state == KeyState::Active).unwrap();
    assert_eq!(stored.private_key, vec![1, 2, 3, 0, 255]);
}

async fn rotation_promotes_next_and_retires_active(store: Arc<dyn Store>) {
    store
        .insert_initial_keys(&[
            key("k1", "RS256", KeyState::Active),
            key("k2", "RS256", KeyState::Next),
        ])
        .await
        .unwrap();
    store
        .rotate_signing_keys(&key("k3", "RS256", KeyState::Next), 500, None, &[])
        .await
        .unwrap();
    let keys = store.list_signing_keys().await.unwrap();
    let state = |kid: &str| {
        keys.iter()
            .find(|k| k.kid == kid)
            .map(|k| (k.state, k.retired_at, k.activated_at))
    };
    assert_eq!(state("k1"), Some((KeyState::Retired, Some(500), Some(100))));
    assert_eq!(state("k2"), Some((KeyState::Active, None, Some(500))));
    assert_eq!(state("k3").map(|s| s.0), Some(KeyState::Next));
    // Retired keys are purged only once their retention has passed.
    assert_eq!(store.purge_retired_keys(500).await.unwrap(), 0);
    assert_eq!(store.purge_retired_keys(501).await.unwrap(), 1);
    assert_eq!(store.list_signing_keys().await.unwrap().len(), 2);
}

async fn concurrent_rotations_leave_one_active_and_one_next(store: Arc<dyn Store>) {
    store
        .insert_initial_keys(&[
            key("k1", "ES256", KeyState::Active),
            key("k2", "ES256", KeyState::Next),
        ])
        .await
        .unwrap();
    let (kx, ky) = (
        key("x", "ES256", KeyState::Next),
        key("y", "ES256", KeyState::Next),
    );
    let (x, y) = tokio::join!(
        store.rotate_signing_keys(&kx, 200, Some("k1"), &[]),
        store.rotate_signing_keys(&ky, 200, Some("k1"), &[]),
    );
    assert!(
        x.is_ok() ^ y.is_ok(),
        "exactly one rotation with the same expectation: {x:?} {y:?}"
    );
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().filter(|k| k.state == KeyState::Active).count(),
        1,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.state == KeyState::Next).count(),
        1,
        "{keys:?}"
    );
}

async fn audit_events_are_kept_newest_first(store: Arc<dyn Store>) {
    for (i, kind) in ["client.created", "keys.rotated", "user.created"]
        .iter()
        .enumerate()
    {
        let mut e = AuditEvent::new(kind, 1000 + i as i64);
        e.actor = Some("cli".into());
        e.detail = serde_json::json!({"n": i});
        store.record_audit(&e).await.unwrap();
    }
    let recent = store.recent_audit(2).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].kind, "user.created");
    assert_eq!(recent[1].detail, serde_json::json!({"n": 1}));
    store.ping().await.unwrap();
}

fn code(hash: &str, client_id: &str, user_id: Uuid) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash.into(),
        client_id: client_id.into(),
        user_id,
        session_id_hash: Some("sess".into()),
        redirect_uri: "https://app.example.com/cb".into(),
        redirect_uri_given: true,
        response_mode: "query".into(),
        scope: "openid".into(),
        nonce: Some("n".into()),
        code_challenge: Some("c".repeat(43)),
        code_challenge_method: Some("S256".into()),
        auth_time: 100,
        amr: vec!["pwd".into()],
        acr: None,
        created_at: 100,
        expires_at: 160,
        used_at: None,
        access_token_jti: None,
        resources: vec!["https://api.example.com".into()],
        dpop_jkt: Some("jkt".into()),
    }
}

fn refresh(
    id: Uuid,
    family: Uuid,
    hash: &str,
    client_id: &str,
    user_id: Uuid,
    scope: &str,
) -> RefreshToken {
    RefreshToken {
        id,
        token_hash: hash.into(),
        family_id: family,
        parent_id: None,
        generation: 0,
        client_id: client_id.into(),
        user_id,
        scope: scope.into(),
        session_id_hash: Some("sess".into()),
        auth_code_hash: Some("code-1".into()),
        user_agent: None,
        auth_time: 100,
        created_at: 100,
        expires_at: 10_000,
        family_expires_at: 20_000,
        used_at: None,
        revoked_at: None,
        access_token_jti: Some(format!("jti-{hash}")),
        successor_sealed: None,
        reuse_count: 0,
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        acr: Some("mfa".into()),
        resources: vec!["https://api.example.com".into()],
        dpop_jkt: Some("jkt".into()),
    }
}

async fn a_code_is_consumed_exactly_once(store: Arc<dyn Store>) {
    let u = user("ada@example.org");
    store.create_user(&u, &[]).await.unwrap();
    store.create_client(&client("c"), &[]).await.unwrap();
    store.create_code(&code("code-1", "c", u.id)).await.unwrap();
    assert_eq!(
        store.get_code("code-1").await.unwrap(),
        Some(code("code-1", "c", u.id))
    );
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .consume_code("code-1", 120, &format!("jti-{i}"))
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.unwrap());
    }
    assert_eq!(wins, 1, "one conditional update wins");
    let used = store.get_code("code-1").await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(120));
    assert!(used.access_token_jti.is_some());
    assert_eq!(
        store.clients_of_session("sess").await.unwrap(),
        vec!["c".to_string()]
    );
}

async fn refresh_rotation_is_atomic_and_families_revoke_together(store: Arc<dyn Store>) {
    let u = user("ada@example.org");
    store.create_user(&u, &[]).await.unwrap();
    store.create_client(&client("c"), &[]).await.unwrap();
    let family = Uuid::new_v4();
    let first = refresh(Uuid::new_v4(), family, "r0", "c", u.id, "openid");
    store.create_refresh_token(&first, &[]).await.unwrap();
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut next = refresh(
            Uuid::new_v4(),
            family,
            &format!("r1-{i}"),
            "c",
            u.id,
            "openid",
        );
        next.parent_id = Some(first.id);
        next.generation = 1;
        let id = first.id;
        racers.push(tokio::spawn(async move {
            store
                .rotate_refresh_token(id, &next, Some(b"sealed"), 200)
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one successor");
    let used = store.get_refresh_token("r0").await.unwrap().unwrap();
    assert_eq!(
        (used.used_at, used.successor_sealed.as_deref()),
        (Some(200), Some(&b"sealed"[..]))
    );
    let successor = store
        .refresh_successor(first.id)
        .await
        .unwrap()
        .expect("a successor");
    assert_eq!(successor.generation, 1);
    // The grace count is bounded.
    assert!(store.claim_grace_reuse(first.id, 1).await.unwrap());
    assert!(!store.claim_grace_reuse(first.id, 1).await.unwrap());
    // Once the window is over, the sealed successor is forgotten.
    assert_eq!(
        store.clear_sealed_successors(200, 10).await.unwrap(),
        0,
        "still in the window"
    );
    assert_eq!(store.clear_sealed_successors(201, 10).await.unwrap(), 1);
    assert_eq!(
        store
            .get_refresh_token("r0")
            .await
            .unwrap()
            .unwrap()
            .successor_sealed,
        None
    );

    // An offline family outlives its session; the other one does not.
    let offline = refresh(
        Uuid::new_v4(),
        Uuid::new_v4(),
        "off",
        "c",
        u.id,
        "openid offline_access",
    );
    store.create_refresh_token(&offline, &[]).await.unwrap();
    let jtis = store
        .revoke_session_refresh_tokens("sess", 300)
        .await
        .unwrap();
    assert_eq!(
        jtis.len(),
        2,
        "the session's family, used token included: {jtis:?}"
    );
    assert!(!jtis.contains(&"jti-off".to_string()));
    assert!(store
        .get_refresh_token("off")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    let jtis = store
        .revoke_refresh_family(offline.family_id, 300, &[])
        .await
        .unwrap();
    assert_eq!(jtis, vec!["jti-off".to_string()]);
    assert!(store
        .get_refresh_token("off")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
}

async fn a_refresh_grant_reads_token_user_and_live_session_at_once(store: Arc<dyn Store>) {
    let u = user("ada@example.org");
    store.create_user(&u, &[]).await.unwrap();
    store.create_client(&client("c"), &[]).await.unwrap();
    assert_eq!(store.get_refresh_grant("nothing").await.unwrap(), None);
    let session = BrowserSession {
        id_hash: "sh".into(),
        sid: "the-sid".into(),
        user_id: u.id,
        auth_time: 100,
        amr: vec!["pwd".into()],
        acr: None,
        user_agent: None,
        ip: None,
        created_at: 100,
        last_seen_at: 100,
        expires_at: 1000,
        revoked_at: None,
    };
    store.create_session(&session, &[]).await.unwrap();
    let mut bound = refresh(Uuid::new_v4(), Uuid::new_v4(), "bound", "c", u.id, "openid");
    bound.session_id_hash = Some("sh".into());
    store.create_refresh_token(&bound, &[]).await.unwrap();
    let unbound = refresh(
        Uuid::new_v4(),
        Uuid::new_v4(),
        "unbound",
        "c",
        u.id,
        "openid",
    );
    store.create_refresh_token(&unbound, &[]).await.unwrap();

    let grant = store.get_refresh_grant("bound").await.unwrap().unwrap();
    assert_eq!(
        grant.token,
        store.get_refresh_token("bound").await.unwrap().unwrap()
    );
    assert_eq!(grant.user, store.get_user(u.id).await.unwrap());
    assert_eq!(grant.sid.as_deref(), Some("the-sid"));
    let grant = store.get_refresh_grant("unbound").await.unwrap().unwrap();
    assert_eq!((grant.user.map(|u| u.id), grant.sid), (Some(u.id), None));
    // A revoked session names no sid.
    store.revoke_session("sh", 150, &[]).await.unwrap();
    let grant = store.get_refresh_grant("bound").await.unwrap().unwrap();
    assert_eq!(grant.sid, None);
}

async fn sessions_consents_and_the_deny_list(store: Arc<dyn Store>) {
    let u = user("ada@example.org");
    store.create_user(&u, &[]).await.unwrap();
    store.create_client(&client("c"), &[]).await.unwrap();
    let s = BrowserSession {
        id_hash: "h".into(),
        sid: "sid".into(),
        user_id: u.id,
        auth_time: 100,
        amr: vec!["pwd".into()],
        acr: None,
        user_agent: Some("ua".into()),
        ip: Some("127.0.0.1".into()),
        created_at: 100,
        last_seen_at: 100,
        expires_at: 1000,
        revoked_at: None,
    };
    store.create_session(&s, &[]).await.unwrap();
    store.touch_session("h", 150).await.unwrap();
    assert_eq!(
        store.get_session("h").await.unwrap().unwrap().last_seen_at,
        150
    );
    store.revoke_session("h", 160, &[]).await.unwrap();
    assert_eq!(
        store.get_session("h").await.unwrap(),
        None,
        "revoked sessions are gone"
    );

    assert_eq!(store.get_consent(u.id, "c").await.unwrap(), None);
    store.save_consent(u.id, "c", "openid", 100).await.unwrap();
    store
        .save_consent(u.id, "c", "email openid", 110)
        .await
        .unwrap();
    assert_eq!(
        store.get_consent(u.id, "c").await.unwrap().as_deref(),
        Some("email openid")
    );

    assert!(!store.is_access_token_denied("j1").await.unwrap());
    store.deny_access_token("j1", 500).await.unwrap();
    store.deny_access_token("j1", 500).await.unwrap();
    assert!(store.is_access_token_denied("j1").await.unwrap());

    assert!(store.remember_assertion("c", "a1", 500).await.unwrap());
    assert!(
        !store.remember_assertion("c", "a1", 500).await.unwrap(),
        "a replayed jti"
    );
    assert!(store.remember_assertion("other", "a1", 500).await.unwrap());
}

async fn the_janitor_deletes_only_what_has_expired_in_batches(store: Arc<dyn Store>) {
    let u = user("ada@example.org");
    store.create_user(&u, &[]).await.unwrap();
    store.create_client(&client("c"), &[]).await.unwrap();
    for i in 0..3 {
        store
            .create_code(&code(&format!("old-{i}"), "c", u.id))
            .await
            .unwrap();
    }
    let mut fresh = code("fresh", "c", u.id);
    fresh.expires_at = 10_000;
    store.create_code(&fresh).await.unwrap();
    let live = BrowserSession {
        id_hash: "live".into(),
        sid: "s".into(),
        user_id: u.id,
        auth_time: 100,
        amr: vec![],
        acr: None,
        user_agent: None,
        ip: None,
        created_at: 100,
        last_seen_at: 100,
        expires_at: 100_000,
        revoked_at: None,
    };
    store.create_session(&live, &[]).await.unwrap();
    let mut of_live_session = code("of-live", "c", u.id);
    of_live_session.session_id_hash = Some("live".into());
    store.create_code(&of_live_session).await.unwrap();
    store.deny_access_token("gone", 150).await.unwrap();
    store.deny_access_token("kept", 10_000).await.unwrap();
    // Codes expire at 160: a pass at 1000 with batch 2 takes two of them (and the deny entry).
    assert_eq!(store.purge_expired(1000, 2).await.unwrap(), 3);
    assert_eq!(store.purge_expired(1000, 2).await.unwrap(), 1);
    assert_eq!(store.purge_expired(1000, 2).await.unwrap(), 0);
    assert!(store.get_code("fresh").await.unwrap().is_some());
    assert!(
        store.get_code("of-live").await.unwrap().is_some(),
        "a live session's codes stay: back-channel logout needs to know its clients"
    );
    assert!(store.get_code("old-0").await.unwrap().is_none());
    assert!(store.is_access_token_denied("kept").await.unwrap());
    assert!(!store.is_access_token_denied("gone").await.unwrap());
}

async fn a_lease_has_one_holder_until_it_expires(store: Arc<dyn Store>) {
    assert!(store.try_lease("janitor", "a", 100, 60).await.unwrap());
    assert!(
        !store.try_lease("janitor", "b", 120, 60).await.unwrap(),
        "a holds it"
    );
    assert!(
        store.try_lease("janitor", "a", 130, 60).await.unwrap(),
        "the holder renews"
    );
    assert!(!store.try_lease("janitor", "b", 189, 60).await.unwrap());
    assert!(
        store.try_lease("janitor", "b", 191, 60).await.unwrap(),
        "expired: b takes over"
    );
    let (x, y) = tokio::join!(
        store.try_lease("other", "x", 0, 60),
        store.try_lease("other", "y", 0, 60)
    );
    assert!(x.unwrap() ^ y.unwrap(), "one of two racing instances");
}

async fn dynamic_registrations_rotate_once_record_use_and_go_with_the_client(
    store: Arc<dyn Store>,
) {
    use portcullis::store::{DynamicRegistration, InitialAccessToken};
    // Initial access tokens: valid until they expire, then purged in batches.
    for (hash, expires_at) in [("t1", 200), ("t2", 300), ("t3", 10_000)] {
        store
            .create_initial_access_token(&InitialAccessToken {
                token_hash: hash.into(),
                created_at: 100,
                expires_at,
            })
            .await
            .unwrap();
    }
    assert!(store.initial_access_token_valid("t1", 199).await.unwrap());
    assert!(!store.initial_access_token_valid("t1", 200).await.unwrap());
    assert!(!store.initial_access_token_valid("nope", 100).await.unwrap());
    assert_eq!(store.purge_initial_access_tokens(1000, 1).await.unwrap(), 1);
    assert_eq!(store.purge_initial_access_tokens(1000, 5).await.unwrap(), 1);
    assert!(store.initial_access_token_valid("t3", 1000).await.unwrap());

    let mut registered = client("reg");
    registered.dynamic = true;
    registered.created_at = 100;
    store.create_client(&registered, &[]).await.unwrap();
    let mut orphan = client("orphan");
    orphan.dynamic = true;
    orphan.created_at = 50;
    store.create_client(&orphan, &[]).await.unwrap();
    let mut operator = client("operator");
    operator.dynamic = false;
    operator.created_at = 10;
    store.create_client(&operator, &[]).await.unwrap();
    let row = DynamicRegistration {
        client_id: "reg".into(),
        access_token_hash: "h1".into(),
        mode: "open".into(),
        created_at: 100,
        used_at: None,
    };
    store.create_dynamic_registration(&row).await.unwrap();
    assert!(matches!(
        store.create_dynamic_registration(&row).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_dynamic_registration("reg").await.unwrap(),
        Some(row)
    );

    // The token is replaced once: of two parallel rotations from h1, exactly one wins.
    let (a, b) = tokio::join!(
        store.rotate_registration_token("reg", "h1", "h2a"),
        store.rotate_registration_token("reg", "h1", "h2b")
    );
    assert!(a.unwrap() ^ b.unwrap(), "one of two racing rotations");
    assert!(!store
        .rotate_registration_token("reg", "h1", "h3")
        .await
        .unwrap());
    let hash = store
        .get_dynamic_registration("reg")
        .await
        .unwrap()
        .unwrap()
        .access_token_hash;
    assert!(hash == "h2a" || hash == "h2b");

    // Never used, old enough: the sweep's candidates, an orphaned dynamic client included.
    assert_eq!(
        store.unused_dynamic_clients(100, 10).await.unwrap(),
        ["orphan", "reg"]
    );
    assert_eq!(
        store.unused_dynamic_clients(99, 10).await.unwrap(),
        ["orphan"]
    );
    assert_eq!(
        store.unused_dynamic_clients(100, 1).await.unwrap(),
        ["orphan"]
    );
    assert!(store.mark_registration_used("reg", 150).await.unwrap());
    assert!(
        !store.mark_registration_used("reg", 160).await.unwrap(),
        "once"
    );
    assert!(!store.mark_registration_used("orphan", 160).await.unwrap());
    assert_eq!(
        store
            .get_dynamic_registration("reg")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(150)
    );
    assert_eq!(
        store.unused_dynamic_clients(1000, 10).await.unwrap(),
        ["orphan"]
    );

    // The registration goes with its client.
    assert!(store.delete_client("reg", &[]).await.unwrap());
    assert_eq!(store.get_dynamic_registration("reg").await.unwrap(), None);
}

/// Instantiates every contract test for one adapter.
macro_rules! contract_suite {
    ($module:ident, $open:path) => {
        mod $module {
            use super::*;

            contract_suite!(@tests $open;
                clients_round_trip_and_delete,
                emails_are_unique_whatever_their_case,
                first_keys_are_inserted_once_even_when_instances_race,
                rotation_promotes_next_and_retires_active,
                concurrent_rotations_leave_one_active_and_one_next,
                audit_events_are_kept_newest_first,
                migrations_can_be_applied_again,
                a_code_is_consumed_exactly_once,
                refresh_rotation_is_atomic_and_families_revoke_together,
                a_refresh_grant_reads_token_user_and_live_session_at_once,
                sessions_consents_and_the_deny_list,
                the_janitor_deletes_only_what_has_expired_in_batches,
                a_lease_has_one_holder_until_it_expires,
                mailed_tokens_are_single_use_and_a_reset_is_one_transaction,
                users_are_searched_updated_and_soft_deleted,
                audit_queries_filter_and_page,
                second_factors_steps_codes_and_challenges_are_spent_once,
                parallel_removals_keep_the_last_required_factor,
                parallel_first_enrollments_keep_one_set_of_codes,
                clients_are_searched_by_name_prefix_or_id_and_updated,
                users_are_found_by_email_or_name_prefix_in_any_order,
                a_users_sessions_and_consents_are_listed_and_revoked,
                an_email_change_is_one_transaction_and_needs_a_free_address,
                pushed_requests_are_their_clients_opened_once_and_spent_once,
                dynamic_registrations_rotate_once_record_use_and_go_with_the_client,
            );
        }
    };
    (@tests $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((url, _dir)) = $open().await else { return };
                let store = store::open(&url, 5).await.expect("open store");
                super::$name(store).await;
            }
        )*
    };
}

fn account_token(value: &str, purpose: TokenPurpose, user: &User, expires_at: i64) -> AccountToken {
    AccountToken {
        token_hash: format!("hash-{value}"),
        purpose,
        user_id: user.id,
        email: user.email.clone(),
        created_at: 100,
        expires_at,
        used_at: None,
    }
}

async fn mailed_tokens_are_single_use_and_a_reset_is_one_transaction(store: Arc<dyn Store>) {
    let ada = user("ada@example.com");
    store.create_user(&ada, &[]).await.unwrap();
    store.create_client(&client("app"), &[]).await.unwrap();
    store
        .create_refresh_token(
            &refresh(
                Uuid::new_v4(),
                Uuid::new_v4(),
                "r1",
                "app",
                ada.id,
                "openid",
            ),
            &[],
        )
        .await
        .unwrap();
    let reset = account_token("reset", TokenPurpose::PasswordReset, &ada, 1000);
    let other_reset = account_token("reset2", TokenPurpose::PasswordReset, &ada, 1000);
    let verify = account_token("verify", TokenPurpose::VerifyEmail, &ada, 1000);
    for t in [&reset, &other_reset, &verify] {
        store.create_account_token(t).await.unwrap();
    }
    // A token answers only for its purpose and while it is live.
    assert!(store
        .get_account_token("hash-reset", TokenPurpose::VerifyEmail, 200)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .get_account_token("hash-reset", TokenPurpose::PasswordReset, 200)
            .await
            .unwrap(),
        Some(reset.clone())
    );
    assert!(store
        .get_account_token("hash-reset", TokenPurpose::PasswordReset, 1000)
        .await
        .unwrap()
        .is_none());
    // Two resets race: one wins, the other writes nothing.
    let (a, b) = tokio::join!(
        store.reset_password("hash-reset", "new-hash-a", 300, &[]),
        store.reset_password("hash-reset", "new-hash-b", 300, &[])
    );
    let winners: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1);
    assert_eq!(winners[0].0, ada.id);
    assert_eq!(winners[0].1, vec!["jti-r1".to_string()]);
    let after = store.get_user(ada.id).await.unwrap().unwrap();
    assert!(after
        .password_hash
        .as_deref()
        .unwrap()
        .starts_with("new-hash-"));
    assert!(store
        .get_refresh_token("r1")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    // The user's other reset link died with it; the verification link did not.
    assert!(store
        .reset_password("hash-reset2", "x", 300, &[])
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_account_token("hash-verify", TokenPurpose::VerifyEmail, 300)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.verify_email("hash-verify", 300, &[]).await.unwrap(),
        Some(ada.id)
    );
    assert_eq!(
        store.verify_email("hash-verify", 300, &[]).await.unwrap(),
        None
    );
    assert!(
        store
            .get_user(ada.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    // Expired tokens do nothing; the janitor removes spent and expired ones.
    let late = account_token("late", TokenPurpose::VerifyEmail, &ada, 400);
    store.create_account_token(&late).await.unwrap();
    assert_eq!(
        store.verify_email("hash-late", 400, &[]).await.unwrap(),
        None
    );
    assert!(store.purge_expired(500, 100).await.unwrap() >= 4);
    assert!(store
        .reset_password("hash-reset", "y", 300, &[])
        .await
        .unwrap()
        .is_none());
}

async fn an_email_change_is_one_transaction_and_needs_a_free_address(store: Arc<dyn Store>) {
    let ada = user("ada@example.com");
    let bob = user("bob@example.com");
    store.create_user(&ada, &[]).await.unwrap();
    store.create_user(&bob, &[]).await.unwrap();
    let mut change = account_token("change", TokenPurpose::EmailChange, &ada, 1000);
    change.email = "Ada@New.example".into();
    let reset = account_token("reset", TokenPurpose::PasswordReset, &ada, 1000);
    let mut steal = account_token("steal", TokenPurpose::EmailChange, &ada, 1000);
    steal.email = "BOB@example.com".into();
    let mut late = account_token("late", TokenPurpose::EmailChange, &ada, 150);
    late.email = "ada@late.example".into();
    for t in [&change, &reset, &steal, &late] {
        store.create_account_token(t).await.unwrap();
    }
    // Another account's address (whatever its case) is never taken over.
    assert_eq!(
        store.change_email("hash-steal", 200, &[]).await.unwrap(),
        None
    );
    assert_eq!(
        store.change_email("hash-late", 200, &[]).await.unwrap(),
        None
    );
    // Only an email-change token changes the address.
    assert_eq!(
        store.change_email("hash-reset", 200, &[]).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_user(ada.id).await.unwrap().unwrap().email,
        "ada@example.com"
    );

    let changed = store.change_email("hash-change", 200, &[]).await.unwrap();
    assert_eq!(
        changed,
        Some(EmailChange {
            user_id: ada.id,
            from: "ada@example.com".into(),
            to: "Ada@New.example".into(),
        })
    );
    let after = store.get_user(ada.id).await.unwrap().unwrap();
    assert_eq!(after.email, "Ada@New.example");
    assert!(after.email_verified);
    assert_eq!(
        store
            .find_user_by_email("ada@new.example")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(ada.id)
    );
    assert!(store
        .find_user_by_email("ada@example.com")
        .await
        .unwrap()
        .is_none());
    // Once; and the links mailed to the old address died with the change.
    assert_eq!(
        store.change_email("hash-change", 200, &[]).await.unwrap(),
        None
    );
    assert!(store
        .get_account_token("hash-reset", TokenPurpose::PasswordReset, 200)
        .await
        .unwrap()
        .is_none());
}

async fn users_are_searched_updated_and_soft_deleted(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (i, email) in ["ada@example.com", "Bob@Example.org", "cy_d@example.com"]
        .iter()
        .enumerate()
    {
        let mut u = user(email);
        u.created_at = 100 + i as i64;
        if i == 1 {
            u.roles = vec!["admin".into()];
        }
        store.create_user(&u, &[]).await.unwrap();
        ids.push(u);
    }
    let page = |email: Option<&str>, role: Option<&str>, offset, limit| UserQuery {
        email_contains: email.map(str::to_string),
        role: role.map(str::to_string),
        offset,
        limit,
        ..UserQuery::default()
    };
    let (all, total) = store.search_users(&page(None, None, 0, 2)).await.unwrap();
    assert_eq!((all.len(), total), (2, 3));
    assert_eq!(all[0].email, "ada@example.com");
    let (rest, _) = store.search_users(&page(None, None, 2, 2)).await.unwrap();
    assert_eq!(rest[0].email, "cy_d@example.com");
    let (found, total) = store
        .search_users(&page(Some("EXAMPLE.ORG"), None, 0, 10))
        .await
        .unwrap();
    assert_eq!((found[0].email.as_str(), total), ("Bob@Example.org", 1));
    // `_` and `%` are matched literally.
    let (found, total) = store
        .search_users(&page(Some("y_"), None, 0, 10))
        .await
        .unwrap();
    assert_eq!((found.len(), total), (1, 1));
    let (_, total) = store
        .search_users(&page(Some("%"), None, 0, 10))
        .await
        .unwrap();
    assert_eq!(total, 0);
    let (admins, _) = store
        .search_users(&page(None, Some("admin"), 0, 10))
        .await
        .unwrap();
    assert_eq!(admins.len(), 1);
    let (experts, _) = store
        .search_users(&page(None, Some("exper"), 0, 10))
        .await
        .unwrap();
    assert!(experts.is_empty(), "roles match whole names only");

    let mut ada = ids[0].clone();
    ada.name = Some("Ada L.".into());
    ada.roles = vec!["expert".into()];
    ada.updated_at = 200;
    assert!(store.update_user(&ada, &[]).await.unwrap());
    assert_eq!(store.get_user(ada.id).await.unwrap().unwrap(), ada);
    assert!(store
        .rehash_password(ada.id, "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA", "h2")
        .await
        .unwrap());
    assert!(!store.rehash_password(ada.id, "stale", "h3").await.unwrap());

    store.create_client(&client("app"), &[]).await.unwrap();
    store
        .create_refresh_token(
            &refresh(
                Uuid::new_v4(),
                Uuid::new_v4(),
                "r1",
                "app",
                ada.id,
                "openid",
            ),
            &[],
        )
        .await
        .unwrap();
    let jtis = store.soft_delete_user(ada.id, 300, &[]).await.unwrap();
    assert_eq!(jtis, Some(vec!["jti-r1".to_string()]));
    assert_eq!(
        store.soft_delete_user(ada.id, 301, &[]).await.unwrap(),
        None
    );
    let gone = store.get_user(ada.id).await.unwrap().unwrap();
    assert_eq!(gone.deleted_at, Some(300));
    assert!(
        !store.update_user(&ada, &[]).await.unwrap(),
        "a deleted user cannot be updated"
    );
    let (_, total) = store.search_users(&page(None, None, 0, 10)).await.unwrap();
    assert_eq!(total, 2);
    // The address stays taken.
    assert!(matches!(
        store.create_user(&user("ADA@example.com"), &[]).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn audit_queries_filter_and_page(store: Arc<dyn Store>) {
    for (i, (kind, subject)) in [
        ("login.failed", None),
        ("login.succeeded", Some("u1")),
        ("user.deleted", Some("u2")),
        ("login.succeeded", Some("u2")),
    ]
    .iter()
    .enumerate()
    {
        let mut e = AuditEvent::new(kind, 100 + i as i64);
        e.subject = subject.map(str::to_string);
        e.user_agent = Some("curl/8".into());
        e.trace_id = Some(format!("trace-{i}"));
        store.record_audit(&e).await.unwrap();
    }
    let q = |user: Option<&str>, kind: Option<&str>, since, until| AuditQuery {
        user: user.map(str::to_string),
        kind: kind.map(str::to_string),
        since,
        until,
        offset: 0,
        limit: 10,
    };
    let all = store.query_audit(&q(None, None, None, None)).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].trace_id.as_deref(), Some("trace-3"));
    assert_eq!(all[0].user_agent.as_deref(), Some("curl/8"));
    assert_eq!(
        store
            .query_audit(&q(Some("u2"), None, None, None))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .query_audit(&q(None, Some("login.succeeded"), None, None))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .query_audit(&q(None, None, Some(101), Some(102)))
            .await
            .unwrap()
            .len(),
        2
    );
    let second_page = AuditQuery {
        offset: 3,
        ..q(None, None, None, None)
    };
    let last = store.query_audit(&second_page).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].kind, "login.failed");
}

fn totp_factor(user_id: Uuid, confirmed: bool) -> MfaFactor {
    MfaFactor {
        id: Uuid::now_v7(),
        user_id,
        kind: FactorKind::Totp,
        name: "Authenticator app".into(),
        secret_sealed: Some(vec![1, 2, 3]),
        last_step: None,
        credential_id: None,
        credential: None,
        confirmed_at: confirmed.then_some(10),
        created_at: 10,
        last_used_at: None,
    }
}

async fn second_factors_steps_codes_and_challenges_are_spent_once(store: Arc<dyn Store>) {
    let u = user("mfa@example.com");
    store.create_user(&u, &[]).await.unwrap();

    // One unconfirmed enrollment at a time; confirming it stores the first recovery codes.
    let first = totp_factor(u.id, false);
    store.create_factor(&first).await.unwrap();
    let second = totp_factor(u.id, false);
    store.create_factor(&second).await.unwrap();
    let all = store.list_factors(u.id).await.unwrap();
    assert_eq!(all.len(), 1, "the earlier unconfirmed enrollment went");
    assert_eq!(all[0].id, second.id);
    let hashes: Vec<String> = (0..3).map(|i| format!("hash-{i}")).collect();
    assert_eq!(
        store
            .confirm_factor(second.id, u.id, 100, 20, &hashes, &[])
            .await
            .unwrap(),
        Some(true),
        "the first factor keeps its recovery codes"
    );
    assert_eq!(
        store
            .confirm_factor(second.id, u.id, 101, 21, &hashes, &[])
            .await
            .unwrap(),
        None,
        "confirmed once"
    );
    assert_eq!(store.count_recovery_codes(u.id).await.unwrap(), 3);
    // A second factor, confirmed later, leaves the codes as they are.
    let third = totp_factor(u.id, false);
    store.create_factor(&third).await.unwrap();
    let other: Vec<String> = vec!["other".into()];
    assert_eq!(
        store
            .confirm_factor(third.id, u.id, 100, 22, &other, &[])
            .await
            .unwrap(),
        Some(false)
    );
    assert!(!store.use_recovery_code(u.id, "other", 23).await.unwrap());
    assert!(store
        .delete_factor(u.id, third.id, false, &[])
        .await
        .unwrap());

    // A step is accepted once, and only a later one after it; in parallel, one wins.
    assert!(
        !store.use_totp_step(second.id, 100, 30).await.unwrap(),
        "the confirming step is spent"
    );
    let (a, b) = tokio::join!(
        store.use_totp_step(second.id, 101, 30),
        store.use_totp_step(second.id, 101, 30)
    );
    assert!(
        a.unwrap() ^ b.unwrap(),
        "exactly one of two parallel uses wins"
    );
    assert!(!store.use_totp_step(second.id, 100, 31).await.unwrap());
    assert!(store.use_totp_step(second.id, 102, 31).await.unwrap());
    let f = store.get_factor(second.id).await.unwrap().unwrap();
    assert_eq!((f.last_step, f.last_used_at), (Some(102), Some(31)));

    // Recovery codes: each once, in parallel too; a new set replaces the old.
    let (a, b) = tokio::join!(
        store.use_recovery_code(u.id, "hash-0", 40),
        store.use_recovery_code(u.id, "hash-0", 40)
    );
    assert!(a.unwrap() ^ b.unwrap());
    assert_eq!(store.count_recovery_codes(u.id).await.unwrap(), 2);
    store
        .replace_recovery_codes(u.id, &["new".to_string()], 41)
        .await
        .unwrap();
    assert!(!store.use_recovery_code(u.id, "hash-1", 42).await.unwrap());
    assert!(store.use_recovery_code(u.id, "new", 42).await.unwrap());

    // Passkeys are found by credential id, which is unique.
    let mut key = totp_factor(u.id, true);
    key.kind = FactorKind::Passkey;
    key.secret_sealed = None;
    key.credential_id = Some("cred-1".into());
    key.credential = Some("{}".into());
    store.create_factor(&key).await.unwrap();
    let mut twin = key.clone();
    twin.id = Uuid::now_v7();
    assert!(matches!(
        store.create_factor(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.find_passkey("cred-1").await.unwrap().unwrap().id,
        key.id
    );
    store
        .touch_passkey(key.id, Some("{\"n\":1}"), 50)
        .await
        .unwrap();
    let k = store.get_factor(key.id).await.unwrap().unwrap();
    assert_eq!(
        (k.credential.as_deref(), k.last_used_at),
        (Some("{\"n\":1}"), Some(50))
    );

    // Challenges: unexpired and of the right purpose; spent by exactly one of two.
    let ch = MfaChallenge {
        id_hash: "ch".into(),
        purpose: "sign_in".into(),
        user_id: Some(u.id),
        data: "{}".into(),
        created_at: 60,
        expires_at: 120,
        used_at: None,
    };
    store.create_challenge(&ch).await.unwrap();
    assert!(store
        .get_challenge("ch", "other", 61)
        .await
        .unwrap()
        .is_none());
    assert!(
        store
            .get_challenge("ch", "sign_in", 120)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert_eq!(
        store.get_challenge("ch", "sign_in", 61).await.unwrap(),
        Some(ch.clone())
    );
    let (a, b) = tokio::join!(
        store.consume_challenge("ch", "sign_in", 62),
        store.consume_challenge("ch", "sign_in", 62)
    );
    assert!(a.unwrap().is_some() ^ b.unwrap().is_some());
    assert!(store
        .get_challenge("ch", "sign_in", 63)
        .await
        .unwrap()
        .is_none());

    // Removing one factor, then an admin's reset of everything.
    assert!(store.delete_factor(u.id, key.id, false, &[]).await.unwrap());
    assert!(
        !store
            .delete_factor(Uuid::now_v7(), second.id, false, &[])
            .await
            .unwrap(),
        "not another user's"
    );
    assert_eq!(store.delete_all_factors(u.id, &[]).await.unwrap(), 1);
    assert_eq!(store.count_recovery_codes(u.id).await.unwrap(), 0);
    assert!(store.list_factors(u.id).await.unwrap().is_empty());
}

async fn parallel_first_enrollments_keep_one_set_of_codes(store: Arc<dyn Store>) {
    let u = user("first@example.com");
    store.create_user(&u, &[]).await.unwrap();
    let mut a = totp_factor(u.id, false);
    a.kind = FactorKind::Passkey;
    a.secret_sealed = None;
    a.credential_id = Some("first-a".into());
    let mut b = a.clone();
    b.id = Uuid::now_v7();
    b.credential_id = Some("first-b".into());
    store.create_factor(&a).await.unwrap();
    store.create_factor(&b).await.unwrap();
    let (codes_a, codes_b) = (vec!["code-a".to_string()], vec!["code-b".to_string()]);
    let (ra, rb) = tokio::join!(
        store.confirm_factor(a.id, u.id, 0, 30, &codes_a, &[]),
        store.confirm_factor(b.id, u.id, 0, 30, &codes_b, &[])
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        [ra, rb].iter().filter(|r| **r == Some(true)).count(),
        1,
        "exactly one is the first factor: {ra:?} {rb:?}"
    );
    let shown = if ra == Some(true) { "code-a" } else { "code-b" };
    assert!(
        store.use_recovery_code(u.id, shown, 31).await.unwrap(),
        "the shown set works"
    );
}

async fn parallel_removals_keep_the_last_required_factor(store: Arc<dyn Store>) {
    let u = user("keep@example.com");
    store.create_user(&u, &[]).await.unwrap();
    let (a, b) = (totp_factor(u.id, true), totp_factor(u.id, true));
    store.create_factor(&a).await.unwrap();
    store.create_factor(&b).await.unwrap();
    let (ra, rb) = tokio::join!(
        store.delete_factor(u.id, a.id, true, &[]),
        store.delete_factor(u.id, b.id, true, &[])
    );
    let removed = [&ra, &rb].iter().filter(|r| matches!(r, Ok(true))).count();
    let refused = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
        .count();
    assert_eq!((removed, refused), (1, 1), "{ra:?} {rb:?}");
    assert_eq!(store.list_factors(u.id).await.unwrap().len(), 1);
    // Without the rule the last one goes too.
    let last = store.list_factors(u.id).await.unwrap()[0].id;
    assert!(matches!(
        store.delete_factor(u.id, last, true, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.delete_factor(u.id, last, false, &[]).await.unwrap());
}

async fn clients_are_searched_by_name_prefix_or_id_and_updated(store: Arc<dyn Store>) {
    for (id, name, at) in [
        ("a1", "Shop", 10),
        ("b2", "shopfront", 20),
        ("c3", "Blog", 30),
    ] {
        let mut c = client(id);
        c.name = name.into();
        c.created_at = at;
        store.create_client(&c, &[]).await.unwrap();
    }
    let query = |search: Option<&str>| ClientQuery {
        search: search.map(str::to_string),
        limit: 10,
        ..ClientQuery::default()
    };
    let ids = |list: &[Client]| list.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let (found, total) = store.search_clients(&query(Some("SHOP"))).await.unwrap();
    assert_eq!((ids(&found), total), (vec!["a1".into(), "b2".into()], 2));
    let (found, _) = store.search_clients(&query(Some("c3"))).await.unwrap();
    assert_eq!(ids(&found), ["c3"], "an exact client id matches too");
    let (found, _) = store.search_clients(&query(Some("%"))).await.unwrap();
    assert!(found.is_empty(), "no wildcards");
    let (found, total) = store
        .search_clients(&ClientQuery {
            sort: ClientSort::Name,
            descending: true,
            limit: 2,
            offset: 1,
            ..ClientQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((ids(&found), total), (vec!["a1".into(), "c3".into()], 3));

    let mut c = store.get_client("b2").await.unwrap().unwrap();
    c.name = "Storefront".into();
    c.redirect_uris = vec!["https://store.example.com/cb".into()];
    c.updated_at = 50;
    let kept_secret = c.secret_hash.clone();
    c.secret_hash = None;
    c.disabled = true;
    assert!(store.update_client(&c, false, &[]).await.unwrap());
    let stored = store.get_client("b2").await.unwrap().unwrap();
    assert_eq!(
        stored.secret_hash, kept_secret,
        "the secret only with write_secret"
    );
    assert!(!stored.disabled, "switching off is its own statement");
    assert!(store
        .set_client_disabled("b2", true, 55, &[])
        .await
        .unwrap());
    c.secret_hash = kept_secret;
    c.updated_at = 55;
    assert_eq!(store.get_client("b2").await.unwrap().unwrap(), c);
    let (found, _) = store.search_clients(&query(Some("store"))).await.unwrap();
    assert_eq!(ids(&found), ["b2"], "the name index follows the update");
    let (found, _) = store
        .search_clients(&ClientQuery {
            disabled: Some(true),
            limit: 10,
            ..ClientQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&found), ["b2"]);
    let mut gone = c.clone();
    gone.id = "nope".into();
    assert!(!store.update_client(&gone, true, &[]).await.unwrap());
    assert!(!store
        .set_client_disabled("nope", true, 60, &[])
        .await
        .unwrap());

    assert!(store
        .set_client_secret("a1", &"cd".repeat(32), 60, &[])
        .await
        .unwrap());
    let a1 = store.get_client("a1").await.unwrap().unwrap();
    assert_eq!(a1.secret_hash, Some("cd".repeat(32)));
    let mut public = client("p");
    public.secret_hash = None;
    public.token_endpoint_auth_method = "none".into();
    store.create_client(&public, &[]).await.unwrap();
    assert!(
        !store
            .set_client_secret("p", &"ef".repeat(32), 60, &[])
            .await
            .unwrap(),
        "a client without a secret does not get one this way"
    );
}

async fn users_are_found_by_email_or_name_prefix_in_any_order(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for (i, (email, name)) in [
        ("zed@example.com", Some("Ada Lovelace")),
        ("adam@example.com", Some("Zoë")),
        ("bob@example.com", None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut u = user(email);
        u.name = name.map(str::to_string);
        u.created_at = 100 + i as i64;
        store.create_user(&u, &[]).await.unwrap();
        made.push(u);
    }
    let emails = |list: &[User]| list.iter().map(|u| u.email.clone()).collect::<Vec<_>>();
    let search = |text: &str, sort: UserSort, descending: bool| UserQuery {
        search: Some(text.into()),
        sort,
        descending,
        limit: 10,
        ..UserQuery::default()
    };
    let (found, total) = store
        .search_users(&search("AD", UserSort::Email, false))
        .await
        .unwrap();
    assert_eq!(
        (emails(&found), total),
        (vec!["adam@example.com".into(), "zed@example.com".into()], 2),
        "the start of the email or of the name, any case"
    );
    let (found, _) = store
        .search_users(&search("zo", UserSort::Created, false))
        .await
        .unwrap();
    assert_eq!(
        emails(&found),
        ["adam@example.com"],
        "non-ASCII names too (Zoë)"
    );
    let (found, _) = store
        .search_users(&search("example", UserSort::Created, false))
        .await
        .unwrap();
    assert!(found.is_empty(), "a prefix, not a substring");
    let (found, _) = store
        .search_users(&UserQuery {
            sort: UserSort::Created,
            descending: true,
            limit: 10,
            ..UserQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        emails(&found),
        ["bob@example.com", "adam@example.com", "zed@example.com"]
    );
    let mut renamed = made[2].clone();
    renamed.name = Some("Robert".into());
    assert!(store.update_user(&renamed, &[]).await.unwrap());
    let (found, _) = store
        .search_users(&search("rob", UserSort::Name, false))
        .await
        .unwrap();
    assert_eq!(
        emails(&found),
        ["bob@example.com"],
        "the name index follows updates"
    );
}

async fn a_users_sessions_and_consents_are_listed_and_revoked(store: Arc<dyn Store>) {
    let u = user("ada@example.org");
    let other = user("bob@example.org");
    store.create_user(&u, &[]).await.unwrap();
    store.create_user(&other, &[]).await.unwrap();
    store.create_client(&client("c"), &[]).await.unwrap();
    store.create_client(&client("d"), &[]).await.unwrap();
    let session = |hash: &str, sid: &str, user_id: Uuid, seen: i64, expires: i64| BrowserSession {
        id_hash: hash.into(),
        sid: sid.into(),
        user_id,
        auth_time: 100,
        amr: vec!["pwd".into()],
        acr: Some("1fa".into()),
        user_agent: None,
        ip: None,
        created_at: 100,
        last_seen_at: seen,
        expires_at: expires,
        revoked_at: None,
    };
    store
        .create_session(&session("h1", "s1", u.id, 150, 1000), &[])
        .await
        .unwrap();
    store
        .create_session(&session("h2", "s2", u.id, 180, 1000), &[])
        .await
        .unwrap();
    store
        .create_session(&session("h3", "s3", u.id, 190, 200), &[])
        .await
        .unwrap();
    store
        .create_session(&session("h4", "s4", other.id, 190, 1000), &[])
        .await
        .unwrap();
    let live = store.user_sessions(u.id, 300, 0).await.unwrap();
    let sids: Vec<&str> = live.iter().map(|s| s.sid.as_str()).collect();
    assert_eq!(sids, ["s2", "s1"], "live ones, most recently seen first");
    let live = store.user_sessions(u.id, 300, 160).await.unwrap();
    assert_eq!(live.len(), 1, "idle ones are over");
    assert!(store.revoke_session("h2", 305, &[]).await.unwrap());
    assert!(
        !store.revoke_session("h2", 306, &[]).await.unwrap(),
        "revoked once"
    );
    assert!(!store.revoke_session("nope", 306, &[]).await.unwrap());
    assert_eq!(
        store.session_by_sid("s1").await.unwrap().unwrap().id_hash,
        "h1"
    );
    store.revoke_session("h1", 310, &[]).await.unwrap();
    assert_eq!(store.session_by_sid("s1").await.unwrap(), None);
    assert_eq!(store.session_by_sid("").await.unwrap(), None);

    store.save_consent(u.id, "c", "openid", 100).await.unwrap();
    store
        .save_consent(u.id, "d", "openid email", 120)
        .await
        .unwrap();
    store
        .save_consent(other.id, "c", "openid", 100)
        .await
        .unwrap();
    let mut token = refresh(Uuid::new_v4(), Uuid::new_v4(), "r1", "c", u.id, "openid");
    token.created_at = 130;
    token.session_id_hash = None;
    token.auth_code_hash = None;
    store.create_refresh_token(&token, &[]).await.unwrap();
    let mut other_client = refresh(Uuid::new_v4(), Uuid::new_v4(), "r2", "d", u.id, "openid");
    other_client.created_at = 140;
    other_client.session_id_hash = None;
    other_client.auth_code_hash = None;
    store
        .create_refresh_token(&other_client, &[])
        .await
        .unwrap();
    let consents = store.user_consents(u.id).await.unwrap();
    let clients: Vec<&str> = consents.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(clients, ["d", "c"], "most recently changed first");
    assert_eq!(consents[1].client_name, "Demo");
    assert_eq!(consents[1].last_used_at, Some(130));
    assert_ne!(consents[0].id, consents[1].id);
    let kept_id = store.user_consents(u.id).await.unwrap()[1].id;
    store
        .save_consent(u.id, "c", "openid profile", 200)
        .await
        .unwrap();
    let again = store.get_consent_record(kept_id).await.unwrap().unwrap();
    assert_eq!(
        (again.scope.as_str(), again.id),
        ("openid profile", kept_id),
        "a consent keeps its id"
    );

    assert_eq!(
        store
            .revoke_consent(kept_id, Some(other.id), 300)
            .await
            .unwrap(),
        None,
        "not someone else's"
    );
    let gone = store
        .revoke_consent(kept_id, Some(u.id), 300)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((gone.user_id, gone.client_id.as_str()), (u.id, "c"));
    assert_eq!(gone.jtis, ["jti-r1"]);
    assert_eq!(store.get_consent(u.id, "c").await.unwrap(), None);
    assert!(store
        .get_refresh_token(&token.token_hash)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(
        store
            .get_refresh_token(&other_client.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none(),
        "only that client's tokens"
    );
    assert_eq!(
        store.get_consent(other.id, "c").await.unwrap().as_deref(),
        Some("openid")
    );
    assert_eq!(
        store.revoke_consent(kept_id, None, 300).await.unwrap(),
        None
    );

    let jtis = store.revoke_client_grants("d", 320).await.unwrap();
    assert_eq!(jtis, ["jti-r2"]);
    let revoked = store
        .get_refresh_token(&other_client.token_hash)
        .await
        .unwrap();
    assert!(revoked.unwrap().revoked_at.is_some());

    let counts = store.admin_counts(300, 0).await.unwrap();
    assert_eq!(
        (counts.users, counts.clients, counts.live_sessions),
        (2, 2, 1)
    );
    let mut e = AuditEvent::new("login.succeeded", 250);
    store.record_audit(&e).await.unwrap();
    e.id = Uuid::now_v7();
    store.record_audit(&e).await.unwrap();
    let old = AuditEvent::new("login.succeeded", 10);
    store.record_audit(&old).await.unwrap();
    store
        .record_audit(&AuditEvent::new("login.failed", 260))
        .await
        .unwrap();
    let mut counted = store
        .count_audit(&["login.succeeded", "login.failed", "nothing"], 100)
        .await
        .unwrap();
    counted.sort();
    assert_eq!(
        counted,
        [
            ("login.failed".to_string(), 1),
            ("login.succeeded".to_string(), 2)
        ]
    );
}

fn pushed(hash: &str, client_id: &str, expires_at: i64) -> store::PushedRequest {
    store::PushedRequest {
        uri_hash: hash.into(),
        client_id: client_id.into(),
        params: format!("client_id={client_id}&scope=openid"),
        created_at: 100,
        expires_at,
        opened_at: None,
        consumed_at: None,
    }
}

async fn pushed_requests_are_their_clients_opened_once_and_spent_once(store: Arc<dyn Store>) {
    store.create_client(&client("c"), &[]).await.unwrap();
    store.create_client(&client("d"), &[]).await.unwrap();
    let request = pushed("h1", "c", 160);
    store.create_pushed_request(&request).await.unwrap();
    assert!(
        store.create_pushed_request(&request).await.is_err(),
        "one row per request URI"
    );
    assert_eq!(store.pushed_request("h1", "d").await.unwrap(), None);
    assert_eq!(
        store.pushed_request("h1", "c").await.unwrap(),
        Some(request)
    );

    // The first visit moves the expiry to the end of the sign-in, once.
    assert!(!store
        .open_pushed_request("h1", "d", 120, 700)
        .await
        .unwrap());
    assert!(store
        .open_pushed_request("h1", "c", 120, 700)
        .await
        .unwrap());
    assert!(!store
        .open_pushed_request("h1", "c", 130, 900)
        .await
        .unwrap());
    let opened = store.pushed_request("h1", "c").await.unwrap().unwrap();
    assert_eq!((opened.opened_at, opened.expires_at), (Some(120), 700));

    // Spent once, whoever races.
    assert!(!store.consume_pushed_request("h1", "d", 200).await.unwrap());
    let (a, b) = tokio::join!(
        store.consume_pushed_request("h1", "c", 200),
        store.consume_pushed_request("h1", "c", 200)
    );
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|w| **w).count(), 1);
    assert!(!store.consume_pushed_request("h1", "c", 201).await.unwrap());
    assert!(!store
        .open_pushed_request("h1", "c", 201, 900)
        .await
        .unwrap());
    let spent = store.pushed_request("h1", "c").await.unwrap().unwrap();
    assert_eq!(spent.consumed_at, Some(200));

    // Expired: neither opened nor spent; the janitor removes it after its expiry.
    store
        .create_pushed_request(&pushed("h2", "c", 160))
        .await
        .unwrap();
    assert!(!store
        .open_pushed_request("h2", "c", 160, 700)
        .await
        .unwrap());
    assert!(!store.consume_pushed_request("h2", "c", 160).await.unwrap());
    store.purge_expired(161, 100).await.unwrap();
    assert_eq!(store.pushed_request("h2", "c").await.unwrap(), None);
    assert!(
        store.pushed_request("h1", "c").await.unwrap().is_some(),
        "lives to 700"
    );
    store.purge_expired(701, 100).await.unwrap();
    assert_eq!(store.pushed_request("h1", "c").await.unwrap(), None);

    // A deleted client takes its pushed requests along.
    store
        .create_pushed_request(&pushed("h3", "d", 900))
        .await
        .unwrap();
    store.delete_client("d", &[]).await.unwrap();
    assert_eq!(store.pushed_request("h3", "d").await.unwrap(), None);
}

async fn migrations_can_be_applied_again(store: Arc<dyn Store>) {
    // `open` already migrated; a second open on the same database must be a no-op.
    store.create_client(&client("c"), &[]).await.unwrap();
    drop(store);
}

async fn sqlite_db() -> Option<(String, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    // Migrate once here so the test's own open exercises re-application.
    store::open(&url, 1).await.expect("first open");
    Some((url, dir))
}

async fn postgres_db() -> Option<(String, tempfile::TempDir)> {
    let Some(base) = pg_base_url() else {
        eprintln!("skipped: set PORTCULLIS_TEST_DATABASE_URL to run the PostgreSQL contract suite");
        return None;
    };
    let url = fresh_pg_database(&base).await;
    store::open(&url, 1).await.expect("first open");
    Some((url, tempfile::tempdir().unwrap()))
}

contract_suite!(sqlite, sqlite_db);
contract_suite!(postgres, postgres_db);

/// The prefix searches of the user and client lists, as `search_users`/`search_clients` shape
/// them: with the planner told to avoid full scans, both databases answer from an index.
const USER_PREFIX: &str = "SELECT id FROM users WHERE deleted_at IS NULL AND \
    ((email_lower{C} >= 'ad' AND email_lower{C} < 'ad\u{10FFFF}') OR \
     (name_lower{C} >= 'ad' AND name_lower{C} < 'ad\u{10FFFF}'))";
const CLIENT_PREFIX: &str = "SELECT id FROM clients WHERE \
    (name_lower{C} >= 'sh' AND name_lower{C} < 'sh\u{10FFFF}') OR id = 'sh'";

#[tokio::test]
async fn prefix_search_is_an_index_range_scan_on_sqlite() {
    let (url, _dir) = sqlite_db().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for (sql, wanted) in [
        (
            USER_PREFIX,
            ["INDEX sqlite_autoindex_users_", "users_name_lower"].as_slice(),
        ),
        (
            CLIENT_PREFIX,
            ["clients_name_lower", "INDEX sqlite_autoindex_clients_"].as_slice(),
        ),
    ] {
        let sql = format!("EXPLAIN QUERY PLAN {}", sql.replace("{C}", ""));
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
        let text: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
        for index in wanted {
            assert!(
                text.iter().any(|line| line.contains(index)),
                "{index} unused: {text:?}"
            );
        }
        assert!(!text.iter().any(|l| l.starts_with("SCAN")), "{text:?}");
    }
}

#[tokio::test]
async fn prefix_search_is_an_index_range_scan_on_postgres() {
    let Some((url, _dir)) = postgres_db().await else {
        return;
    };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    for (sql, wanted) in [
        (
            USER_PREFIX,
            ["users_email_lower_c", "users_name_lower"].as_slice(),
        ),
        (
            CLIENT_PREFIX,
            ["clients_name_lower", "clients_pkey"].as_slice(),
        ),
    ] {
        let sql = format!("EXPLAIN {}", sql.replace("{C}", " COLLATE \"C\""));
        let plan: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut conn).await.unwrap();
        for index in wanted {
            assert!(
                plan.iter().any(|line| line.contains(index)),
                "{index} unused: {plan:#?}"
            );
        }
        assert!(!plan.iter().any(|l| l.contains("Seq Scan")), "{plan:#?}");
    }
}

// The device authorization grant (RFC 8628): each step of a grant is one conditional update.

fn device_grant(device_code_hash: &str, user_code_hash: &str) -> store::DeviceGrant {
    store::DeviceGrant::pending(
        device_code_hash.into(),
        user_code_hash.into(),
        "tv",
        "openid offline_access",
        5,
        1000,
        1600,
    )
}

async fn a_device_grant_is_approved_and_redeemed_exactly_once(store: Arc<dyn Store>) {
    store.create_client(&client("tv"), &[]).await.unwrap();
    let ada = user("ada@example.org");
    store.create_user(&ada, &[]).await.unwrap();
    let grant = device_grant("dev-1", "uc-1");
    store.create_device_grant(&grant).await.unwrap();
    let taken = store
        .create_device_grant(&device_grant("dev-2", "uc-1"))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(
        store.get_device_grant("dev-1").await.unwrap(),
        Some(grant.clone())
    );
    assert_eq!(
        store.find_device_grant_by_user_code("uc-1").await.unwrap(),
        Some(grant.clone())
    );
    assert!(store.get_device_grant("dev-2").await.unwrap().is_none());

    assert!(store
        .record_device_poll("dev-1", 1100, 10, None)
        .await
        .unwrap());
    assert!(
        !store
            .record_device_poll("dev-1", 1100, 10, None)
            .await
            .unwrap(),
        "a parallel poll that saw the same state loses"
    );
    let polled = store.get_device_grant("dev-1").await.unwrap().unwrap();
    assert_eq!(
        (polled.last_polled_at, polled.interval_secs),
        (Some(1100), 10)
    );
    assert!(
        !store
            .redeem_device_grant("dev-1", 1100, "j0")
            .await
            .unwrap(),
        "not approved"
    );

    let approval = store::DeviceApproval {
        user_id: ada.id,
        session_id_hash: "session".into(),
        auth_time: 1050,
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        acr: Some("mfa".into()),
    };
    assert!(
        !store
            .approve_device_grant("uc-1", &approval, 1600)
            .await
            .unwrap(),
        "expired"
    );
    assert!(store
        .approve_device_grant("uc-1", &approval, 1200)
        .await
        .unwrap());
    assert!(!store
        .approve_device_grant("uc-1", &approval, 1201)
        .await
        .unwrap());
    assert!(!store.deny_device_grant("uc-1", ada.id, 1201).await.unwrap());
    let approved = store.get_device_grant("dev-1").await.unwrap().unwrap();
    assert_eq!(approved.status, store::DeviceStatus::Approved);
    assert_eq!(approved.user_id, Some(ada.id));
    assert_eq!(approved.session_id_hash.as_deref(), Some("session"));
    assert_eq!(approved.auth_time, Some(1050));
    assert_eq!(approved.amr, approval.amr);
    assert_eq!(approved.acr.as_deref(), Some("mfa"));
    assert_eq!(approved.decided_at, Some(1200));
    // A poll no longer moves an approved grant's interval.
    assert!(!store
        .record_device_poll("dev-1", 1250, 99, Some(1100))
        .await
        .unwrap());
    assert_eq!(
        store
            .get_device_grant("dev-1")
            .await
            .unwrap()
            .unwrap()
            .interval_secs,
        10
    );

    let (a, b) = tokio::join!(
        store.redeem_device_grant("dev-1", 1300, "j1"),
        store.redeem_device_grant("dev-1", 1300, "j2")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one redemption wins: {a} {b}");
    let redeemed = store.get_device_grant("dev-1").await.unwrap().unwrap();
    assert_eq!(redeemed.status, store::DeviceStatus::Redeemed);
    assert_eq!(redeemed.redeemed_at, Some(1300));
    let jti = if a { "j1" } else { "j2" };
    assert_eq!(redeemed.access_token_jti.as_deref(), Some(jti));
    assert!(!store
        .redeem_device_grant("dev-1", 1301, "j3")
        .await
        .unwrap());
    assert!(
        !store.expire_device_grant("dev-1", 2000).await.unwrap(),
        "spent, not expired"
    );
}

async fn device_grants_expire_once_and_are_purged_in_batches(store: Arc<dyn Store>) {
    store.create_client(&client("tv"), &[]).await.unwrap();
    let ada = user("ada@example.org");
    store.create_user(&ada, &[]).await.unwrap();
    store
        .create_device_grant(&device_grant("p", "uc-p"))
        .await
        .unwrap();
    store
        .create_device_grant(&device_grant("d", "uc-d"))
        .await
        .unwrap();
    assert!(store.deny_device_grant("uc-d", ada.id, 1100).await.unwrap());
    assert!(!store.deny_device_grant("uc-d", ada.id, 1101).await.unwrap());
    let denied = store.get_device_grant("d").await.unwrap().unwrap();
    assert_eq!(denied.status, store::DeviceStatus::Denied);
    assert_eq!(denied.user_id, Some(ada.id));

    assert!(
        !store.expire_device_grant("p", 1599).await.unwrap(),
        "still live"
    );
    assert!(store.expire_device_grant("p", 1600).await.unwrap());
    assert!(
        !store.expire_device_grant("p", 1601).await.unwrap(),
        "counted once"
    );
    assert!(store.expire_device_grant("d", 1600).await.unwrap());
    assert_eq!(
        store.get_device_grant("p").await.unwrap().unwrap().status,
        store::DeviceStatus::Expired
    );
    assert_eq!(store.purge_device_grants(1600, 10).await.unwrap(), 0);
    assert_eq!(store.purge_device_grants(1601, 1).await.unwrap(), 1);
    assert_eq!(store.purge_device_grants(1601, 10).await.unwrap(), 1);
    assert!(store.get_device_grant("p").await.unwrap().is_none());
    // A deleted client takes its grants along.
    store
        .create_device_grant(&device_grant("q", "uc-q"))
        .await
        .unwrap();
    assert!(store.delete_client("tv", &[]).await.unwrap());
    assert!(store.get_device_grant("q").await.unwrap().is_none());
}

mod device_sqlite {
    use super::*;
    contract_suite!(@tests sqlite_db;
        a_device_grant_is_approved_and_redeemed_exactly_once,
        device_grants_expire_once_and_are_purged_in_batches,
    );
}

mod device_postgres {
    use super::*;
    contract_suite!(@tests postgres_db;
        a_device_grant_is_approved_and_redeemed_exactly_once,
        device_grants_expire_once_and_are_purged_in_batches,
    );
}

fn identity(provider: &str, subject: &str, user_id: Uuid) -> store::UserIdentity {
    store::UserIdentity {
        provider: provider.into(),
        subject: subject.into(),
        user_id,
        email: Some("ada@upstream.example".into()),
        name: Some("Ada".into()),
        created_at: 100,
        last_used_at: None,
    }
}

async fn identities_link_once_and_a_new_account_comes_with_its_identity_or_not_at_all(
    store: Arc<dyn Store>,
) {
    use store::LinkRefusal;
    let ada = user("ada@example.org");
    store.create_user(&ada, &[]).await.unwrap();
    let gh = identity("github", "42", ada.id);
    assert_eq!(store.link_identity(&gh).await.unwrap(), Ok(()));
    assert_eq!(
        store.find_identity("github", "42").await.unwrap(),
        Some(gh.clone())
    );
    // The same upstream account, or a second one at the same provider, is refused.
    let grace = user("grace@example.org");
    store.create_user(&grace, &[]).await.unwrap();
    assert_eq!(
        store
            .link_identity(&identity("github", "42", grace.id))
            .await
            .unwrap(),
        Err(LinkRefusal::IdentityTaken)
    );
    assert_eq!(
        store
            .link_identity(&identity("github", "43", ada.id))
            .await
            .unwrap(),
        Err(LinkRefusal::ProviderTaken)
    );
    store
        .touch_identity("github", "42", Some("new@upstream.example"), None, 200)
        .await
        .unwrap();
    let touched = store.find_identity("github", "42").await.unwrap().unwrap();
    assert_eq!(touched.last_used_at, Some(200));
    assert_eq!(touched.email.as_deref(), Some("new@upstream.example"));
    assert_eq!(touched.name.as_deref(), Some("Ada"));

    // JIT: the account and its identity together; a clash writes neither.
    let newcomer = user("new@example.org");
    store
        .create_user_with_identity(&newcomer, &identity("corp", "n1", newcomer.id), &[])
        .await
        .unwrap();
    assert_eq!(store.identities_of(newcomer.id).await.unwrap().len(), 1);
    let clash = user("NEW@example.org");
    assert!(matches!(
        store
            .create_user_with_identity(&clash, &identity("corp", "n2", clash.id), &[])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.find_identity("corp", "n2").await.unwrap().is_none());
    let taken = user("other@example.org");
    assert!(store
        .create_user_with_identity(&taken, &identity("corp", "n1", taken.id), &[])
        .await
        .is_err());
    assert!(
        store.get_user(taken.id).await.unwrap().is_none(),
        "no half account"
    );

    // A deleted account's identities go with it.
    store.soft_delete_user(ada.id, 300, &[]).await.unwrap();
    assert!(store.find_identity("github", "42").await.unwrap().is_none());
}

async fn parallel_unlinks_keep_the_last_way_to_sign_in(store: Arc<dyn Store>) {
    let mut jit = user("jit@example.org");
    jit.password_hash = None;
    store
        .create_user_with_identity(&jit, &identity("corp", "j1", jit.id), &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .link_identity(&identity("github", "j2", jit.id))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store.unlink_identity(jit.id, "gitlab", 1).await.unwrap(),
        None
    );
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            store.unlink_identity(jit.id, "corp", 1),
            store.unlink_identity(jit.id, "github", 1)
        );
        let done = [a.unwrap(), b.unwrap()];
        assert_eq!(
            done.iter().filter(|d| **d == Some(true)).count(),
            1,
            "exactly one of two parallel unlinks of the last two ways in: {done:?}"
        );
        assert_eq!(store.identities_of(jit.id).await.unwrap().len(), 1);
        // Put the other one back for the next round.
        let left = store.identities_of(jit.id).await.unwrap();
        let missing = if left[0].provider == "corp" {
            ("github", "j2")
        } else {
            ("corp", "j1")
        };
        store
            .link_identity(&identity(missing.0, missing.1, jit.id))
            .await
            .unwrap()
            .unwrap();
    }
    // With a password, the last identity may go.
    let mut with_password = user("pw@example.org");
    with_password.email_verified = true;
    store.create_user(&with_password, &[]).await.unwrap();
    store
        .link_identity(&identity("corp", "p1", with_password.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .unlink_identity(with_password.id, "corp", 1)
            .await
            .unwrap(),
        Some(true)
    );
}

mod identity_sqlite {
    use super::*;
    contract_suite!(@tests sqlite_db;
        identities_link_once_and_a_new_account_comes_with_its_identity_or_not_at_all,
        parallel_unlinks_keep_the_last_way_to_sign_in,
    );
}

mod identity_postgres {
    use super::*;
    contract_suite!(@tests postgres_db;
        identities_link_once_and_a_new_account_comes_with_its_identity_or_not_at_all,
        parallel_unlinks_keep_the_last_way_to_sign_in,
    );
}

async fn resources_round_trip_and_dpop_proof_ids_are_taken_once(store: Arc<dyn Store>) {
    let api = portcullis::store::ApiResource {
        identifier: "https://api.example.com".into(),
        scopes: vec!["read".into(), "write".into()],
        access_token_ttl_secs: Some(300),
        created_at: 100,
    };
    store.create_resource(&api).await.unwrap();
    assert!(matches!(
        store.create_resource(&api).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_resource(&api.identifier).await.unwrap(),
        Some(api.clone())
    );
    assert_eq!(store.list_resources().await.unwrap(), vec![api.clone()]);
    // A client's resources, and the resources a code and a refresh token carry.
    let mut c = client("api-client");
    c.resources = vec![api.identifier.clone()];
    c.dpop_bound_access_tokens = true;
    store.create_client(&c, &[]).await.unwrap();
    let stored = store.get_client("api-client").await.unwrap().unwrap();
    assert_eq!(stored.resources, c.resources);
    assert!(stored.dpop_bound_access_tokens);

    // Of parallel uses of one proof id exactly one wins, on every instance.
    let tries = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.remember_dpop_proof("jti-hash", 500).await.unwrap() })
    });
    let wins = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(wins, 1);
    store.remember_dpop_proof("old", 50).await.unwrap();
    store.purge_expired(100, 100).await.unwrap();
    // The expired id is gone (usable again), the live one stays.
    assert!(store.remember_dpop_proof("old", 150).await.unwrap());
    assert!(!store.remember_dpop_proof("jti-hash", 500).await.unwrap());

    assert!(store.delete_resource(&api.identifier).await.unwrap());
    assert!(!store.delete_resource(&api.identifier).await.unwrap());
}

mod resources_sqlite {
    use super::*;
    contract_suite!(@tests sqlite_db; resources_round_trip_and_dpop_proof_ids_are_taken_once);
}

mod resources_postgres {
    use super::*;
    contract_suite!(@tests postgres_db; resources_round_trip_and_dpop_proof_ids_are_taken_once);
}
