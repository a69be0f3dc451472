//! SQLite adapter: the embedded default. One file, WAL mode, foreign keys on.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

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

pub struct SqliteStore {
    /// Reads: up to `database.max_connections`, side by side (WAL: readers never wait).
    pool: SqlitePool,
    /// Writes: one connection. SQLite admits one writer at a time, and writers that contend
    /// for its lock wait in its busy handler, which sleeps with a growing back-off: with ten
    /// writing connections refresh rotation had a p99 of 96 ms (bench/RESULTS.md). One
    /// connection queues them in the pool instead, first come first served.
    writer: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("bad SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool, writer })
    }

    /// (open, idle) connections of both pools.
    fn connection_counts(&self) -> (u32, usize) {
        (
            self.pool.size() + self.writer.size(),
            self.pool.num_idle() + self.writer.num_idle(),
        )
    }
}

impl_sql_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_account_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_mfa_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_admin_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_par_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_device_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_registration_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_magic_link_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_identity_store!(SqliteStore, Sqlite, "sqlite");
impl_sql_event_store!(SqliteStore, Sqlite, "sqlite", "");
impl_sql_resource_store!(SqliteStore, Sqlite, "sqlite");
