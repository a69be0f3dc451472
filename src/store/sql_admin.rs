//! The administration statements shared by both adapters (see `sql.rs` for why one SQL body
//! serves both dialects): client search and updates, a user's sessions and consents, and the
//! dashboard's counts. Each list is one query for the page (and one for its total), whatever
//! its length: no statement runs per row.

macro_rules! impl_sql_admin_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::sql_accounts::{byte_order as admin_byte_order, prefix_range as admin_prefix_range};
        use $crate::store::{AdminCounts, AdminStore, ClientQuery, ClientSort, ConsentRecord, RevokedConsent};

        const CONSENT_SELECT: &str = "SELECT c.id, c.user_id, c.client_id, cl.name AS client_name, \
            c.scope, c.created_at, c.updated_at, \
            (SELECT MAX(r.created_at) FROM refresh_tokens r \
              WHERE r.user_id = c.user_id AND r.client_id = c.client_id) AS last_refresh, \
            (SELECT MAX(a.created_at) FROM authorization_codes a \
              WHERE a.user_id = c.user_id AND a.client_id = c.client_id) AS last_code \
            FROM consents c JOIN clients cl ON cl.id = c.client_id";

        fn consent_from_row(row: &DbRow) -> StoreResult<ConsentRecord> {
            let last_refresh: Option<i64> = row.try_get("last_refresh")?;
            let last_code: Option<i64> = row.try_get("last_code")?;
            Ok(ConsentRecord {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                client_id: row.try_get("client_id")?,
                client_name: row.try_get("client_name")?,
                scope: row.try_get("scope")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                last_used_at: last_refresh.max(last_code),
            })
        }

        /// Revokes the refresh tokens of `client_id` (for one user, or all) and spends its
        /// unredeemed codes; returns the access-token ids issued with the tokens and codes.
        /// Every revoking statement returns what it revoked: on PostgreSQL a rotation that
        /// commits while the first one waits adds a child the second one catches.
        async fn revoke_grants_of(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: Option<Uuid>,
            client_id: &str,
            now: Timestamp,
        ) -> StoreResult<Vec<String>> {
            let user = if user_id.is_some() { " AND user_id = $3" } else { "" };
            let mut jtis: Vec<String> = Vec::new();
            for _ in 0..2 {
                let sql = format!(
                    "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL \
                     WHERE client_id = $2{user} AND revoked_at IS NULL \
                     RETURNING access_token_jti"
                );
                let mut query = sqlx::query_scalar::<_, Option<String>>(&sql).bind(now).bind(client_id);
                if let Some(u) = user_id {
                    query = query.bind(u);
                }
                jtis.extend(query.fetch_all(&mut *conn).await?.into_iter().flatten());
            }
            let sql = format!(
                "UPDATE authorization_codes SET used_at = $1 \
                 WHERE client_id = $2{user} AND used_at IS NULL"
            );
            let mut query = sqlx::query(&sql).bind(now).bind(client_id);
            if let Some(u) = user_id {
                query = query.bind(u);
            }
            query.execute(&mut *conn).await?;
            let sql = format!(
                "SELECT access_token_jti FROM authorization_codes \
                 WHERE client_id = $1{} AND access_token_jti IS NOT NULL",
                if user_id.is_some() { " AND user_id = $2" } else { "" }
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(client_id);
            if let Some(u) = user_id {
                query = query.bind(u);
            }
            jtis.extend(query.fetch_all(&mut *conn).await?);
            Ok(jtis)
        }

        #[async_trait]
        impl AdminStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn search_clients(&self, q: &ClientQuery) -> StoreResult<(Vec<Client>, u64)> {
                if q.matches_nothing() {
                    return Ok((Vec::new(), 0));
                }
                let mut filter = String::from("1 = 1");
                let mut binds: Vec<String> = Vec::new();
                if let Some(text) = q.search.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                    let (low, high) = admin_prefix_range(&text.to_lowercase());
                    binds.push(low);
                    binds.push(high);
                    binds.push(text.to_string());
                    let (l, h, id) = (binds.len() - 2, binds.len() - 1, binds.len());
                    let c = admin_byte_order($backend);
                    filter.push_str(&format!(
                        " AND ((name_lower{c} >= ${l} AND name_lower{c} < ${h}) OR id = ${id})"
                    ));
                }
                if let Some(disabled) = q.disabled {
                    filter.push_str(if disabled { " AND disabled" } else { " AND NOT disabled" });
                }
                if let Some(first) = q.first_party {
                    filter.push_str(if first { " AND first_party" } else { " AND NOT first_party" });
                }
                let direction = if q.descending { "DESC" } else { "ASC" };
                let order = match q.sort {
                    ClientSort::Created => format!("created_at {direction}, id {direction}"),
                    ClientSort::Name => format!("name_lower {direction}, id {direction}"),
                };
                let count_sql = format!("SELECT COUNT(*) FROM clients WHERE {filter}");
                let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
                for b in &binds {
                    count = count.bind(b);
                }
                let total = count.fetch_one(&self.pool).await?;
                let page_sql = format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE {filter} ORDER BY {order} \
                     LIMIT ${} OFFSET ${}",
                    binds.len() + 1,
                    binds.len() + 2
                );
                let mut page = sqlx::query(&page_sql);
                for b in &binds {
                    page = page.bind(b);
                }
                let rows = page
                    .bind(i64::from(q.limit))
                    .bind(i64::try_from(q.offset).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                let clients = rows.iter().map(client_from_row).collect::<StoreResult<Vec<_>>>()?;
                Ok((clients, u64::try_from(total).unwrap_or(0)))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn update_client(&self, c: &Client, write_secret: bool, events: &[Event]) -> StoreResult<bool> {
                let secret = if write_secret { ", secret_hash = $25" } else { "" };
                let sql = format!(
                    "UPDATE clients SET name = $1, name_lower = $2, redirect_uris = $3, \
                     post_logout_redirect_uris = $4, grant_types = $5, scope = $6, \
                     token_endpoint_auth_method = $7, first_party = $8, \
                     id_token_signed_response_alg = $9, access_token_signed_response_alg = $10, \
                     always_issue_refresh_token = $11, backchannel_logout_uri = $12, \
                     backchannel_logout_session_required = $13, jwks = $14, jwks_uri = $15, \
                     require_mfa = $16, updated_at = $17, require_par = $19, logo_uri = $20, \
                     client_uri = $21, application_type = $22, resources = $23, \
                     dpop_bound_access_tokens = $24{secret} WHERE id = $18"
                );
                let mut query = sqlx::query(&sql)
                    .bind(&c.name)
                    .bind(c.name.to_lowercase())
                    .bind(list_to_json(&c.redirect_uris))
                    .bind(list_to_json(&c.post_logout_redirect_uris))
                    .bind(list_to_json(&c.grant_types))
                    .bind(&c.scope)
                    .bind(&c.token_endpoint_auth_method)
                    .bind(c.first_party)
                    .bind(&c.id_token_signed_response_alg)
                    .bind(&c.access_token_signed_response_alg)
                    .bind(c.always_issue_refresh_token)
                    .bind(&c.backchannel_logout_uri)
                    .bind(c.backchannel_logout_session_required)
                    .bind(&c.jwks)
                    .bind(&c.jwks_uri)
                    .bind(c.require_mfa)
                    .bind(c.updated_at)
                    .bind(&c.id)
                    .bind(c.require_par)
                    .bind(&c.logo_uri)
                    .bind(&c.client_uri)
                    .bind(&c.application_type)
                    .bind(list_to_json(&c.resources))
                    .bind(c.dpop_bound_access_tokens);
                if write_secret {
                    query = query.bind(&c.secret_hash);
                }
                execute_one_with_events(&self.writer, query, events).await
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn set_client_disabled(
                &self,
                id: &str,
                disabled: bool,
                now: Timestamp,
                events: &[Event],
            ) -> StoreResult<bool> {
                let query = sqlx::query(
                    "UPDATE clients SET disabled = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(disabled)
                .bind(now)
                .bind(id);
                execute_one_with_events(&self.writer, query, events).await
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn revoke_client_grants(&self, id: &str, now: Timestamp) -> StoreResult<Vec<String>> {
                let mut tx = self.writer.begin().await?;
                let jtis = revoke_grants_of(&mut tx, None, id, now).await?;
                tx.commit().await?;
                Ok(jtis)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn set_client_secret(
                &self,
                id: &str,
                secret_hash: &str,
                now: Timestamp,
                events: &[Event],
            ) -> StoreResult<bool> {
                let query = sqlx::query(
                    "UPDATE clients SET secret_hash = $1, updated_at = $2 \
                     WHERE id = $3 AND secret_hash IS NOT NULL",
                )
                .bind(secret_hash)
                .bind(now)
                .bind(id);
                execute_one_with_events(&self.writer, query, events).await
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn user_sessions(
                &self,
                user_id: Uuid,
                now: Timestamp,
                seen_after: Timestamp,
            ) -> StoreResult<Vec<BrowserSession>> {
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM browser_sessions \
                     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                     AND last_seen_at > $3 ORDER BY last_seen_at DESC, id_hash"
                );
                let rows = sqlx::query(&sql)
                    .bind(user_id)
                    .bind(now)
                    .bind(seen_after)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(session_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn session_by_sid(&self, sid: &str) -> StoreResult<Option<BrowserSession>> {
                if sid.is_empty() {
                    return Ok(None);
                }
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM browser_sessions \
                     WHERE sid = $1 AND revoked_at IS NULL"
                );
                let row = sqlx::query(&sql).bind(sid).fetch_optional(&self.pool).await?;
                row.as_ref().map(session_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn user_consents(&self, user_id: Uuid) -> StoreResult<Vec<ConsentRecord>> {
                let sql = format!(
                    "{CONSENT_SELECT} WHERE c.user_id = $1 ORDER BY c.updated_at DESC, c.client_id"
                );
                let rows = sqlx::query(&sql).bind(user_id).fetch_all(&self.pool).await?;
                rows.iter().map(consent_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_consent_record(&self, id: Uuid) -> StoreResult<Option<ConsentRecord>> {
                let sql = format!("{CONSENT_SELECT} WHERE c.id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(consent_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn revoke_consent(
                &self,
                id: Uuid,
                owner: Option<Uuid>,
                now: Timestamp,
            ) -> StoreResult<Option<RevokedConsent>> {
                let mut tx = self.writer.begin().await?;
                let sql = if owner.is_some() {
                    "DELETE FROM consents WHERE id = $1 AND user_id = $2 \
                     RETURNING user_id, client_id, scope"
                } else {
                    "DELETE FROM consents WHERE id = $1 RETURNING user_id, client_id, scope"
                };
                let mut query = sqlx::query_as::<_, (Uuid, String, String)>(sql).bind(id);
                if let Some(o) = owner {
                    query = query.bind(o);
                }
                let Some((user_id, client_id, scope)) = query.fetch_optional(&mut *tx).await? else {
                    return Ok(None);
                };
                let jtis = revoke_grants_of(&mut tx, Some(user_id), &client_id, now).await?;
                tx.commit().await?;
                Ok(Some(RevokedConsent {
                    user_id,
                    client_id,
                    scope,
                    jtis,
                }))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn admin_counts(
                &self,
                now: Timestamp,
                seen_after: Timestamp,
            ) -> StoreResult<AdminCounts> {
                let (users, clients, live): (i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM users WHERE deleted_at IS NULL), \
                     (SELECT COUNT(*) FROM clients), \
                     (SELECT COUNT(*) FROM browser_sessions \
                       WHERE revoked_at IS NULL AND expires_at > $1 AND last_seen_at > $2)",
                )
                .bind(now)
                .bind(seen_after)
                .fetch_one(&self.pool)
                .await?;
                let n = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok(AdminCounts {
                    users: n(users),
                    clients: n(clients),
                    live_sessions: n(live),
                })
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn count_audit(
                &self,
                kinds: &[&str],
                since: Timestamp,
            ) -> StoreResult<Vec<(String, u64)>> {
                if kinds.is_empty() {
                    return Ok(Vec::new());
                }
                let marks: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 2)).collect();
                let sql = format!(
                    "SELECT kind, COUNT(*) FROM audit_events WHERE at >= $1 AND kind IN ({}) \
                     GROUP BY kind",
                    marks.join(", ")
                );
                let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(since);
                for k in kinds {
                    query = query.bind(*k);
                }
                let rows = query.fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
                    .collect())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn refresh_search_names(&self) -> StoreResult<u64> {
                // Rows whose name has a byte outside printable ASCII: only those can differ.
                let non_ascii = if $backend == "postgres" {
                    "name ~ '[^ -~]'"
                } else {
                    "name GLOB '*[^ -~]*'"
                };
                let mut changed = 0;
                let sql = format!(
                    "SELECT id, name, name_lower FROM users WHERE name IS NOT NULL AND {non_ascii}"
                );
                let users: Vec<(Uuid, String, Option<String>)> =
                    sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                for (id, name, stored) in users {
                    let wanted = name.to_lowercase();
                    if stored.as_deref() != Some(wanted.as_str()) {
                        sqlx::query("UPDATE users SET name_lower = $1 WHERE id = $2")
                            .bind(&wanted)
                            .bind(id)
                            .execute(&self.writer)
                            .await?;
                        changed += 1;
                    }
                }
                let sql = format!("SELECT id, name, name_lower FROM clients WHERE {non_ascii}");
                let clients: Vec<(String, String, String)> =
                    sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                for (id, name, stored) in clients {
                    let wanted = name.to_lowercase();
                    if stored != wanted {
                        sqlx::query("UPDATE clients SET name_lower = $1 WHERE id = $2")
                            .bind(&wanted)
                            .bind(&id)
                            .execute(&self.writer)
                            .await?;
                        changed += 1;
                    }
                }
                Ok(changed)
            }
        }
    };
}

pub(super) use impl_sql_admin_store;
