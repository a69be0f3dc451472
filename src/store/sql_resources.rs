//! Registered APIs (RFC 8707 resources) and the DPoP proof ids seen recently (RFC 9449 §11.1):
//! the port and its one SQL body for both adapters. Remembering a proof id is one insert that
//! does nothing on conflict, so of two instances seeing the same proof exactly one wins.

use async_trait::async_trait;

use super::{StoreResult, Timestamp};

/// An API that access tokens can be issued for (`portcullis resource create`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiResource {
    /// RFC 8707 §2: an absolute URI without fragment; the `aud` of its access tokens.
    pub identifier: String,
    /// The scopes that belong to this API: a token for it carries only these.
    pub scopes: Vec<String>,
    /// The lifetime of its access tokens; `None` is `tokens.access_token_ttl_secs`.
    pub access_token_ttl_secs: Option<i64>,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait ResourceStore: Send + Sync {
    /// Fails with `Conflict` when the identifier is registered already.
    async fn create_resource(&self, resource: &ApiResource) -> StoreResult<()>;
    async fn get_resource(&self, identifier: &str) -> StoreResult<Option<ApiResource>>;
    /// Every resource, by identifier.
    async fn list_resources(&self) -> StoreResult<Vec<ApiResource>>;
    /// False when there is no such resource.
    async fn delete_resource(&self, identifier: &str) -> StoreResult<bool>;
    /// Records a DPoP proof's `jti` (hashed) until `expires_at`; false if it was seen before.
    async fn remember_dpop_proof(&self, jti_hash: &str, expires_at: Timestamp)
        -> StoreResult<bool>;
}

macro_rules! impl_sql_resource_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{ApiResource, ResourceStore};

        fn resource_from_row(row: &DbRow) -> StoreResult<ApiResource> {
            Ok(ApiResource {
                identifier: row.try_get("identifier")?,
                scopes: list_from_json("scopes", row.try_get("scopes")?)?,
                access_token_ttl_secs: row.try_get("access_token_ttl_secs")?,
                created_at: row.try_get("created_at")?,
            })
        }

        #[async_trait]
        impl ResourceStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_resource(&self, r: &ApiResource) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO api_resources (identifier, scopes, access_token_ttl_secs, \
                     created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&r.identifier)
                .bind(list_to_json(&r.scopes))
                .bind(r.access_token_ttl_secs)
                .bind(r.created_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_resource(&self, identifier: &str) -> StoreResult<Option<ApiResource>> {
                let row = sqlx::query(
                    "SELECT identifier, scopes, access_token_ttl_secs, created_at \
                     FROM api_resources WHERE identifier = $1",
                )
                .bind(identifier)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(resource_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_resources(&self) -> StoreResult<Vec<ApiResource>> {
                let rows = sqlx::query(
                    "SELECT identifier, scopes, access_token_ttl_secs, created_at \
                     FROM api_resources ORDER BY identifier",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(resource_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn delete_resource(&self, identifier: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM api_resources WHERE identifier = $1")
                    .bind(identifier)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn remember_dpop_proof(
                &self,
                jti_hash: &str,
                expires_at: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO dpop_proofs (jti_hash, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (jti_hash) DO NOTHING",
                )
                .bind(jti_hash)
                .bind(expires_at)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(super) use impl_sql_resource_store;
