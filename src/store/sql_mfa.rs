//! The multi-factor statements shared by both adapters (see `sql.rs` for why one SQL body
//! serves both dialects). Every "once only" rule is a conditional UPDATE whose row count says
//! who won.

macro_rules! impl_sql_mfa_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{FactorKind, MfaChallenge, MfaFactor, MfaStore};

        const FACTOR_COLUMNS: &str = "id, user_id, kind, name, secret_sealed, last_step, \
            credential_id, credential, confirmed_at, created_at, last_used_at";
        const CHALLENGE_COLUMNS: &str =
            "id_hash, purpose, user_id, data, created_at, expires_at, used_at";

        fn factor_from_row(row: &DbRow) -> StoreResult<MfaFactor> {
            let kind: String = row.try_get("kind")?;
            Ok(MfaFactor {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                kind: kind.parse::<FactorKind>().map_err(StoreError::Corrupt)?,
                name: row.try_get("name")?,
                secret_sealed: row.try_get("secret_sealed")?,
                last_step: row.try_get("last_step")?,
                credential_id: row.try_get("credential_id")?,
                credential: row.try_get("credential")?,
                confirmed_at: row.try_get("confirmed_at")?,
                created_at: row.try_get("created_at")?,
                last_used_at: row.try_get("last_used_at")?,
            })
        }

        fn challenge_from_row(row: &DbRow) -> StoreResult<MfaChallenge> {
            Ok(MfaChallenge {
                id_hash: row.try_get("id_hash")?,
                purpose: row.try_get("purpose")?,
                user_id: row.try_get("user_id")?,
                data: row.try_get("data")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
            })
        }

        async fn insert_recovery_codes(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: Uuid,
            hashes: &[String],
            now: Timestamp,
        ) -> StoreResult<()> {
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
            for hash in hashes {
                sqlx::query(
                    "INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        #[async_trait]
        impl MfaStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_factors(&self, user_id: Uuid) -> StoreResult<Vec<MfaFactor>> {
                let sql = format!(
                    "SELECT {FACTOR_COLUMNS} FROM mfa_factors WHERE user_id = $1 \
                     ORDER BY created_at, id"
                );
                let rows = sqlx::query(&sql).bind(user_id).fetch_all(&self.pool).await?;
                rows.iter().map(factor_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_factor(&self, id: Uuid) -> StoreResult<Option<MfaFactor>> {
                let sql = format!("SELECT {FACTOR_COLUMNS} FROM mfa_factors WHERE id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(factor_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn find_passkey(&self, credential_id: &str) -> StoreResult<Option<MfaFactor>> {
                let sql = format!(
                    "SELECT {FACTOR_COLUMNS} FROM mfa_factors \
                     WHERE credential_id = $1 AND kind = 'passkey'"
                );
                let row = sqlx::query(&sql)
                    .bind(credential_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(factor_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_factor(&self, f: &MfaFactor) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                if f.kind == FactorKind::Totp && f.confirmed_at.is_none() {
                    sqlx::query(
                        "DELETE FROM mfa_factors WHERE user_id = $1 AND kind = 'totp' \
                         AND confirmed_at IS NULL",
                    )
                    .bind(f.user_id)
                    .execute(&mut *tx)
                    .await?;
                }
                let sql = format!(
                    "INSERT INTO mfa_factors ({FACTOR_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                );
                sqlx::query(&sql)
                    .bind(f.id)
                    .bind(f.user_id)
                    .bind(f.kind.as_str())
                    .bind(&f.name)
                    .bind(&f.secret_sealed)
                    .bind(f.last_step)
                    .bind(&f.credential_id)
                    .bind(&f.credential)
                    .bind(f.confirmed_at)
                    .bind(f.created_at)
                    .bind(f.last_used_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn confirm_factor(
                &self,
                id: Uuid,
                user_id: Uuid,
                step: i64,
                now: Timestamp,
                first_codes: &[String],
                events: &[Event],
            ) -> StoreResult<Option<bool>> {
                let mut tx = self.writer.begin().await?;
                if $backend == "postgres" {
                    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
                let others: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM mfa_factors WHERE user_id = $1 AND id <> $2 \
                     AND confirmed_at IS NOT NULL",
                )
                .bind(user_id)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                let done = sqlx::query(
                    "UPDATE mfa_factors SET confirmed_at = $1, last_step = $2, last_used_at = $1 \
                     WHERE id = $3 AND user_id = $4 AND confirmed_at IS NULL",
                )
                .bind(now)
                .bind(step)
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                let first = others == 0;
                if first {
                    insert_recovery_codes(&mut tx, user_id, first_codes, now).await?;
                }
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some(first))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn use_totp_step(&self, id: Uuid, step: i64, now: Timestamp) -> StoreResult<bool> {
                // NIST SP 800-63B §5.1.4.2: an OTP is accepted once; a step at or before the
                // last accepted one is a replay, whichever instance sees it.
                let done = sqlx::query(
                    "UPDATE mfa_factors SET last_step = $1, last_used_at = $2 \
                     WHERE id = $3 AND kind = 'totp' AND confirmed_at IS NOT NULL \
                     AND (last_step IS NULL OR last_step < $1)",
                )
                .bind(step)
                .bind(now)
                .bind(id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn touch_passkey(
                &self,
                id: Uuid,
                credential: Option<&str>,
                now: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE mfa_factors SET last_used_at = $1, \
                     credential = COALESCE($2, credential) WHERE id = $3 AND kind = 'passkey'",
                )
                .bind(now)
                .bind(credential)
                .bind(id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn delete_factor(
                &self,
                user_id: Uuid,
                id: Uuid,
                keep_one: bool,
                events: &[Event],
            ) -> StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                if keep_one {
                    // PostgreSQL: removals for one user queue on the user's row. SQLite has
                    // one writer connection, so its transactions never interleave.
                    if $backend == "postgres" {
                        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                            .bind(user_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    }
                    let others: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM mfa_factors WHERE user_id = $1 AND id <> $2 \
                         AND confirmed_at IS NOT NULL",
                    )
                    .bind(user_id)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if others == 0 {
                        return Err(StoreError::Conflict("last_factor".into()));
                    }
                }
                let done = sqlx::query("DELETE FROM mfa_factors WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn delete_all_factors(&self, user_id: Uuid, events: &[Event]) -> StoreResult<u64> {
                let mut tx = self.writer.begin().await?;
                let done = sqlx::query("DELETE FROM mfa_factors WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE users SET mfa_failures = 0 WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() > 0 {
                    insert_events(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn record_mfa_failure(&self, user_id: Uuid) -> StoreResult<i64> {
                let n: Option<i64> = sqlx::query_scalar(
                    "UPDATE users SET mfa_failures = mfa_failures + 1 WHERE id = $1 \
                     RETURNING mfa_failures",
                )
                .bind(user_id)
                .fetch_optional(&self.writer)
                .await?;
                Ok(n.unwrap_or(0))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn mfa_failures(&self, user_id: Uuid) -> StoreResult<i64> {
                let n: Option<i64> =
                    sqlx::query_scalar("SELECT mfa_failures FROM users WHERE id = $1")
                        .bind(user_id)
                        .fetch_optional(&self.writer)
                        .await?;
                Ok(n.unwrap_or(0))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn reset_mfa_failures(&self, user_id: Uuid) -> StoreResult<()> {
                sqlx::query("UPDATE users SET mfa_failures = 0 WHERE id = $1 AND mfa_failures <> 0")
                    .bind(user_id)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn replace_recovery_codes(
                &self,
                user_id: Uuid,
                hashes: &[String],
                now: Timestamp,
            ) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_recovery_codes(&mut tx, user_id, hashes, now).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn use_recovery_code(
                &self,
                user_id: Uuid,
                hash: &str,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE mfa_recovery_codes SET used_at = $1 \
                     WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(hash)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn count_recovery_codes(&self, user_id: Uuid) -> StoreResult<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(n.max(0) as u64)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_challenge(&self, c: &MfaChallenge) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                );
                sqlx::query(&sql)
                    .bind(&c.id_hash)
                    .bind(&c.purpose)
                    .bind(c.user_id)
                    .bind(&c.data)
                    .bind(c.created_at)
                    .bind(c.expires_at)
                    .bind(c.used_at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_challenge(
                &self,
                id_hash: &str,
                purpose: &str,
                now: Timestamp,
            ) -> StoreResult<Option<MfaChallenge>> {
                let sql = format!(
                    "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges WHERE id_hash = $1 \
                     AND purpose = $2 AND used_at IS NULL AND expires_at > $3"
                );
                // Through the writer: a challenge is read right after another request wrote it.
                let row = sqlx::query(&sql)
                    .bind(id_hash)
                    .bind(purpose)
                    .bind(now)
                    .fetch_optional(&self.writer)
                    .await?;
                row.as_ref().map(challenge_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn consume_challenge(
                &self,
                id_hash: &str,
                purpose: &str,
                now: Timestamp,
            ) -> StoreResult<Option<MfaChallenge>> {
                let sql = format!(
                    "UPDATE mfa_challenges SET used_at = $1 WHERE id_hash = $2 AND purpose = $3 \
                     AND used_at IS NULL AND expires_at > $1 RETURNING {CHALLENGE_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(now)
                    .bind(id_hash)
                    .bind(purpose)
                    .fetch_optional(&self.writer)
                    .await?;
                row.as_ref().map(challenge_from_row).transpose()
            }
        }
    };
}

pub(super) use impl_sql_mfa_store;
