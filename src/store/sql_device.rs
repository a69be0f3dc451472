//! The device authorization grant's storage (RFC 8628): the port, its aggregate, and the SQL
//! both adapters share (see `sql.rs` for why one body serves both dialects). Every step of a
//! grant's life is one conditional UPDATE whose row count says who won, so two polls (or two
//! browsers) can never both take the same step.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, Timestamp};

/// Where a device grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the user (RFC 8628 §3.5 `authorization_pending`).
    Pending,
    /// The user allowed it; the next poll gets the tokens.
    Approved,
    /// The user refused it (`access_denied`).
    Denied,
    /// Its tokens were issued: it is spent.
    Redeemed,
    /// A poll found it past its lifetime (`expired_token`).
    Expired,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Redeemed => "redeemed",
            DeviceStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<DeviceStatus> {
        Some(match raw {
            "pending" => DeviceStatus::Pending,
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "redeemed" => DeviceStatus::Redeemed,
            "expired" => DeviceStatus::Expired,
            _ => return None,
        })
    }
}

/// One device authorization (RFC 8628 §3.2), stored under the SHA-256 of its device code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    pub device_code_hash: String,
    /// SHA-256 of the normalised user code.
    pub user_code_hash: String,
    pub client_id: String,
    pub scope: String,
    pub status: DeviceStatus,
    /// RFC 8628 §3.5: the polling interval now in force (grown by each `slow_down`).
    pub interval_secs: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_polled_at: Option<Timestamp>,
    /// The approval (or denial): who, in which browser session, how they signed in.
    pub user_id: Option<Uuid>,
    pub session_id_hash: Option<String>,
    pub auth_time: Option<Timestamp>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub redeemed_at: Option<Timestamp>,
    /// The `jti` of the access token issued when it was redeemed.
    pub access_token_jti: Option<String>,
}

impl DeviceGrant {
    /// A grant just issued (RFC 8628 §3.2), waiting for the user.
    pub fn pending(
        device_code_hash: String,
        user_code_hash: String,
        client_id: &str,
        scope: &str,
        interval_secs: i64,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> DeviceGrant {
        DeviceGrant {
            device_code_hash,
            user_code_hash,
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            status: DeviceStatus::Pending,
            interval_secs,
            created_at,
            expires_at,
            last_polled_at: None,
            user_id: None,
            session_id_hash: None,
            auth_time: None,
            amr: vec![],
            acr: None,
            decided_at: None,
            redeemed_at: None,
            access_token_jti: None,
        }
    }
}

/// The sign-in that approves a device grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceApproval {
    pub user_id: Uuid,
    pub session_id_hash: String,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Stores a new pending grant; `Conflict` when its user code (or device code) is taken.
    async fn create_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()>;
    async fn get_device_grant(&self, device_code_hash: &str) -> StoreResult<Option<DeviceGrant>>;
    async fn find_device_grant_by_user_code(
        &self,
        user_code_hash: &str,
    ) -> StoreResult<Option<DeviceGrant>>;
    /// Pending and unexpired -> approved by `approval`; false (nothing written) otherwise.
    async fn approve_device_grant(
        &self,
        user_code_hash: &str,
        approval: &DeviceApproval,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Pending and unexpired -> denied by `user_id`; false (nothing written) otherwise.
    async fn deny_device_grant(
        &self,
        user_code_hash: &str,
        user_id: Uuid,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Records a poll of a pending grant and the interval in force from now on, if the grant
    /// was last polled at `seen` (what the poll's decision was based on): of parallel polls
    /// exactly one gets true, so they cannot all pass as paced (RFC 8628 §3.5).
    async fn record_device_poll(
        &self,
        device_code_hash: &str,
        now: Timestamp,
        interval_secs: i64,
        seen: Option<Timestamp>,
    ) -> StoreResult<bool>;
    /// Approved and unexpired -> redeemed with the access token's `jti`: of two parallel
    /// polls exactly one gets true.
    async fn redeem_device_grant(
        &self,
        device_code_hash: &str,
        now: Timestamp,
        access_token_jti: &str,
    ) -> StoreResult<bool>;
    /// Pending, approved or denied and past its lifetime -> expired; true only for the one
    /// call that made the change (so an expiry is counted once).
    async fn expire_device_grant(
        &self,
        device_code_hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Deletes grants that expired before `now`, at most `batch`; returns how many.
    async fn purge_device_grants(&self, now: Timestamp, batch: u32) -> StoreResult<u64>;
}

macro_rules! impl_sql_device_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{DeviceApproval, DeviceGrant, DeviceStatus, DeviceStore};

        const DEVICE_COLUMNS: &str = "device_code_hash, user_code_hash, client_id, scope, \
            status, interval_secs, created_at, expires_at, last_polled_at, user_id, \
            session_id_hash, auth_time, amr, acr, decided_at, redeemed_at, access_token_jti";

        fn device_grant_from_row(row: &DbRow) -> StoreResult<DeviceGrant> {
            let status: String = row.try_get("status")?;
            Ok(DeviceGrant {
                device_code_hash: row.try_get("device_code_hash")?,
                user_code_hash: row.try_get("user_code_hash")?,
                client_id: row.try_get("client_id")?,
                scope: row.try_get("scope")?,
                status: DeviceStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("device status {status:?}")))?,
                interval_secs: row.try_get("interval_secs")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                last_polled_at: row.try_get("last_polled_at")?,
                user_id: row.try_get("user_id")?,
                session_id_hash: row.try_get("session_id_hash")?,
                auth_time: row.try_get("auth_time")?,
                amr: list_from_json("amr", row.try_get("amr")?)?,
                acr: row.try_get("acr")?,
                decided_at: row.try_get("decided_at")?,
                redeemed_at: row.try_get("redeemed_at")?,
                access_token_jti: row.try_get("access_token_jti")?,
            })
        }

        #[async_trait]
        impl DeviceStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_device_grant(&self, g: &DeviceGrant) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO device_grants ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, \
                     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                );
                sqlx::query(&sql)
                    .bind(&g.device_code_hash)
                    .bind(&g.user_code_hash)
                    .bind(&g.client_id)
                    .bind(&g.scope)
                    .bind(g.status.as_str())
                    .bind(g.interval_secs)
                    .bind(g.created_at)
                    .bind(g.expires_at)
                    .bind(g.last_polled_at)
                    .bind(g.user_id)
                    .bind(&g.session_id_hash)
                    .bind(g.auth_time)
                    .bind(list_to_json(&g.amr))
                    .bind(&g.acr)
                    .bind(g.decided_at)
                    .bind(g.redeemed_at)
                    .bind(&g.access_token_jti)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_device_grant(&self, hash: &str) -> StoreResult<Option<DeviceGrant>> {
                let sql =
                    format!("SELECT {DEVICE_COLUMNS} FROM device_grants WHERE device_code_hash = $1");
                let row = sqlx::query(&sql).bind(hash).fetch_optional(&self.pool).await?;
                row.as_ref().map(device_grant_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn find_device_grant_by_user_code(
                &self,
                hash: &str,
            ) -> StoreResult<Option<DeviceGrant>> {
                let sql =
                    format!("SELECT {DEVICE_COLUMNS} FROM device_grants WHERE user_code_hash = $1");
                let row = sqlx::query(&sql).bind(hash).fetch_optional(&self.pool).await?;
                row.as_ref().map(device_grant_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn approve_device_grant(
                &self,
                user_code_hash: &str,
                a: &DeviceApproval,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE device_grants SET status = 'approved', user_id = $2, \
                     session_id_hash = $3, auth_time = $4, amr = $5, acr = $6, decided_at = $7 \
                     WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $7",
                )
                .bind(user_code_hash)
                .bind(a.user_id)
                .bind(&a.session_id_hash)
                .bind(a.auth_time)
                .bind(list_to_json(&a.amr))
                .bind(&a.acr)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn deny_device_grant(
                &self,
                user_code_hash: &str,
                user_id: Uuid,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE device_grants SET status = 'denied', user_id = $2, decided_at = $3 \
                     WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $3",
                )
                .bind(user_code_hash)
                .bind(user_id)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn record_device_poll(
                &self,
                hash: &str,
                now: Timestamp,
                interval_secs: i64,
                seen: Option<Timestamp>,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE device_grants SET last_polled_at = $2, interval_secs = $3 \
                     WHERE device_code_hash = $1 AND status = 'pending' \
                     AND (last_polled_at = $4 OR (last_polled_at IS NULL AND $5))",
                )
                .bind(hash)
                .bind(now)
                .bind(interval_secs)
                .bind(seen.unwrap_or(0))
                .bind(seen.is_none())
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn redeem_device_grant(
                &self,
                hash: &str,
                now: Timestamp,
                access_token_jti: &str,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE device_grants SET status = 'redeemed', redeemed_at = $2, \
                     access_token_jti = $3 \
                     WHERE device_code_hash = $1 AND status = 'approved' AND expires_at > $2",
                )
                .bind(hash)
                .bind(now)
                .bind(access_token_jti)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn expire_device_grant(&self, hash: &str, now: Timestamp) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE device_grants SET status = 'expired' WHERE device_code_hash = $1 \
                     AND status IN ('pending', 'approved', 'denied') AND expires_at <= $2",
                )
                .bind(hash)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn purge_device_grants(&self, now: Timestamp, batch: u32) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM device_grants WHERE device_code_hash IN \
                     (SELECT device_code_hash FROM device_grants WHERE expires_at < $1 LIMIT $2)",
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

pub(super) use impl_sql_device_store;
