//! The magic-link port: mailed single-use sign-in links, stored as hashes. Spending one is a
//! single conditional update, so two clicks of one link can never both sign in.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, Timestamp};

/// A mailed sign-in link: only the SHA-256 hashes of its token and of the asking browser's
/// nonce are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct MagicLink {
    pub token_hash: String,
    /// The SHA-256 of the nonce in the cookie of the browser that asked for the link.
    pub nonce_hash: String,
    pub user_id: Uuid,
    /// The address the link was mailed to.
    pub email: String,
    /// The authorization request (`/authorize?...`) to continue after the sign-in, or empty.
    pub return_to: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

impl fmt::Debug for MagicLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes are not secrets, but a prefix is all a log needs.
        f.debug_struct("MagicLink")
            .field("token_hash", &self.token_hash.get(..8).unwrap_or(""))
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait MagicLinkStore: Send + Sync {
    async fn create_magic_link(&self, link: &MagicLink) -> StoreResult<()>;
    /// The link with that token hash in any state (spent, expired), to say why it is refused.
    async fn find_magic_link(&self, token_hash: &str) -> StoreResult<Option<MagicLink>>;
    /// In one transaction: spends the link if it is unused, unexpired and was asked for by
    /// the browser whose nonce hashes to `nonce_hash`, and marks its address verified (the
    /// link proved it) while it is still the live, enabled user's. `None`, with nothing
    /// written, otherwise: of two parallel calls, at most one gets the link.
    async fn consume_magic_link(
        &self,
        token_hash: &str,
        nonce_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<MagicLink>>;
}
