//! Storage port: one trait per aggregate, implemented by the SQLite and PostgreSQL adapters.
//! Decides nothing about protocol rules; atomic state changes are single statements or
//! transactions inside the adapter so that concurrent instances can never both win.

mod identity;
mod magic_link;
mod model;
pub mod postgres;
mod sql;
mod sql_accounts;
mod sql_admin;
mod sql_device;
mod sql_events;
mod sql_identity;
mod sql_magic_link;
mod sql_mfa;
mod sql_par;
mod sql_registration;
mod sql_resources;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::events::Event;
pub use identity::{IdentityStore, LinkRefusal, UserIdentity};

pub use magic_link::{MagicLink, MagicLinkStore};
pub use model::*;
pub use sql_device::{DeviceApproval, DeviceGrant, DeviceStatus, DeviceStore};
pub use sql_events::{
    AttemptResult, ClaimedDelivery, Delivery, DeliveryQuery, DeliveryState, EventQuery, EventStore,
    NextStep, OutboxEvent, Webhook,
};
pub use sql_par::{ParStore, PushedRequest};
pub use sql_registration::{DynamicRegistration, InitialAccessToken, RegistrationStore};
pub use sql_resources::{ApiResource, ResourceStore};

/// Unix time in seconds (UTC), the one time representation in storage.
pub type Timestamp = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was hit (duplicate email, client id, second active key, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value could not be read back (a bug or manual tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or("unique").to_string())
            }
            // Bound values are never part of sqlx's messages, so this leaks no secret.
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(format!("migration failed: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Stores the client and `events` in one transaction.
    async fn create_client(&self, client: &Client, events: &[Event]) -> StoreResult<()>;
    async fn get_client(&self, id: &str) -> StoreResult<Option<Client>>;
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// The first-party client registered first, if any (the one the account API issues for).
    async fn first_party_client(&self) -> StoreResult<Option<Client>>;
    /// Returns whether a client was deleted; its codes, tokens and consents go with it.
    /// `events` are written with the deletion (and not when nothing was deleted).
    async fn delete_client(&self, id: &str, events: &[Event]) -> StoreResult<bool>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`] when the email is taken, whatever its case.
    /// `events` are written in the same transaction.
    async fn create_user(&self, user: &User, events: &[Event]) -> StoreResult<()>;
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>>;
    async fn find_user_by_email(&self, email_lower: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Inserts the first keys of an algorithm, all or nothing; returns false (and writes
    /// nothing) when that algorithm already has keys, e.g. another instance was faster.
    async fn insert_initial_keys(&self, keys: &[SigningKeyRecord]) -> StoreResult<bool>;
    /// In one transaction: retire the active key of `new_next.alg`, promote its next key,
    /// and store `new_next` as the next key. With `expected_active`, only if that key is still
    /// the active one (compare-and-swap, so two instances never rotate twice). Fails with
    /// `Conflict` if a concurrent rotation won.
    async fn rotate_signing_keys(
        &self,
        new_next: &SigningKeyRecord,
        now: Timestamp,
        expected_active: Option<&str>,
        events: &[Event],
    ) -> StoreResult<()>;
    /// Takes or renews the lease `name` for `holder` until `now + ttl_secs`; false while
    /// another holder's lease is still running. One conditional upsert.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_secs: i64,
    ) -> StoreResult<bool>;
    /// Forgets the sealed successors of tokens used before `used_before` (the grace window is
    /// over for them); returns how many.
    async fn clear_sealed_successors(&self, used_before: Timestamp, batch: u32)
        -> StoreResult<u64>;
    /// Deletes expired codes, sessions, refresh tokens of dead families, deny-list entries,
    /// spent or expired mailed tokens and assertion ids, at most `batch` rows per table; returns how many rows went.
    async fn purge_expired(&self, now: Timestamp, batch: u32) -> StoreResult<u64>;
    /// Deletes one retired key at once (emergency: a compromised key leaves the JWKS now).
    /// Returns false if no retired key has that id.
    async fn delete_retired_key(&self, kid: &str, events: &[Event]) -> StoreResult<bool>;
    /// Deletes retired keys retired before `before`; returns how many.
    async fn purge_retired_keys(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// The newest events first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// `events` (a sign-in) are written in the same transaction.
    async fn create_session(&self, session: &BrowserSession, events: &[Event]) -> StoreResult<()>;
    /// The session, if it exists and was not revoked (expiry is the caller's rule).
    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<BrowserSession>>;
    async fn touch_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<()>;
    /// False when the session was already revoked (or never existed): of two parallel
    /// sign-outs of one session exactly one gets true.
    /// `events` are written only by the call that revoked it.
    async fn revoke_session(
        &self,
        id_hash: &str,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<bool>;
}

#[async_trait]
pub trait CodeStore: Send + Sync {
    async fn create_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    async fn get_code(&self, code_hash: &str) -> StoreResult<Option<AuthorizationCode>>;
    /// Marks the code used and records the access token issued for it, only if it was unused:
    /// one conditional update, so of two concurrent redemptions exactly one returns true.
    async fn consume_code(
        &self,
        code_hash: &str,
        now: Timestamp,
        access_token_jti: &str,
    ) -> StoreResult<bool>;
    /// Revokes the refresh tokens issued from a code (RFC 6749 §4.1.2, replay); returns the
    /// access-token ids they were issued with.
    async fn revoke_tokens_from_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<String>>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// The scope the user has granted the client, if any.
    async fn get_consent(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<String>>;
    async fn save_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        scope: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
}

/// Access tokens are self-contained JWTs; the ones revoked early are listed until they expire.
#[async_trait]
pub trait DenyListStore: Send + Sync {
    async fn deny_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    async fn is_access_token_denied(&self, jti: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// `events` (a sign-in through the API) are written in the same transaction.
    async fn create_refresh_token(&self, token: &RefreshToken, events: &[Event])
        -> StoreResult<()>;
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// The token of `token_hash` with its user and live session's `sid`, in one query: the
    /// three reads a rotation starts with.
    async fn get_refresh_grant(&self, token_hash: &str) -> StoreResult<Option<RefreshGrant>>;
    /// In one transaction: mark `old_id` used (only if it is neither used nor revoked),
    /// keep `sealed_successor` on it for the grace window, and store `successor`. Returns
    /// false, writing nothing, when another request rotated or revoked it first.
    async fn rotate_refresh_token(
        &self,
        old_id: Uuid,
        successor: &RefreshToken,
        sealed_successor: Option<&[u8]>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Counts one grace-window reuse of `id`, only while fewer than `max` were counted.
    async fn claim_grace_reuse(&self, id: Uuid, max: i64) -> StoreResult<bool>;
    /// The unrevoked child of `parent_id` (the successor a grace reuse answers with).
    async fn refresh_successor(&self, parent_id: Uuid) -> StoreResult<Option<RefreshToken>>;
    /// Revokes every token of the family; returns the access-token ids they were issued with.
    /// `events` (the reuse detection) are written in the same transaction.
    async fn revoke_refresh_family(
        &self,
        family_id: Uuid,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<Vec<String>>;
    /// Revokes the refresh tokens bound to a browser session, except `offline_access` ones;
    /// answers the access token ids to deny: those of the revoked refresh tokens and those
    /// minted straight from the session's codes.
    async fn revoke_session_refresh_tokens(
        &self,
        session_id_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<String>>;
    /// The clients that were issued codes, or refresh tokens bound to it, in a browser session
    /// (for back-channel logout).
    async fn clients_of_session(&self, session_id_hash: &str) -> StoreResult<Vec<String>>;
    /// Records a client assertion's `jti`; false if it was seen before (replay).
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Timestamp,
    ) -> StoreResult<bool>;
}

/// Account life cycle: profile updates, soft delete, single-use mailed tokens, audit queries.
/// Each method that changes more than one row is one transaction; `events` are written in
/// the transaction of the change they describe, and only when it is committed.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Writes name, roles, flags and password hash of a live user; false if it is gone.
    /// `events` are written with the change (not when the user is gone).
    async fn update_user(&self, user: &User, events: &[Event]) -> StoreResult<bool>;
    /// One page of live users and the number of live users matching the filter.
    async fn search_users(&self, query: &UserQuery) -> StoreResult<(Vec<User>, u64)>;
    /// Marks the user deleted (the row and its email stay, so the address cannot be taken
    /// over), revokes its sessions and refresh tokens and spends its mailed tokens. Returns
    /// the access-token ids to deny, or `None` if no live user has that id.
    async fn soft_delete_user(
        &self,
        id: Uuid,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<Option<Vec<String>>>;
    /// Stores a new password hash and revokes every session and refresh token of the user in
    /// the same transaction; returns the access-token ids to deny (`None`: no live user).
    async fn set_password(
        &self,
        id: Uuid,
        password_hash: &str,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<Option<Vec<String>>>;
    /// Revokes every session and refresh token of the user (a disabled account); returns the
    /// access-token ids to deny.
    async fn sign_out_everywhere(&self, id: Uuid, now: Timestamp) -> StoreResult<Vec<String>>;
    /// Replaces the password hash only if it is still `old_hash` (a transparent upgrade of the
    /// hashing cost must never undo a password change made meanwhile).
    async fn rehash_password(&self, id: Uuid, old_hash: &str, new_hash: &str) -> StoreResult<bool>;
    async fn create_account_token(&self, token: &AccountToken) -> StoreResult<()>;
    /// The token, if it exists with that purpose, unused and unexpired.
    async fn get_account_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<AccountToken>>;
    /// Spends a reset token and sets the new password, revoking sessions and refresh tokens,
    /// all in one transaction; `None` (nothing written) if the token was spent or expired
    /// meanwhile. Every other reset token of the user is spent too.
    async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<Option<(Uuid, Vec<String>)>>;
    /// Spends a verification token and marks the address verified if it is still the
    /// user's; returns the user id, or `None` if the token was spent or expired.
    async fn verify_email(
        &self,
        token_hash: &str,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<Option<Uuid>>;
    /// In one transaction: spends an email-change token, gives its live user the address it
    /// was mailed to (verified), and spends every other unused token of the user (links mailed
    /// to the old address). `None`, with nothing written, if the token was spent or expired,
    /// the user is gone or disabled, or another account has the address by now.
    async fn change_email(
        &self,
        token_hash: &str,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<Option<EmailChange>>;
    /// Audit events matching the query, newest first.
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

/// Second factors, recovery codes and challenges. Every "use once" rule is one conditional
/// update, so two parallel requests can never both spend the same code, step or challenge.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// Every factor of the user, confirmed or not, oldest first.
    async fn list_factors(&self, user_id: Uuid) -> StoreResult<Vec<MfaFactor>>;
    async fn get_factor(&self, id: Uuid) -> StoreResult<Option<MfaFactor>>;
    /// The passkey with this credential id (base64url), whoever owns it.
    async fn find_passkey(&self, credential_id: &str) -> StoreResult<Option<MfaFactor>>;
    /// Stores a factor; for an unconfirmed TOTP factor, the user's other unconfirmed TOTP
    /// enrollments are dropped in the same transaction (one enrollment at a time).
    async fn create_factor(&self, factor: &MfaFactor) -> StoreResult<()>;
    /// Confirms an unconfirmed factor of the user with its first accepted step and, when it
    /// is the user's first confirmed factor, stores `first_codes` as the recovery codes: one
    /// transaction, deciding "first" under a lock of the user (two parallel first
    /// enrollments cannot both show codes). `None` (nothing written) if it was confirmed
    /// meanwhile or is gone; `Some(true)` when the codes were stored.
    async fn confirm_factor(
        &self,
        id: Uuid,
        user_id: Uuid,
        step: i64,
        now: Timestamp,
        first_codes: &[String],
        events: &[Event],
    ) -> StoreResult<Option<bool>>;
    /// Accepts TOTP step `step` of a confirmed factor only if it is later than the last one
    /// accepted: of two requests with the same code exactly one gets true.
    async fn use_totp_step(&self, id: Uuid, step: i64, now: Timestamp) -> StoreResult<bool>;
    /// Records a passkey's use and, when given, its updated credential (signature counter).
    async fn touch_passkey(
        &self,
        id: Uuid,
        credential: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Deletes one factor of the user; false if the user has no such factor. With
    /// `keep_one`, refuses with `Conflict("last_factor")` when no other confirmed factor
    /// would remain, deciding under a lock of the user, so two parallel removals of a user's
    /// two factors cannot both succeed.
    async fn delete_factor(
        &self,
        user_id: Uuid,
        id: Uuid,
        keep_one: bool,
        events: &[Event],
    ) -> StoreResult<bool>;
    /// Deletes every factor and recovery code of the user (an admin's reset); returns how
    /// many factors went. `events` are written only when there was one.
    async fn delete_all_factors(&self, user_id: Uuid, events: &[Event]) -> StoreResult<u64>;
    /// Counts one more consecutive failed second-factor attempt; returns the new count.
    async fn record_mfa_failure(&self, user_id: Uuid) -> StoreResult<i64>;
    /// Consecutive failed second-factor attempts of the user.
    async fn mfa_failures(&self, user_id: Uuid) -> StoreResult<i64>;
    /// A success (or an admin's reset) starts the count again.
    async fn reset_mfa_failures(&self, user_id: Uuid) -> StoreResult<()>;
    /// Replaces the user's recovery codes (hashes) in one transaction.
    async fn replace_recovery_codes(
        &self,
        user_id: Uuid,
        hashes: &[String],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Spends one unused recovery code of the user; false if none matches.
    async fn use_recovery_code(
        &self,
        user_id: Uuid,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// How many unused recovery codes the user has.
    async fn count_recovery_codes(&self, user_id: Uuid) -> StoreResult<u64>;
    async fn create_challenge(&self, challenge: &MfaChallenge) -> StoreResult<()>;
    /// The challenge, if it has that purpose and is unused and unexpired.
    async fn get_challenge(
        &self,
        id_hash: &str,
        purpose: &str,
        now: Timestamp,
    ) -> StoreResult<Option<MfaChallenge>>;
    /// Spends the challenge (unused, unexpired, that purpose) and returns it; `None` when it
    /// was spent meanwhile: of two parallel requests exactly one gets it.
    async fn consume_challenge(
        &self,
        id_hash: &str,
        purpose: &str,
        now: Timestamp,
    ) -> StoreResult<Option<MfaChallenge>>;
}

/// What operators and people's account pages read and change beyond the protocol: client
/// search and updates, a user's sessions and consents, the dashboard's counts. Every list is
/// one query (plus one for its total), never one per row. `events` are written with the
/// change they describe, in its transaction, and only when it happened.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// One page of clients matching the query, and how many match on all pages.
    async fn search_clients(&self, query: &ClientQuery) -> StoreResult<(Vec<Client>, u64)>;
    /// Writes the registration fields of a client (never its id, creation time or `disabled`;
    /// its secret hash only with `write_secret`, when it starts or stops using a secret);
    /// false if it is gone.
    async fn update_client(
        &self,
        client: &Client,
        write_secret: bool,
        events: &[Event],
    ) -> StoreResult<bool>;
    /// Switches a client off or on, touching nothing else; false if it is gone.
    async fn set_client_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<bool>;
    /// Replaces the secret of a client that has one; false if there is no such client (or it
    /// authenticates without a secret).
    async fn set_client_secret(
        &self,
        id: &str,
        secret_hash: &str,
        now: Timestamp,
        events: &[Event],
    ) -> StoreResult<bool>;
    /// In one transaction: revokes every refresh token of the client and spends its unused
    /// codes (a client switched off, deleted, or changing how it authenticates). Returns the
    /// access-token ids they were issued with.
    async fn revoke_client_grants(&self, id: &str, now: Timestamp) -> StoreResult<Vec<String>>;
    /// The user's live sessions (not revoked, not past their absolute end, seen after
    /// `seen_after`: the idle timeout), most recently active first.
    async fn user_sessions(
        &self,
        user_id: Uuid,
        now: Timestamp,
        seen_after: Timestamp,
    ) -> StoreResult<Vec<BrowserSession>>;
    /// The unrevoked session with this public id (`sid`).
    async fn session_by_sid(&self, sid: &str) -> StoreResult<Option<BrowserSession>>;
    /// What the user allowed which client, most recently changed first.
    async fn user_consents(&self, user_id: Uuid) -> StoreResult<Vec<ConsentRecord>>;
    async fn get_consent_record(&self, id: Uuid) -> StoreResult<Option<ConsentRecord>>;
    /// In one transaction: deletes the consent (only `owner`'s, when given), revokes every
    /// refresh token the client holds for the user (`offline_access` ones too) and spends the
    /// codes not yet redeemed. `None` when there is no such consent.
    async fn revoke_consent(
        &self,
        id: Uuid,
        owner: Option<Uuid>,
        now: Timestamp,
    ) -> StoreResult<Option<RevokedConsent>>;
    /// Counts for the dashboard; sessions count as live as in [`AdminStore::user_sessions`].
    async fn admin_counts(&self, now: Timestamp, seen_after: Timestamp)
        -> StoreResult<AdminCounts>;
    /// How many audit events of each of `kinds` were recorded at or after `since` (kinds with
    /// none are left out).
    async fn count_audit(
        &self,
        kinds: &[&str],
        since: Timestamp,
    ) -> StoreResult<Vec<(String, u64)>>;
    /// Recomputes the lower-cased search names of users and clients whose names are not plain
    /// ASCII (the migration lower-cased with the database's `lower`, which may fold ASCII
    /// only); returns how many rows changed. Cheap when there is nothing to do.
    async fn refresh_search_names(&self) -> StoreResult<u64>;
}

#[async_trait]
pub trait Store:
    ClientStore
    + AdminStore
    + MfaStore
    + AccountStore
    + UserStore
    + KeyStore
    + AuditStore
    + SessionStore
    + CodeStore
    + ConsentStore
    + DenyListStore
    + RefreshStore
    + ParStore
    + DeviceStore
    + RegistrationStore
    + MagicLinkStore
    + IdentityStore
    + EventStore
    + ResourceStore
{
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    fn backend(&self) -> &'static str;
    /// Connection pool usage: (open connections, idle connections).
    fn pool_stats(&self) -> (u32, usize);
}

/// Opens the database named by `url`, creating an SQLite file (and its folder) on first use,
/// and applies pending migrations.
pub async fn open(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(url, max_connections).await?,
        ))
    } else {
        Ok(Arc::new(
            postgres::PostgresStore::open(url, max_connections).await?,
        ))
    }
}
