//! The identity statements shared by both adapters (see `sql.rs` for why one SQL body serves
//! both dialects).

macro_rules! impl_sql_identity_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{IdentityStore, LinkRefusal, UserIdentity};

        const IDENTITY_COLUMNS: &str =
            "provider, subject, user_id, email, name, created_at, last_used_at";

        fn identity_from_row(row: &DbRow) -> StoreResult<UserIdentity> {
            Ok(UserIdentity {
                provider: row.try_get("provider")?,
                subject: row.try_get("subject")?,
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
                last_used_at: row.try_get("last_used_at")?,
            })
        }

        async fn insert_identity(
            conn: &mut DbConnection,
            i: &UserIdentity,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO user_identities (provider, subject, user_id, email, name, \
                 created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&i.provider)
            .bind(&i.subject)
            .bind(i.user_id)
            .bind(&i.email)
            .bind(&i.name)
            .bind(i.created_at)
            .bind(i.last_used_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Takes the user's row lock for the rest of the transaction (PostgreSQL; SQLite's
        /// write transaction is already exclusive); false if the user is gone or disabled.
        async fn lock_live_user(
            conn: &mut DbConnection,
            user_id: Uuid,
        ) -> StoreResult<bool> {
            let done = sqlx::query(
                "UPDATE users SET updated_at = updated_at WHERE id = $1 \
                 AND deleted_at IS NULL AND disabled = FALSE",
            )
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        #[async_trait]
        impl IdentityStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn find_identity(
                &self,
                provider: &str,
                subject: &str,
            ) -> StoreResult<Option<UserIdentity>> {
                let sql = format!(
                    "SELECT {IDENTITY_COLUMNS} FROM user_identities \
                     WHERE provider = $1 AND subject = $2"
                );
                let row = sqlx::query(&sql)
                    .bind(provider)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(identity_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn identities_of(&self, user_id: Uuid) -> StoreResult<Vec<UserIdentity>> {
                let sql = format!(
                    "SELECT {IDENTITY_COLUMNS} FROM user_identities WHERE user_id = $1 \
                     ORDER BY created_at, provider"
                );
                let rows = sqlx::query(&sql).bind(user_id).fetch_all(&self.pool).await?;
                rows.iter().map(identity_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn link_identity(
                &self,
                identity: &UserIdentity,
            ) -> StoreResult<Result<(), LinkRefusal>> {
                let mut tx = self.writer.begin().await?;
                if !lock_live_user(&mut tx, identity.user_id).await? {
                    return Ok(Err(LinkRefusal::NoUser));
                }
                let taken = sqlx::query(
                    "SELECT provider, subject, user_id FROM user_identities \
                     WHERE (provider = $1 AND subject = $2) OR (provider = $1 AND user_id = $3)",
                )
                .bind(&identity.provider)
                .bind(&identity.subject)
                .bind(identity.user_id)
                .fetch_all(&mut *tx)
                .await?;
                if let Some(row) = taken.first() {
                    let subject: String = row.try_get("subject")?;
                    return Ok(Err(if subject == identity.subject {
                        LinkRefusal::IdentityTaken
                    } else {
                        LinkRefusal::ProviderTaken
                    }));
                }
                match insert_identity(&mut tx, identity).await {
                    Ok(()) => {}
                    // A parallel link of the same upstream account won the race.
                    Err(StoreError::Conflict(_)) => return Ok(Err(LinkRefusal::IdentityTaken)),
                    Err(e) => return Err(e),
                }
                tx.commit().await?;
                Ok(Ok(()))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_user_with_identity(
                &self,
                u: &User,
                identity: &UserIdentity,
                events: &[$crate::events::Event],
            ) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_user(&mut *tx, u).await?;
                insert_identity(&mut tx, identity).await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn touch_identity(
                &self,
                provider: &str,
                subject: &str,
                email: Option<&str>,
                name: Option<&str>,
                now: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE user_identities SET last_used_at = $1, \
                     email = COALESCE($2, email), name = COALESCE($3, name) \
                     WHERE provider = $4 AND subject = $5",
                )
                .bind(now)
                .bind(email)
                .bind(name)
                .bind(provider)
                .bind(subject)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn unlink_identity(
                &self,
                user_id: Uuid,
                provider: &str,
                _now: Timestamp,
            ) -> StoreResult<Option<bool>> {
                let mut tx = self.writer.begin().await?;
                if !lock_live_user(&mut tx, user_id).await? {
                    return Ok(None);
                }
                let row = sqlx::query(
                    "SELECT \
                     (SELECT COUNT(*) FROM user_identities WHERE user_id = $1 AND provider = $2) \
                       AS this_one, \
                     (SELECT COUNT(*) FROM user_identities WHERE user_id = $1 AND provider <> $2) \
                       AS others, \
                     (SELECT COUNT(*) FROM mfa_factors WHERE user_id = $1 AND kind = 'passkey' \
                       AND confirmed_at IS NOT NULL) AS passkeys, \
                     (SELECT COUNT(*) FROM users WHERE id = $1 AND password_hash IS NOT NULL) \
                       AS passwords",
                )
                .bind(user_id)
                .bind(provider)
                .fetch_one(&mut *tx)
                .await?;
                let count = |c: &str| -> StoreResult<i64> { Ok(row.try_get::<i64, _>(c)?) };
                if count("this_one")? == 0 {
                    return Ok(None);
                }
                if count("others")? + count("passkeys")? + count("passwords")? == 0 {
                    return Ok(Some(false));
                }
                sqlx::query("DELETE FROM user_identities WHERE user_id = $1 AND provider = $2")
                    .bind(user_id)
                    .bind(provider)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(true))
            }
        }
    };
}

pub(super) use impl_sql_identity_store;
