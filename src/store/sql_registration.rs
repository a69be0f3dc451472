//! Dynamic client registration state (RFC 7591, RFC 7592): initial access tokens, and for each
//! client that registered itself the hash of its registration access token and whether it was
//! ever issued a token. The port and its one SQL body for both adapters (see `sql.rs`).
//! Only SHA-256 hashes of tokens are kept; the client itself is an ordinary `clients` row.

use async_trait::async_trait;

use super::{StoreResult, Timestamp};

/// An initial access token (RFC 7591 §3) made by `portcullis client registration-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialAccessToken {
    pub token_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What the server keeps about a client that registered itself, beside the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicRegistration {
    pub client_id: String,
    /// SHA-256 of the registration access token (RFC 7592 §1.2).
    pub access_token_hash: String,
    /// The registration mode it came through: `open` or `initial_token`.
    pub mode: String,
    pub created_at: Timestamp,
    /// When a token was first issued to the client; never used clients expire.
    pub used_at: Option<Timestamp>,
}

#[async_trait]
pub trait RegistrationStore: Send + Sync {
    async fn create_initial_access_token(&self, token: &InitialAccessToken) -> StoreResult<()>;
    /// Whether an initial access token with this hash exists and has not expired at `now`.
    async fn initial_access_token_valid(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Fails with `Conflict` if the client has a registration already.
    async fn create_dynamic_registration(&self, r: &DynamicRegistration) -> StoreResult<()>;
    async fn get_dynamic_registration(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<DynamicRegistration>>;
    /// Replaces the registration access token only while it is still `old_hash`: one
    /// conditional update, so of two requests presenting the same token exactly one gets true.
    async fn rotate_registration_token(
        &self,
        client_id: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;
    /// Records the first token issued to the client; false if one was recorded before (or the
    /// client has no registration).
    async fn mark_registration_used(&self, client_id: &str, now: Timestamp) -> StoreResult<bool>;
    /// Dynamically registered clients created at or before `cutoff` that were never issued a
    /// token (with a registration row or, after a failed registration, without one), oldest
    /// first, at most `batch`.
    async fn unused_dynamic_clients(
        &self,
        cutoff: Timestamp,
        batch: u32,
    ) -> StoreResult<Vec<String>>;
    /// Deletes initial access tokens expired before `now`; returns how many.
    async fn purge_initial_access_tokens(&self, now: Timestamp, batch: u32) -> StoreResult<u64>;
}

macro_rules! impl_sql_registration_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{DynamicRegistration, InitialAccessToken, RegistrationStore};

        #[async_trait]
        impl RegistrationStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_initial_access_token(&self, t: &InitialAccessToken) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO initial_access_tokens (token_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(&t.token_hash)
                .bind(t.created_at)
                .bind(t.expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn initial_access_token_valid(
                &self,
                token_hash: &str,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT expires_at FROM initial_access_tokens \
                     WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.is_some())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_dynamic_registration(&self, r: &DynamicRegistration) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO client_registrations \
                     (client_id, access_token_hash, mode, created_at, used_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&r.client_id)
                .bind(&r.access_token_hash)
                .bind(&r.mode)
                .bind(r.created_at)
                .bind(r.used_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_dynamic_registration(
                &self,
                client_id: &str,
            ) -> StoreResult<Option<DynamicRegistration>> {
                let row = sqlx::query(
                    "SELECT client_id, access_token_hash, mode, created_at, used_at \
                     FROM client_registrations WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| {
                    Ok(DynamicRegistration {
                        client_id: row.try_get("client_id")?,
                        access_token_hash: row.try_get("access_token_hash")?,
                        mode: row.try_get("mode")?,
                        created_at: row.try_get("created_at")?,
                        used_at: row.try_get("used_at")?,
                    })
                })
                .transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn rotate_registration_token(
                &self,
                client_id: &str,
                old_hash: &str,
                new_hash: &str,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE client_registrations SET access_token_hash = $3 \
                     WHERE client_id = $1 AND access_token_hash = $2",
                )
                .bind(client_id)
                .bind(old_hash)
                .bind(new_hash)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn mark_registration_used(
                &self,
                client_id: &str,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE client_registrations SET used_at = $2 \
                     WHERE client_id = $1 AND used_at IS NULL",
                )
                .bind(client_id)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn unused_dynamic_clients(
                &self,
                cutoff: Timestamp,
                batch: u32,
            ) -> StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT c.id FROM clients c \
                     LEFT JOIN client_registrations r ON r.client_id = c.id \
                     WHERE c.dynamic AND r.used_at IS NULL AND c.created_at <= $1 \
                     ORDER BY c.created_at, c.id LIMIT $2",
                )
                .bind(cutoff)
                .bind(i64::from(batch))
                .fetch_all(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn purge_initial_access_tokens(&self, now: Timestamp, batch: u32) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM initial_access_tokens WHERE token_hash IN \
                     (SELECT token_hash FROM initial_access_tokens WHERE expires_at <= $1 LIMIT $2)",
                )
                .bind(now)
                .bind(i64::from(batch))
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(super) use impl_sql_registration_store;
