//! The storage contract: one suite, run against the SQLite and the PostgreSQL adapter.

use std::sync::Arc;

use portcullis::store::{
    self, AuditEvent, Client, KeyState, SigningKeyRecord, Store, StoreError, User,
};
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
    store.create_client(&client("conf")).await.unwrap();
    store.create_client(&public).await.unwrap();
    assert_eq!(
        store.get_client("conf").await.unwrap(),
        Some(client("conf"))
    );
    assert_eq!(store.get_client("pub").await.unwrap(), Some(public));
    assert_eq!(store.get_client("nope").await.unwrap(), None);
    assert_eq!(store.list_clients().await.unwrap().len(), 2);
    assert!(matches!(
        store.create_client(&client("conf")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.delete_client("conf").await.unwrap());
    assert!(!store.delete_client("conf").await.unwrap());
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
}

async fn emails_are_unique_whatever_their_case(store: Arc<dyn Store>) {
    let ada = user("Ada@Example.org");
    store.create_user(&ada).await.unwrap();
    let found = store
        .find_user_by_email(&User::email_key("ADA@example.ORG"))
        .await
        .unwrap();
    assert_eq!(found, Some(ada.clone()));
    assert_eq!(store.get_user(ada.id).await.unwrap(), Some(ada));
    let err = store
        .create_user(&user("ada@example.org"))
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
        .rotate_signing_keys(&key("k3", "RS256", KeyState::Next), 500)
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
        store.rotate_signing_keys(&kx, 200),
        store.rotate_signing_keys(&ky, 200),
    );
    assert!(x.is_ok() || y.is_ok(), "{x:?} {y:?}");
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

async fn migrations_can_be_applied_again(store: Arc<dyn Store>) {
    // `open` already migrated; a second open on the same database must be a no-op.
    store.create_client(&client("c")).await.unwrap();
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
