//! The account statements shared by both adapters (see `sql.rs` for why one SQL body serves
//! both dialects). Instantiated next to `impl_sql_store!`, whose row readers it reuses.

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
/// The bounds of a prefix search as a range of an index: every string that starts with
/// `prefix` sorts at or after it and before it followed by the last code point (in byte
/// order, which SQLite's BINARY and PostgreSQL's "C" collations both use).
pub(super) fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_string(), format!("{prefix}\u{10FFFF}"))
}

/// ` COLLATE "C"` on PostgreSQL (whose indexes for prefix search are in byte order), nothing
/// on SQLite (whose default collation already is).
pub(super) fn byte_order(backend: &str) -> &'static str {
    if backend == "postgres" {
        " COLLATE \"C\""
    } else {
        ""
    }
}

pub(super) fn like_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

macro_rules! impl_sql_account_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::sql_accounts::{byte_order, like_escape, prefix_range};
        use $crate::store::{
            AccountStore, AccountToken, AuditQuery, EmailChange, TokenPurpose, UserQuery, UserSort,
        };

        type DbConnection = <$db as sqlx::Database>::Connection;

        fn account_token_from_row(row: &DbRow) -> StoreResult<AccountToken> {
            let purpose: String = row.try_get("purpose")?;
            Ok(AccountToken {
                token_hash: row.try_get("token_hash")?,
                purpose: match purpose.as_str() {
                    "verify_email" => TokenPurpose::VerifyEmail,
                    "password_reset" => TokenPurpose::PasswordReset,
                    "email_change" => TokenPurpose::EmailChange,
                    other => return Err(StoreError::Corrupt(format!("token purpose {other:?}"))),
                },
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
            })
        }

        /// Revokes every session and refresh token of a user; returns the ids of the access
        /// tokens issued with them or with the user's codes (to deny until they expire).
        async fn revoke_user_grants(
            conn: &mut DbConnection,
            user_id: Uuid,
            now: Timestamp,
        ) -> StoreResult<Vec<String>> {
            sqlx::query(
                "UPDATE browser_sessions SET revoked_at = $1 \
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            let mut jtis: Vec<String> = sqlx::query_scalar(
                "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL \
                 WHERE user_id = $2 AND revoked_at IS NULL AND access_token_jti IS NOT NULL \
                 RETURNING access_token_jti",
            )
            .bind(now)
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL \
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            let from_codes: Vec<String> = sqlx::query_scalar(
                "SELECT access_token_jti FROM authorization_codes \
                 WHERE user_id = $1 AND access_token_jti IS NOT NULL",
            )
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
            jtis.extend(from_codes);
            Ok(jtis)
        }

        /// Spends the live token `token_hash` of `purpose`: its user and the address it was
        /// mailed to, or `None` if it is spent, expired or for something else.
        async fn spend_token(
            conn: &mut DbConnection,
            token_hash: &str,
            purpose: TokenPurpose,
            now: Timestamp,
        ) -> StoreResult<Option<(Uuid, String)>> {
            let row = sqlx::query(
                "UPDATE account_tokens SET used_at = $1 WHERE token_hash = $2 \
                 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
                 RETURNING user_id, email",
            )
            .bind(now)
            .bind(token_hash)
            .bind(purpose.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            row.map(|row| Ok((row.try_get("user_id")?, row.try_get("email")?)))
                .transpose()
        }

        /// Spends every unused token of `purpose` of the user.
        async fn spend_user_tokens(
            conn: &mut DbConnection,
            user_id: Uuid,
            purpose: Option<TokenPurpose>,
            now: Timestamp,
        ) -> StoreResult<()> {
            sqlx::query(
                "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL \
                 AND ($3 IS NULL OR purpose = $3)",
            )
            .bind(now)
            .bind(user_id)
            .bind(purpose.map(|p| p.as_str()))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Inside a transaction: the new hash of a live user, every session and refresh token
        /// revoked, every reset link spent. Returns the access-token ids to deny, or `None`
        /// (nothing to commit) when no live user has that id.
        async fn write_password(
            conn: &mut DbConnection,
            id: Uuid,
            password_hash: &str,
            now: Timestamp,
        ) -> StoreResult<Option<Vec<String>>> {
            let done = sqlx::query(
                "UPDATE users SET password_hash = $1, updated_at = $2 \
                 WHERE id = $3 AND deleted_at IS NULL",
            )
            .bind(password_hash)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(None);
            }
            let jtis = revoke_user_grants(conn, id, now).await?;
            spend_user_tokens(conn, id, Some(TokenPurpose::PasswordReset), now).await?;
            Ok(Some(jtis))
        }

        #[async_trait]
        impl AccountStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn update_user(&self, u: &User, events: &[Event]) -> StoreResult<bool> {
                let query = sqlx::query(
                    "UPDATE users SET name = $1, roles = $2, disabled = $3, email_verified = $4, \
                     password_hash = $5, updated_at = $6, name_lower = $8 \
                     WHERE id = $7 AND deleted_at IS NULL",
                )
                .bind(&u.name)
                .bind(list_to_json(&u.roles))
                .bind(u.disabled)
                .bind(u.email_verified)
                .bind(&u.password_hash)
                .bind(u.updated_at)
                .bind(u.id)
                .bind(u.name.as_deref().map(str::to_lowercase));
                execute_one_with_events(&self.writer, query, events).await
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn search_users(&self, q: &UserQuery) -> StoreResult<(Vec<User>, u64)> {
                if q.matches_nothing() {
                    return Ok((Vec::new(), 0));
                }
                let mut filter = String::from("deleted_at IS NULL");
                let mut binds: Vec<String> = Vec::new();
                if let Some(part) = &q.email_contains {
                    binds.push(format!("%{}%", like_escape(&part.to_lowercase())));
                    filter.push_str(&format!(" AND email_lower LIKE ${} ESCAPE '\\'", binds.len()));
                }
                if let Some(role) = &q.role {
                    binds.push(format!("%{}%", like_escape(&serde_json::Value::from(role.as_str()).to_string())));
                    filter.push_str(&format!(" AND roles LIKE ${} ESCAPE '\\'", binds.len()));
                }
                if let Some(prefix) = q.search.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                    let (low, high) = prefix_range(&prefix.to_lowercase());
                    binds.push(low);
                    binds.push(high);
                    let (l, h) = (binds.len() - 1, binds.len());
                    let c = byte_order($backend);
                    filter.push_str(&format!(
                        " AND ((email_lower{c} >= ${l} AND email_lower{c} < ${h}) \
                         OR (name_lower{c} >= ${l} AND name_lower{c} < ${h}))"
                    ));
                }
                let direction = if q.descending { "DESC" } else { "ASC" };
                let order = match q.sort {
                    UserSort::Created => format!("created_at {direction}, id {direction}"),
                    UserSort::Email => format!("email_lower {direction}"),
                    UserSort::Name => format!("name_lower {direction}, email_lower {direction}"),
                };
                let count_sql = format!("SELECT COUNT(*) FROM users WHERE {filter}");
                let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
                for b in &binds {
                    count = count.bind(b);
                }
                let total = count.fetch_one(&self.pool).await?;
                let page_sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE {filter} \
                     ORDER BY {order} LIMIT ${} OFFSET ${}",
                    binds.len() + 1,
                    binds.len() + 2
                );
                let mut page = sqlx::query(&page_sql);
                for b in &binds {
                    page = page.bind(b);
                }
                let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
                let rows = page
                    .bind(i64::from(q.limit))
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?;
                let users = rows.iter().map(user_from_row).collect::<StoreResult<Vec<_>>>()?;
                Ok((users, u64::try_from(total).unwrap_or(0)))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn soft_delete_user(&self, id: Uuid, now: Timestamp, events: &[Event]) -> StoreResult<Option<Vec<String>>> {
                let mut tx = self.writer.begin().await?;
                let done = sqlx::query(
                    "UPDATE users SET deleted_at = $1, updated_at = $1 \
                     WHERE id = $2 AND deleted_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                let jtis = revoke_user_grants(&mut tx, id, now).await?;
                spend_user_tokens(&mut tx, id, None, now).await?;
                sqlx::query("DELETE FROM consents WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // The upstream identities go too: signing in through them again is a
                // first-time sign-in, not a way back into the deleted account.
                sqlx::query("DELETE FROM user_identities WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some(jtis))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn set_password(
                &self,
                id: Uuid,
                password_hash: &str,
                now: Timestamp,
                events: &[Event],
            ) -> StoreResult<Option<Vec<String>>> {
                let mut tx = self.writer.begin().await?;
                let Some(jtis) = write_password(&mut tx, id, password_hash, now).await? else {
                    return Ok(None);
                };
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some(jtis))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn sign_out_everywhere(&self, id: Uuid, now: Timestamp) -> StoreResult<Vec<String>> {
                let mut tx = self.writer.begin().await?;
                let jtis = revoke_user_grants(&mut tx, id, now).await?;
                tx.commit().await?;
                Ok(jtis)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn rehash_password(&self, id: Uuid, old_hash: &str, new_hash: &str) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
                )
                .bind(new_hash)
                .bind(id)
                .bind(old_hash)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_account_token(&self, t: &AccountToken) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, \
                     expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.token_hash)
                .bind(t.purpose.as_str())
                .bind(t.user_id)
                .bind(&t.email)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.used_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_account_token(
                &self,
                token_hash: &str,
                purpose: TokenPurpose,
                now: Timestamp,
            ) -> StoreResult<Option<AccountToken>> {
                let row = sqlx::query(
                    "SELECT token_hash, purpose, user_id, email, created_at, expires_at, used_at \
                     FROM account_tokens WHERE token_hash = $1 AND purpose = $2 \
                     AND used_at IS NULL AND expires_at > $3",
                )
                .bind(token_hash)
                .bind(purpose.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(account_token_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn reset_password(
                &self,
                token_hash: &str,
                password_hash: &str,
                now: Timestamp,
                events: &[Event],
            ) -> StoreResult<Option<(Uuid, Vec<String>)>> {
                let mut tx = self.writer.begin().await?;
                let spent = spend_token(&mut tx, token_hash, TokenPurpose::PasswordReset, now).await?;
                let Some((user_id, _)) = spent else {
                    return Ok(None);
                };
                let Some(jtis) = write_password(&mut tx, user_id, password_hash, now).await? else {
                    // Dropping the transaction rolls the spent token back: nothing is written.
                    return Ok(None);
                };
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some((user_id, jtis)))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn verify_email(&self, token_hash: &str, now: Timestamp, events: &[Event]) -> StoreResult<Option<Uuid>> {
                let mut tx = self.writer.begin().await?;
                let spent = spend_token(&mut tx, token_hash, TokenPurpose::VerifyEmail, now).await?;
                let Some((user_id, email)) = spent else {
                    return Ok(None);
                };
                // The link proves the address it was sent to, and only while it is the user's.
                let done = sqlx::query(
                    "UPDATE users SET email_verified = TRUE, updated_at = $1 \
                     WHERE id = $2 AND email = $3 AND deleted_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(&email)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                spend_user_tokens(&mut tx, user_id, Some(TokenPurpose::VerifyEmail), now).await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some(user_id))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn change_email(
                &self,
                token_hash: &str,
                now: Timestamp,
                events: &[Event],
            ) -> StoreResult<Option<EmailChange>> {
                let mut tx = self.writer.begin().await?;
                let spent = spend_token(&mut tx, token_hash, TokenPurpose::EmailChange, now).await?;
                let Some((user_id, to)) = spent else {
                    return Ok(None);
                };
                let from: Option<String> = sqlx::query_scalar(
                    "SELECT email FROM users WHERE id = $1 AND deleted_at IS NULL \
                     AND disabled = FALSE",
                )
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(from) = from else {
                    return Ok(None);
                };
                let done = sqlx::query(
                    "UPDATE users SET email = $1, email_lower = $2, email_verified = TRUE, \
                     updated_at = $3 WHERE id = $4 AND deleted_at IS NULL",
                )
                .bind(&to)
                .bind(User::email_key(&to))
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await;
                match done.map_err(StoreError::from) {
                    Ok(d) if d.rows_affected() == 1 => {}
                    // Taken meanwhile: dropping the transaction writes nothing.
                    Ok(_) | Err(StoreError::Conflict(_)) => return Ok(None),
                    Err(e) => return Err(e),
                }
                spend_user_tokens(&mut tx, user_id, None, now).await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some(EmailChange { user_id, from, to }))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
                if q.matches_nothing() {
                    return Ok(Vec::new());
                }
                let mut filter = String::from("1 = 1");
                let mut n = 0;
                let mut next = || {
                    n += 1;
                    n
                };
                if q.user.is_some() {
                    let (a, b) = (next(), next());
                    filter.push_str(&format!(" AND (subject = ${a} OR actor = ${b})"));
                }
                if q.kind.is_some() {
                    filter.push_str(&format!(" AND kind = ${}", next()));
                }
                if q.since.is_some() {
                    filter.push_str(&format!(" AND at >= ${}", next()));
                }
                if q.until.is_some() {
                    filter.push_str(&format!(" AND at <= ${}", next()));
                }
                let (limit, offset) = (next(), next());
                let sql = format!(
                    "SELECT id, at, kind, actor, subject, client_id, ip, detail, user_agent, \
                     trace_id FROM audit_events WHERE {filter} \
                     ORDER BY at DESC, id DESC LIMIT ${limit} OFFSET ${offset}"
                );
                let mut query = sqlx::query(&sql);
                if let Some(user) = &q.user {
                    query = query.bind(user).bind(user);
                }
                if let Some(kind) = &q.kind {
                    query = query.bind(kind);
                }
                if let Some(since) = q.since {
                    query = query.bind(since);
                }
                if let Some(until) = q.until {
                    query = query.bind(until);
                }
                let rows = query
                    .bind(i64::from(q.limit))
                    .bind(i64::try_from(q.offset).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(audit_from_row).collect()
            }
        }
    };
}

pub(super) use impl_sql_account_store;
