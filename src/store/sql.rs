//! The SQL shared by both adapters. Both dialects accept `$N` placeholders, `RETURNING`,
//! partial unique indexes and the column types chosen in the migrations, so the statements
//! are written once and instantiated per database by `impl_sql_store!`; an adapter writes its
//! own SQL only where the dialects really differ (connection set-up).
//! Each store method runs in a span named after it (`db.system` = the backend), so exported
//! traces show every database call of a request; a new method takes the same attribute.

use super::{StoreError, StoreResult};

pub(super) fn list_to_json(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

pub(super) fn list_from_json(column: &str, raw: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use async_trait::async_trait;
        use sqlx::Row;
        use uuid::Uuid;

        use $crate::store::sql::{list_from_json, list_to_json};
        use $crate::store::{
            AuditEvent, AuditStore, AuthorizationCode, BrowserSession, Client, ClientStore,
            CodeStore, ConsentStore, DenyListStore, KeyState, KeyStore, RefreshStore,
            RefreshGrant, RefreshToken, SessionStore,
            SigningKeyRecord, Store, StoreError, StoreResult, Timestamp, User, UserStore,
        };

        type DbRow = <$db as sqlx::Database>::Row;

        /// The one INSERT of a user, on a pool or inside a transaction.
        async fn insert_user<'e, E>(executor: E, u: &User) -> StoreResult<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO users (id, email, email_lower, email_verified, name, \
                 password_hash, roles, disabled, created_at, updated_at, deleted_at, name_lower) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(u.id)
            .bind(&u.email)
            .bind(User::email_key(&u.email))
            .bind(u.email_verified)
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(list_to_json(&u.roles))
            .bind(u.disabled)
            .bind(u.created_at)
            .bind(u.updated_at)
            .bind(u.deleted_at)
            .bind(u.name.as_deref().map(str::to_lowercase))
            .execute(executor)
            .await?;
            Ok(())
        }

        const CLIENT_COLUMNS: &str = "id, name, secret_hash, redirect_uris, \
            post_logout_redirect_uris, grant_types, scope, token_endpoint_auth_method, \
            first_party, id_token_signed_response_alg, access_token_signed_response_alg, \
            always_issue_refresh_token, backchannel_logout_uri, \
            backchannel_logout_session_required, jwks, jwks_uri, require_mfa, disabled, created_at, \
            updated_at, require_par, dynamic, logo_uri, client_uri, application_type, resources, \
            dpop_bound_access_tokens";
        const REFRESH_COLUMNS: &str = "id, token_hash, family_id, parent_id, generation, client_id, \
            user_id, scope, session_id_hash, auth_code_hash, user_agent, auth_time, created_at, \
            expires_at, family_expires_at, used_at, revoked_at, access_token_jti, \
            successor_sealed, reuse_count, amr, acr, resources, dpop_jkt";
        const SESSION_COLUMNS: &str = "id_hash, sid, user_id, auth_time, amr, acr, user_agent, ip, \
            created_at, last_seen_at, expires_at, revoked_at";
        const CODE_COLUMNS: &str = "code_hash, client_id, user_id, session_id_hash, redirect_uri, \
            redirect_uri_given, response_mode, scope, nonce, code_challenge, \
            code_challenge_method, auth_time, amr, acr, created_at, expires_at, used_at, \
            access_token_jti, resources, dpop_jkt";
        const USER_COLUMNS: &str = "id, email, email_verified, name, password_hash, roles, \
            disabled, created_at, updated_at, deleted_at";
        const KEY_COLUMNS: &str =
            "kid, alg, state, public_jwk, private_key, created_at, activated_at, retired_at";

        fn client_from_row(row: &DbRow) -> StoreResult<Client> {
            Ok(Client {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                secret_hash: row.try_get("secret_hash")?,
                redirect_uris: list_from_json("redirect_uris", row.try_get("redirect_uris")?)?,
                post_logout_redirect_uris: list_from_json(
                    "post_logout_redirect_uris",
                    row.try_get("post_logout_redirect_uris")?,
                )?,
                grant_types: list_from_json("grant_types", row.try_get("grant_types")?)?,
                scope: row.try_get("scope")?,
                token_endpoint_auth_method: row.try_get("token_endpoint_auth_method")?,
                first_party: row.try_get("first_party")?,
                id_token_signed_response_alg: row.try_get("id_token_signed_response_alg")?,
                access_token_signed_response_alg: row.try_get("access_token_signed_response_alg")?,
                always_issue_refresh_token: row.try_get("always_issue_refresh_token")?,
                backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
                backchannel_logout_session_required: row.try_get("backchannel_logout_session_required")?,
                jwks: row.try_get("jwks")?,
                jwks_uri: row.try_get("jwks_uri")?,
                require_mfa: row.try_get("require_mfa")?,
                disabled: row.try_get("disabled")?,
                require_par: row.try_get("require_par")?,
                dynamic: row.try_get("dynamic")?,
                logo_uri: row.try_get("logo_uri")?,
                client_uri: row.try_get("client_uri")?,
                application_type: row.try_get("application_type")?,
                resources: list_from_json("resources", row.try_get("resources")?)?,
                dpop_bound_access_tokens: row.try_get("dpop_bound_access_tokens")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        /// The names `user_from_columns` reads, in USER_COLUMNS order.
        const USER_NAMES: [&str; 10] = [
            "id", "email", "email_verified", "name", "password_hash", "roles", "disabled",
            "created_at", "updated_at", "deleted_at",
        ];
        /// The same columns as `get_refresh_grant` aliases them beside a refresh token's.
        const JOINED_USER_NAMES: [&str; 10] = [
            "u_id", "u_email", "u_email_verified", "u_name", "u_password_hash", "u_roles",
            "u_disabled", "u_created_at", "u_updated_at", "u_deleted_at",
        ];

        fn user_from_row(row: &DbRow) -> StoreResult<User> {
            user_from_columns(row, &USER_NAMES)
        }

        fn user_from_columns(row: &DbRow, c: &[&str; 10]) -> StoreResult<User> {
            let [id, email, email_verified, name, password_hash, roles, disabled, created_at, updated_at, deleted_at] = *c;
            Ok(User {
                id: row.try_get(id)?,
                email: row.try_get(email)?,
                email_verified: row.try_get(email_verified)?,
                name: row.try_get(name)?,
                password_hash: row.try_get(password_hash)?,
                roles: list_from_json("roles", row.try_get(roles)?)?,
                disabled: row.try_get(disabled)?,
                created_at: row.try_get(created_at)?,
                updated_at: row.try_get(updated_at)?,
                deleted_at: row.try_get(deleted_at)?,
            })
        }

        fn session_from_row(row: &DbRow) -> StoreResult<BrowserSession> {
            Ok(BrowserSession {
                id_hash: row.try_get("id_hash")?,
                sid: row.try_get("sid")?,
                user_id: row.try_get("user_id")?,
                auth_time: row.try_get("auth_time")?,
                amr: list_from_json("amr", row.try_get("amr")?)?,
                acr: row.try_get("acr")?,
                user_agent: row.try_get("user_agent")?,
                ip: row.try_get("ip")?,
                created_at: row.try_get("created_at")?,
                last_seen_at: row.try_get("last_seen_at")?,
                expires_at: row.try_get("expires_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        fn code_from_row(row: &DbRow) -> StoreResult<AuthorizationCode> {
            Ok(AuthorizationCode {
                code_hash: row.try_get("code_hash")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                session_id_hash: row.try_get("session_id_hash")?,
                redirect_uri: row.try_get("redirect_uri")?,
                redirect_uri_given: row.try_get("redirect_uri_given")?,
                response_mode: row.try_get("response_mode")?,
                scope: row.try_get("scope")?,
                nonce: row.try_get("nonce")?,
                code_challenge: row.try_get("code_challenge")?,
                code_challenge_method: row.try_get("code_challenge_method")?,
                auth_time: row.try_get("auth_time")?,
                amr: list_from_json("amr", row.try_get("amr")?)?,
                acr: row.try_get("acr")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
                access_token_jti: row.try_get("access_token_jti")?,
                resources: list_from_json("resources", row.try_get("resources")?)?,
                dpop_jkt: row.try_get("dpop_jkt")?,
            })
        }

        fn refresh_from_row(row: &DbRow) -> StoreResult<RefreshToken> {
            Ok(RefreshToken {
                id: row.try_get("id")?,
                token_hash: row.try_get("token_hash")?,
                family_id: row.try_get("family_id")?,
                parent_id: row.try_get("parent_id")?,
                generation: row.try_get("generation")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                scope: row.try_get("scope")?,
                session_id_hash: row.try_get("session_id_hash")?,
                auth_code_hash: row.try_get("auth_code_hash")?,
                user_agent: row.try_get("user_agent")?,
                auth_time: row.try_get("auth_time")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                family_expires_at: row.try_get("family_expires_at")?,
                used_at: row.try_get("used_at")?,
                revoked_at: row.try_get("revoked_at")?,
                access_token_jti: row.try_get("access_token_jti")?,
                successor_sealed: row.try_get("successor_sealed")?,
                reuse_count: row.try_get("reuse_count")?,
                amr: list_from_json("amr", row.try_get("amr")?)?,
                acr: row.try_get("acr")?,
                resources: list_from_json("resources", row.try_get("resources")?)?,
                dpop_jkt: row.try_get("dpop_jkt")?,
            })
        }

        async fn insert_refresh<'c, E>(executor: E, t: &RefreshToken) -> StoreResult<()>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let sql = format!(
                "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, \
                 $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
            );
            sqlx::query(&sql)
                .bind(t.id)
                .bind(&t.token_hash)
                .bind(t.family_id)
                .bind(t.parent_id)
                .bind(t.generation)
                .bind(&t.client_id)
                .bind(t.user_id)
                .bind(&t.scope)
                .bind(&t.session_id_hash)
                .bind(&t.auth_code_hash)
                .bind(&t.user_agent)
                .bind(t.auth_time)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.family_expires_at)
                .bind(t.used_at)
                .bind(t.revoked_at)
                .bind(&t.access_token_jti)
                .bind(&t.successor_sealed)
                .bind(t.reuse_count)
                .bind(list_to_json(&t.amr))
                .bind(&t.acr)
                .bind(list_to_json(&t.resources))
                .bind(&t.dpop_jkt)
                .execute(executor)
                .await?;
            Ok(())
        }

        fn key_from_row(row: &DbRow) -> StoreResult<SigningKeyRecord> {
            let state: String = row.try_get("state")?;
            Ok(SigningKeyRecord {
                kid: row.try_get("kid")?,
                alg: row.try_get("alg")?,
                state: state.parse().map_err(StoreError::Corrupt)?,
                public_jwk: row.try_get("public_jwk")?,
                private_key: row.try_get("private_key")?,
                created_at: row.try_get("created_at")?,
                activated_at: row.try_get("activated_at")?,
                retired_at: row.try_get("retired_at")?,
            })
        }

        fn audit_from_row(row: &DbRow) -> StoreResult<AuditEvent> {
            let detail: String = row.try_get("detail")?;
            Ok(AuditEvent {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                kind: row.try_get("kind")?,
                actor: row.try_get("actor")?,
                subject: row.try_get("subject")?,
                client_id: row.try_get("client_id")?,
                ip: row.try_get("ip")?,
                user_agent: row.try_get("user_agent")?,
                trace_id: row.try_get("trace_id")?,
                detail: serde_json::from_str(&detail)
                    .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
            })
        }

        async fn insert_key<'c, E>(executor: E, key: &SigningKeyRecord) -> StoreResult<()>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, state, public_jwk, private_key, \
                 created_at, activated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(key.state.as_str())
            .bind(&key.public_jwk)
            .bind(&key.private_key)
            .bind(key.created_at)
            .bind(key.activated_at)
            .bind(key.retired_at)
            .execute(executor)
            .await?;
            Ok(())
        }

        #[async_trait]
        impl ClientStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_client(&self, c: &Client, events: &[Event]) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "INSERT INTO clients (id, name, secret_hash, redirect_uris, \
                     post_logout_redirect_uris, grant_types, scope, token_endpoint_auth_method, \
                     first_party, id_token_signed_response_alg, access_token_signed_response_alg, \
                     always_issue_refresh_token, backchannel_logout_uri, \
                     backchannel_logout_session_required, jwks, jwks_uri, require_mfa, created_at, \
                     updated_at, disabled, name_lower, require_par, dynamic, logo_uri, client_uri, \
                     application_type, resources, dpop_bound_access_tokens) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.secret_hash)
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
                .bind(c.created_at)
                .bind(c.updated_at)
                .bind(c.disabled)
                .bind(c.name.to_lowercase())
                .bind(c.require_par)
                .bind(c.dynamic)
                .bind(&c.logo_uri)
                .bind(&c.client_uri)
                .bind(&c.application_type)
                .bind(list_to_json(&c.resources))
                .bind(c.dpop_bound_access_tokens)
                .execute(&mut *tx)
                .await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_client(&self, id: &str) -> StoreResult<Option<Client>> {
                let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(client_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_clients(&self) -> StoreResult<Vec<Client>> {
                let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, id");
                let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
                rows.iter().map(client_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn first_party_client(&self) -> StoreResult<Option<Client>> {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE first_party \
                     AND id <> '{}' ORDER BY created_at, id LIMIT 1",
                    $crate::clients::CONSOLE_CLIENT_ID
                );
                let row = sqlx::query(&sql).fetch_optional(&self.pool).await?;
                row.as_ref().map(client_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn delete_client(&self, id: &str, events: &[Event]) -> StoreResult<bool> {
                let query = sqlx::query("DELETE FROM clients WHERE id = $1").bind(id);
                execute_one_with_events(&self.writer, query, events).await
            }
        }

        #[async_trait]
        impl UserStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_user(&self, u: &User, events: &[Event]) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_user(&mut *tx, u).await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(user_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn find_user_by_email(&self, email_lower: &str) -> StoreResult<Option<User>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_lower = $1");
                let row = sqlx::query(&sql)
                    .bind(email_lower)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_users(&self) -> StoreResult<Vec<User>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, email_lower");
                let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
                rows.iter().map(user_from_row).collect()
            }
        }

        #[async_trait]
        impl KeyStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid");
                let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
                rows.iter().map(key_from_row).collect()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn insert_initial_keys(&self, keys: &[SigningKeyRecord]) -> StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                for key in keys {
                    match insert_key(&mut *tx, key).await {
                        Ok(()) => {}
                        // The partial unique indexes say another instance got there first.
                        Err(StoreError::Conflict(_)) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn rotate_signing_keys(
                &self,
                new_next: &SigningKeyRecord,
                now: Timestamp,
                expected_active: Option<&str>,
                events: &[Event],
            ) -> StoreResult<()> {
                // Writes first: in SQLite a transaction that reads before it writes cannot wait
                // for the write lock (SQLITE_BUSY at once); starting with the UPDATE lets it wait.
                let mut tx = self.writer.begin().await?;
                let retired = sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', retired_at = $1 \
                     WHERE alg = $2 AND state = 'active' AND ($3 IS NULL OR kid = $3)",
                )
                .bind(now)
                .bind(&new_next.alg)
                .bind(expected_active)
                .execute(&mut *tx)
                .await?;
                if expected_active.is_some() && retired.rows_affected() != 1 {
                    return Err(StoreError::Conflict("the active key changed meanwhile".into()));
                }
                let next: Option<String> = sqlx::query_scalar(
                    "SELECT kid FROM signing_keys WHERE alg = $1 AND state = 'next'",
                )
                .bind(&new_next.alg)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(next) = next else {
                    return Err(StoreError::Conflict(format!(
                        "no next {} key to promote",
                        new_next.alg
                    )));
                };
                let promoted = sqlx::query(
                    "UPDATE signing_keys SET state = 'active', activated_at = $1 \
                     WHERE kid = $2 AND state = 'next'",
                )
                .bind(now)
                .bind(&next)
                .execute(&mut *tx)
                .await?;
                if promoted.rows_affected() != 1 {
                    return Err(StoreError::Conflict("a concurrent rotation won".into()));
                }
                let mut record = new_next.clone();
                record.state = KeyState::Next;
                insert_key(&mut *tx, &record).await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn try_lease(
                &self,
                name: &str,
                holder: &str,
                now: Timestamp,
                ttl_secs: i64,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(now + ttl_secs)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn clear_sealed_successors(&self, used_before: Timestamp, batch: u32) -> StoreResult<u64> {
                let done = sqlx::query(
                    "UPDATE refresh_tokens SET successor_sealed = NULL WHERE id IN \
                     (SELECT id FROM refresh_tokens WHERE successor_sealed IS NOT NULL \
                      AND used_at < $1 LIMIT $2)",
                )
                .bind(used_before)
                .bind(i64::from(batch))
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn purge_expired(&self, now: Timestamp, batch: u32) -> StoreResult<u64> {
                let batch = i64::from(batch);
                let statements = [
                    // Codes of live sessions stay: they say which clients back-channel logout
                    // must tell when the session ends.
                    "DELETE FROM authorization_codes WHERE code_hash IN \
                     (SELECT code_hash FROM authorization_codes WHERE expires_at < $1 \
                      AND (session_id_hash IS NULL OR session_id_hash NOT IN \
                       (SELECT id_hash FROM browser_sessions WHERE revoked_at IS NULL AND expires_at >= $1)) \
                      LIMIT $2)",
                    "DELETE FROM browser_sessions WHERE id_hash IN \
                     (SELECT id_hash FROM browser_sessions WHERE expires_at < $1 OR revoked_at < $1 LIMIT $2)",
                    "DELETE FROM refresh_tokens WHERE id IN \
                     (SELECT id FROM refresh_tokens WHERE family_expires_at < $1 LIMIT $2)",
                    "DELETE FROM revoked_access_tokens WHERE jti IN \
                     (SELECT jti FROM revoked_access_tokens WHERE expires_at < $1 LIMIT $2)",
                    "DELETE FROM client_assertion_jtis WHERE (client_id, jti) IN \
                     (SELECT client_id, jti FROM client_assertion_jtis WHERE expires_at < $1 LIMIT $2)",
                    "DELETE FROM account_tokens WHERE token_hash IN \
                     (SELECT token_hash FROM account_tokens \
                      WHERE expires_at < $1 OR used_at IS NOT NULL LIMIT $2)",
                    "DELETE FROM mfa_challenges WHERE id_hash IN \
                     (SELECT id_hash FROM mfa_challenges \
                      WHERE expires_at < $1 OR used_at IS NOT NULL LIMIT $2)",
                    // Spent ones stay until they expire: a reused request_uri is then told so.
                    "DELETE FROM pushed_authorization_requests WHERE uri_hash IN \
                     (SELECT uri_hash FROM pushed_authorization_requests WHERE expires_at < $1 LIMIT $2)",
                    // Kept a day past their end, so a late click is told why it is refused.
                    "DELETE FROM magic_links WHERE token_hash IN \
                     (SELECT token_hash FROM magic_links WHERE expires_at < $1 - 86400 LIMIT $2)",
                    "DELETE FROM dpop_proofs WHERE jti_hash IN \
                     (SELECT jti_hash FROM dpop_proofs WHERE expires_at < $1 LIMIT $2)",
                ];
                let mut removed = 0;
                for sql in statements {
                    let done = sqlx::query(sql).bind(now).bind(batch).execute(&self.writer).await?;
                    removed += done.rows_affected();
                }
                Ok(removed)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn delete_retired_key(&self, kid: &str, events: &[Event]) -> StoreResult<bool> {
                let query = sqlx::query("DELETE FROM signing_keys WHERE kid = $1 AND state = 'retired'")
                    .bind(kid);
                execute_one_with_events(&self.writer, query, events).await
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn purge_retired_keys(&self, before: Timestamp) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM signing_keys WHERE state = 'retired' AND retired_at < $1",
                )
                .bind(before)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_events (id, at, kind, actor, subject, client_id, ip, detail, \
                     user_agent, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(e.id)
                .bind(e.at)
                .bind(&e.kind)
                .bind(&e.actor)
                .bind(&e.subject)
                .bind(&e.client_id)
                .bind(&e.ip)
                .bind(e.detail.to_string())
                .bind(&e.user_agent)
                .bind(&e.trace_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
                let rows = sqlx::query(
                    "SELECT id, at, kind, actor, subject, client_id, ip, detail, user_agent, \
                     trace_id FROM audit_events ORDER BY at DESC, id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(audit_from_row).collect()
            }
        }

        #[async_trait]
        impl SessionStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_session(&self, s: &BrowserSession, events: &[Event]) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "INSERT INTO browser_sessions (id_hash, sid, user_id, auth_time, amr, acr, \
                     user_agent, ip, created_at, last_seen_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&s.id_hash)
                .bind(&s.sid)
                .bind(s.user_id)
                .bind(s.auth_time)
                .bind(list_to_json(&s.amr))
                .bind(&s.acr)
                .bind(&s.user_agent)
                .bind(&s.ip)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(s.revoked_at)
                .execute(&mut *tx)
                .await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_session(&self, id_hash: &str) -> StoreResult<Option<BrowserSession>> {
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM browser_sessions \
                     WHERE id_hash = $1 AND revoked_at IS NULL"
                );
                let row = sqlx::query(&sql).bind(id_hash).fetch_optional(&self.pool).await?;
                row.as_ref().map(session_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn touch_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<()> {
                sqlx::query("UPDATE browser_sessions SET last_seen_at = $1 WHERE id_hash = $2")
                    .bind(now)
                    .bind(id_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn revoke_session(&self, id_hash: &str, now: Timestamp, events: &[Event]) -> StoreResult<bool> {
                let query = sqlx::query(
                    "UPDATE browser_sessions SET revoked_at = $1 \
                     WHERE id_hash = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id_hash);
                execute_one_with_events(&self.writer, query, events).await
            }
        }

        #[async_trait]
        impl CodeStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO authorization_codes ({CODE_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
                );
                sqlx::query(&sql)
                    .bind(&c.code_hash)
                    .bind(&c.client_id)
                    .bind(c.user_id)
                    .bind(&c.session_id_hash)
                    .bind(&c.redirect_uri)
                    .bind(c.redirect_uri_given)
                    .bind(&c.response_mode)
                    .bind(&c.scope)
                    .bind(&c.nonce)
                    .bind(&c.code_challenge)
                    .bind(&c.code_challenge_method)
                    .bind(c.auth_time)
                    .bind(list_to_json(&c.amr))
                    .bind(&c.acr)
                    .bind(c.created_at)
                    .bind(c.expires_at)
                    .bind(c.used_at)
                    .bind(&c.access_token_jti)
                    .bind(list_to_json(&c.resources))
                    .bind(&c.dpop_jkt)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_code(&self, code_hash: &str) -> StoreResult<Option<AuthorizationCode>> {
                let sql = format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = $1");
                let row = sqlx::query(&sql).bind(code_hash).fetch_optional(&self.pool).await?;
                row.as_ref().map(code_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn consume_code(
                &self,
                code_hash: &str,
                now: Timestamp,
                access_token_jti: &str,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE authorization_codes SET used_at = $1, access_token_jti = $2 \
                     WHERE code_hash = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(access_token_jti)
                .bind(code_hash)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn revoke_tokens_from_code(
                &self,
                code_hash: &str,
                now: Timestamp,
            ) -> StoreResult<Vec<String>> {
                let rows = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL \
                     WHERE auth_code_hash = $2 AND revoked_at IS NULL RETURNING access_token_jti",
                )
                .bind(now)
                .bind(code_hash)
                .fetch_all(&self.writer)
                .await?;
                let mut jtis = Vec::new();
                for row in &rows {
                    if let Some(jti) = row.try_get::<Option<String>, _>("access_token_jti")? {
                        jtis.push(jti);
                    }
                }
                Ok(jtis)
            }
        }

        #[async_trait]
        impl ConsentStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_consent(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2",
                )
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn save_consent(
                &self,
                user_id: Uuid,
                client_id: &str,
                scope: &str,
                now: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO consents (user_id, client_id, scope, created_at, updated_at, id) \
                     VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (user_id, client_id) \
                     DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at",
                )
                .bind(user_id)
                .bind(client_id)
                .bind(scope)
                .bind(now)
                .bind(Uuid::now_v7())
                .execute(&self.writer)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl DenyListStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn deny_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn is_access_token_denied(&self, jti: &str) -> StoreResult<bool> {
                let hit: Option<i64> =
                    sqlx::query_scalar("SELECT expires_at FROM revoked_access_tokens WHERE jti = $1")
                        .bind(jti)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(hit.is_some())
            }
        }

        #[async_trait]
        impl RefreshStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_refresh_token(&self, t: &RefreshToken, events: &[Event]) -> StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_refresh(&mut *tx, t).await?;
                insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
                let sql = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1");
                let row = sqlx::query(&sql).bind(token_hash).fetch_optional(&self.pool).await?;
                row.as_ref().map(refresh_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn get_refresh_grant(&self, token_hash: &str) -> StoreResult<Option<RefreshGrant>> {
                // Built once: the statement text is what sqlx caches its prepared statement by.
                static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let sql = SQL.get_or_init(|| {
                    let refresh: Vec<String> =
                        REFRESH_COLUMNS
                            .split(',')
                            .map(|c| format!("t.{0} AS {0}", c.trim()))
                            .collect();
                    let user: Vec<String> = USER_NAMES
                        .iter()
                        .zip(JOINED_USER_NAMES)
                        .map(|(c, alias)| format!("u.{c} AS {alias}"))
                        .collect();
                    format!(
                        "SELECT {}, {}, s.sid AS session_sid FROM refresh_tokens t \
                         LEFT JOIN users u ON u.id = t.user_id \
                         LEFT JOIN browser_sessions s \
                           ON s.id_hash = t.session_id_hash AND s.revoked_at IS NULL \
                         WHERE t.token_hash = $1",
                        refresh.join(", "),
                        user.join(", ")
                    )
                });
                // Read through the writer: the rotation that follows writes through it, and on
                // SQLite a reader connection drops its page cache whenever another connection
                // has written, so a reader would re-read the refresh pages on every rotation.
                let Some(row) = sqlx::query(sql).bind(token_hash).fetch_optional(&self.writer).await? else {
                    return Ok(None);
                };
                let token = refresh_from_row(&row)?;
                let user = match row.try_get::<Option<Uuid>, _>("u_id")? {
                    Some(_) => Some(user_from_columns(&row, &JOINED_USER_NAMES)?),
                    None => None,
                };
                let sid = row.try_get("session_sid")?;
                Ok(Some(RefreshGrant { token, user, sid }))
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn rotate_refresh_token(
                &self,
                old_id: Uuid,
                successor: &RefreshToken,
                sealed_successor: Option<&[u8]>,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                let won = sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $1, successor_sealed = $2 \
                     WHERE id = $3 AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(sealed_successor)
                .bind(old_id)
                .execute(&mut *tx)
                .await?;
                if won.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_refresh(&mut *tx, successor).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn claim_grace_reuse(&self, id: Uuid, max: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE refresh_tokens SET reuse_count = reuse_count + 1 \
                     WHERE id = $1 AND reuse_count < $2 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(max)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn refresh_successor(&self, parent_id: Uuid) -> StoreResult<Option<RefreshToken>> {
                let sql = format!(
                    "SELECT {REFRESH_COLUMNS} FROM refresh_tokens \
                     WHERE parent_id = $1 AND revoked_at IS NULL"
                );
                let row = sqlx::query(&sql).bind(parent_id).fetch_optional(&self.pool).await?;
                row.as_ref().map(refresh_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn revoke_refresh_family(&self, family_id: Uuid, now: Timestamp, events: &[Event]) -> StoreResult<Vec<String>> {
                let mut tx = self.writer.begin().await?;
                let rows = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL \
                     WHERE family_id = $2 AND revoked_at IS NULL RETURNING access_token_jti",
                )
                .bind(now)
                .bind(family_id)
                .fetch_all(&mut *tx)
                .await?;
                // The event tells of a revocation: none when a parallel call did it first.
                if !rows.is_empty() {
                    insert_events(&mut tx, events).await?;
                }
                tx.commit().await?;
                let mut jtis = Vec::new();
                for row in &rows {
                    if let Some(jti) = row.try_get::<Option<String>, _>("access_token_jti")? {
                        jtis.push(jti);
                    }
                }
                Ok(jtis)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn revoke_session_refresh_tokens(
                &self,
                session_id_hash: &str,
                now: Timestamp,
            ) -> StoreResult<Vec<String>> {
                // Scope tokens are space-separated, so padding finds whole tokens only.
                let rows = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL \
                     WHERE session_id_hash = $2 AND revoked_at IS NULL \
                     AND (' ' || scope || ' ') NOT LIKE '% offline_access %' \
                     RETURNING access_token_jti",
                )
                .bind(now)
                .bind(session_id_hash)
                .fetch_all(&self.writer)
                .await?;
                let mut jtis = Vec::new();
                for row in &rows {
                    if let Some(jti) = row.try_get::<Option<String>, _>("access_token_jti")? {
                        jtis.push(jti);
                    }
                }
                // An access token minted straight from a code (no refresh token, e.g. the
                // console's) or from a device approval made in this session is recorded only
                // there: it must be denied too.
                let minted: Vec<String> = sqlx::query_scalar(
                    "SELECT access_token_jti FROM authorization_codes \
                     WHERE session_id_hash = $1 AND access_token_jti IS NOT NULL \
                     UNION ALL SELECT access_token_jti FROM device_grants \
                     WHERE session_id_hash = $1 AND access_token_jti IS NOT NULL",
                )
                .bind(session_id_hash)
                .fetch_all(&self.writer)
                .await?;
                jtis.extend(minted);
                Ok(jtis)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn clients_of_session(&self, session_id_hash: &str) -> StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    // The clients of its codes, and of refresh tokens bound to it without a
                    // code (a device approved in this session, RFC 8628).
                    "SELECT client_id FROM authorization_codes WHERE session_id_hash = $1 \
                     UNION SELECT client_id FROM refresh_tokens WHERE session_id_hash = $1",
                )
                .bind(session_id_hash)
                .fetch_all(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn remember_assertion(
                &self,
                client_id: &str,
                jti: &str,
                expires_at: Timestamp,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING",
                )
                .bind(client_id)
                .bind(jti)
                .bind(expires_at)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            fn pool_stats(&self) -> (u32, usize) {
                self.connection_counts()
            }
        }
    };
}

pub(crate) use impl_sql_store;
