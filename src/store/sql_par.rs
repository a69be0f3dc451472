//! Pushed authorization requests (RFC 9126): the port and its one SQL body for both adapters
//! (see `sql.rs` for why one body serves both dialects). A request is found by the hash of its
//! request URI together with its client, so another client's URI finds nothing; spending it is
//! one conditional UPDATE whose row count says who won.

use std::fmt;

use async_trait::async_trait;

use super::{StoreResult, Timestamp};

/// What a client pushed to `/par`, as kept until it expires or yields a code.
#[derive(Clone, PartialEq, Eq)]
pub struct PushedRequest {
    /// SHA-256 (hex) of the random part of the request URI; the URI itself is never stored.
    pub uri_hash: String,
    pub client_id: String,
    /// The validated authorization request parameters, form-encoded, without credentials.
    pub params: String,
    pub created_at: Timestamp,
    /// Until the first visit to `/authorize`: the request URI's `expires_in`; from then on the
    /// end of the sign-in it started (`par.sign_in_ttl_secs`).
    pub expires_at: Timestamp,
    /// When a browser first brought the request URI to `/authorize`.
    pub opened_at: Option<Timestamp>,
    /// When a code was issued from it.
    pub consumed_at: Option<Timestamp>,
}

impl fmt::Debug for PushedRequest {
    /// The parameters carry `state`, `nonce` and the PKCE challenge: left out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushedRequest")
            .field("client_id", &self.client_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("opened_at", &self.opened_at)
            .field("consumed_at", &self.consumed_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait ParStore: Send + Sync {
    async fn create_pushed_request(&self, request: &PushedRequest) -> StoreResult<()>;
    /// The request of `client_id` with this URI hash, whatever its state (expired and
    /// consumed ones too, until the janitor removes them); `None` for another client's.
    async fn pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
    ) -> StoreResult<Option<PushedRequest>>;
    /// Marks the first visit to `/authorize` of an unexpired, unspent request and moves its
    /// expiry to `until`, the end of the sign-in; false when it was opened before (or cannot
    /// be used). Later visits change nothing, so reloading a page never extends it again.
    async fn open_pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    /// Spends an unexpired, unspent request: of two parallel callers exactly one gets true.
    async fn consume_pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
}

macro_rules! impl_sql_par_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{ParStore, PushedRequest};

        const PUSHED_COLUMNS: &str =
            "uri_hash, client_id, params, created_at, expires_at, opened_at, consumed_at";

        fn pushed_from_row(row: &DbRow) -> StoreResult<PushedRequest> {
            Ok(PushedRequest {
                uri_hash: row.try_get("uri_hash")?,
                client_id: row.try_get("client_id")?,
                params: row.try_get("params")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                opened_at: row.try_get("opened_at")?,
                consumed_at: row.try_get("consumed_at")?,
            })
        }

        #[async_trait]
        impl ParStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_pushed_request(&self, request: &PushedRequest) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO pushed_authorization_requests ({PUSHED_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                );
                sqlx::query(&sql)
                    .bind(&request.uri_hash)
                    .bind(&request.client_id)
                    .bind(&request.params)
                    .bind(request.created_at)
                    .bind(request.expires_at)
                    .bind(request.opened_at)
                    .bind(request.consumed_at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn pushed_request(
                &self,
                uri_hash: &str,
                client_id: &str,
            ) -> StoreResult<Option<PushedRequest>> {
                let sql = format!(
                    "SELECT {PUSHED_COLUMNS} FROM pushed_authorization_requests \
                     WHERE uri_hash = $1 AND client_id = $2"
                );
                let row = sqlx::query(&sql)
                    .bind(uri_hash)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(pushed_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn open_pushed_request(
                &self,
                uri_hash: &str,
                client_id: &str,
                now: Timestamp,
                until: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE pushed_authorization_requests SET opened_at = $1, expires_at = $2 \
                     WHERE uri_hash = $3 AND client_id = $4 AND opened_at IS NULL \
                     AND consumed_at IS NULL AND expires_at > $1",
                )
                .bind(now)
                .bind(until)
                .bind(uri_hash)
                .bind(client_id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn consume_pushed_request(
                &self,
                uri_hash: &str,
                client_id: &str,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE pushed_authorization_requests SET consumed_at = $1 \
                     WHERE uri_hash = $2 AND client_id = $3 AND consumed_at IS NULL \
                     AND expires_at > $1",
                )
                .bind(now)
                .bind(uri_hash)
                .bind(client_id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(super) use impl_sql_par_store;
