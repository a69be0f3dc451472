//! PostgreSQL adapter: the production store, shared by every instance of a deployment.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use super::sql::impl_sql_store;
use super::sql_accounts::impl_sql_account_store;
use super::sql_admin::impl_sql_admin_store;
use super::sql_device::impl_sql_device_store;
use super::sql_events::impl_sql_event_store;
use super::sql_identity::impl_sql_identity_store;
use super::sql_magic_link::impl_sql_magic_link_store;
use super::sql_mfa::impl_sql_mfa_store;
use super::sql_par::impl_sql_par_store;
use super::sql_registration::impl_sql_registration_store;
use super::sql_resources::impl_sql_resource_store;

pub struct PostgresStore {
    pool: PgPool,
    /// The same pool: PostgreSQL locks rows, not the database, so writers need no queue.
    writer: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // sqlx takes an advisory lock, so instances starting together migrate once.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PostgresStore {
            writer: pool.clone(),
            pool,
        })
    }

    /// (open, idle) connections (`writer` is the same pool).
    fn connection_counts(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}

impl_sql_store!(PostgresStore, Postgres, "postgres");
impl_sql_account_store!(PostgresStore, Postgres, "postgres");
impl_sql_mfa_store!(PostgresStore, Postgres, "postgres");
impl_sql_admin_store!(PostgresStore, Postgres, "postgres");
impl_sql_par_store!(PostgresStore, Postgres, "postgres");
impl_sql_device_store!(PostgresStore, Postgres, "postgres");
impl_sql_registration_store!(PostgresStore, Postgres, "postgres");
impl_sql_magic_link_store!(PostgresStore, Postgres, "postgres");
impl_sql_identity_store!(PostgresStore, Postgres, "postgres");
impl_sql_event_store!(
    PostgresStore,
    Postgres,
    "postgres",
    "FOR UPDATE SKIP LOCKED"
);
impl_sql_resource_store!(PostgresStore, Postgres, "postgres");
