//! The magic-link statements shared by both adapters (see `sql.rs` for why one SQL body serves
//! both dialects). Spending a link is one conditional UPDATE whose RETURNING says who won.

macro_rules! impl_sql_magic_link_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::store::{MagicLink, MagicLinkStore};

        const MAGIC_LINK_COLUMNS: &str = "token_hash, nonce_hash, user_id, email, return_to, \
            created_at, expires_at, used_at";

        fn magic_link_from_row(row: &DbRow) -> StoreResult<MagicLink> {
            Ok(MagicLink {
                token_hash: row.try_get("token_hash")?,
                nonce_hash: row.try_get("nonce_hash")?,
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                return_to: row.try_get("return_to")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
            })
        }

        #[async_trait]
        impl MagicLinkStore for $store {
            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn create_magic_link(&self, link: &MagicLink) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO magic_links (token_hash, nonce_hash, user_id, email, return_to, \
                     created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&link.token_hash)
                .bind(&link.nonce_hash)
                .bind(link.user_id)
                .bind(&link.email)
                .bind(&link.return_to)
                .bind(link.created_at)
                .bind(link.expires_at)
                .bind(link.used_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn find_magic_link(&self, token_hash: &str) -> StoreResult<Option<MagicLink>> {
                let sql =
                    format!("SELECT {MAGIC_LINK_COLUMNS} FROM magic_links WHERE token_hash = $1");
                let row = sqlx::query(&sql)
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(magic_link_from_row).transpose()
            }

            #[tracing::instrument(skip_all, fields(db.system = $backend, otel.kind = "client"))]
            async fn consume_magic_link(
                &self,
                token_hash: &str,
                nonce_hash: &str,
                now: Timestamp,
            ) -> StoreResult<Option<MagicLink>> {
                let mut tx = self.writer.begin().await?;
                let sql = format!(
                    "UPDATE magic_links SET used_at = $1 WHERE token_hash = $2 \
                     AND nonce_hash = $3 AND used_at IS NULL AND expires_at > $1 \
                     RETURNING {MAGIC_LINK_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(now)
                    .bind(token_hash)
                    .bind(nonce_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(link) = row.as_ref().map(magic_link_from_row).transpose()? else {
                    return Ok(None);
                };
                // The link proves the address it was mailed to, and only while it is the
                // user's (an address changed meanwhile makes the link worthless).
                let done = sqlx::query(
                    "UPDATE users SET email_verified = TRUE, \
                     updated_at = CASE WHEN email_verified THEN updated_at ELSE $1 END \
                     WHERE id = $2 AND email_lower = $3 AND deleted_at IS NULL \
                     AND disabled = FALSE",
                )
                .bind(now)
                .bind(link.user_id)
                .bind(User::email_key(&link.email))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                tx.commit().await?;
                Ok(Some(link))
            }
        }
    };
}

pub(super) use impl_sql_magic_link_store;
