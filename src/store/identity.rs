//! The identity port: who a person is at an upstream provider. A returning upstream user is
//! found by (provider, subject) alone — never by email, which upstreams let people change.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, Timestamp, User};

/// An upstream account linked to a user: `subject` is the upstream's `sub` (or its user id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// The `[[upstream]]` entry's `id`.
    pub provider: String,
    pub subject: String,
    pub user_id: Uuid,
    /// The upstream's address and name, as last seen (shown on the account pages).
    pub email: Option<String>,
    pub name: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// Why a link was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// That upstream account already signs another user (or this one) in.
    IdentityTaken,
    /// The user already has an identity at that provider.
    ProviderTaken,
    /// The user is gone or disabled.
    NoUser,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn find_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> StoreResult<Option<UserIdentity>>;
    /// A user's identities, oldest first.
    async fn identities_of(&self, user_id: Uuid) -> StoreResult<Vec<UserIdentity>>;
    /// Links `identity` to its live, enabled user; refused (nothing written) when the
    /// upstream account or the provider slot is taken.
    async fn link_identity(&self, identity: &UserIdentity) -> StoreResult<Result<(), LinkRefusal>>;
    /// In one transaction: a new account and its first identity (JIT provisioning), so a
    /// failure leaves neither. A conflict (the address or the identity exists) writes nothing.
    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &UserIdentity,
        events: &[crate::events::Event],
    ) -> StoreResult<()>;
    /// A sign-in through the identity: when, and the upstream's current address and name.
    async fn touch_identity(
        &self,
        provider: &str,
        subject: &str,
        email: Option<&str>,
        name: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Removes the user's identity at `provider` unless it is their last way to sign in (no
    /// password, no passkey, no other identity): checked and done in one transaction that
    /// locks the user's row, so two parallel unlinks cannot both take the last two.
    /// `Ok(None)`: there was no such identity; `Ok(Some(false))`: refused as the last one.
    async fn unlink_identity(
        &self,
        user_id: Uuid,
        provider: &str,
        now: Timestamp,
    ) -> StoreResult<Option<bool>>;
}
