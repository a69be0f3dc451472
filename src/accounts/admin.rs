//! Administration of users: who may see and change whom, profile and role updates, disabling
//! and soft delete. Decides what an actor may change; never lets a non-admin touch roles or
//! flags, and never hard-deletes a row (the address stays taken).

use uuid::Uuid;

use super::service::{is_admin, parse_name, store_failed, AccountError, RequestMeta};
use super::{AccountService, Role};
use crate::events::EventType;
use crate::store::User;

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub email_verified: Option<bool>,
}

impl UserPatch {
    fn admin_only(&self) -> bool {
        self.roles.is_some() || self.disabled.is_some() || self.email_verified.is_some()
    }
}

impl AccountService {
    /// A live user by id, as `actor` may see it: admins see anyone, others only themselves.
    pub async fn visible_user(&self, actor: &User, id: Uuid) -> Result<User, AccountError> {
        if actor.id != id && !is_admin(actor) {
            return Err(AccountError::Forbidden);
        }
        self.store
            .get_user(id)
            .await
            .map_err(store_failed)?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(AccountError::NotFound)
    }

    /// Applies `patch`: a user may change their own profile fields (the name); roles and flags
    /// need the admin role. Disabling a user signs them out everywhere.
    pub async fn update_user(
        &self,
        meta: &RequestMeta,
        actor: &User,
        id: Uuid,
        patch: UserPatch,
    ) -> Result<User, AccountError> {
        if patch.admin_only() && !is_admin(actor) {
            return Err(AccountError::Forbidden);
        }
        let user = self.visible_user(actor, id).await?;
        self.apply_patch(meta, &actor.id.to_string(), user, patch)
            .await
    }

    /// [`AccountService::update_user`] by an operator without an account of their own (the
    /// command line): `actor` names them in the audit trail.
    pub async fn update_user_as_operator(
        &self,
        meta: &RequestMeta,
        actor: &str,
        id: Uuid,
        patch: UserPatch,
    ) -> Result<User, AccountError> {
        let user = self
            .store
            .get_user(id)
            .await
            .map_err(store_failed)?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(AccountError::NotFound)?;
        self.apply_patch(meta, actor, user, patch).await
    }

    /// Writes `patch` to `user`, ends their sessions when it disables them, and audits it.
    async fn apply_patch(
        &self,
        meta: &RequestMeta,
        actor: &str,
        mut user: User,
        patch: UserPatch,
    ) -> Result<User, AccountError> {
        let before = user.clone();
        let before_roles = user.roles.clone();
        if let Some(name) = patch.name {
            user.name = parse_name(name.as_deref())?;
        }
        if let Some(roles) = patch.roles {
            let mut parsed = Vec::new();
            for raw in roles {
                let role = Role::parse(&raw)
                    .map_err(|e| AccountError::invalid("invalid_role", e.to_string()))?;
                if !self
                    .settings
                    .accounts
                    .roles
                    .iter()
                    .any(|r| r == role.as_str())
                {
                    return Err(AccountError::invalid(
                        "invalid_role",
                        format!(
                            "unknown role {:?}; the configured roles are: {}",
                            role.as_str(),
                            self.settings.accounts.roles.join(", ")
                        ),
                    ));
                }
                if !parsed.contains(&raw) {
                    parsed.push(raw);
                }
            }
            user.roles = parsed;
        }
        let disabling = patch.disabled == Some(true) && !user.disabled;
        if let Some(disabled) = patch.disabled {
            user.disabled = disabled;
        }
        if let Some(verified) = patch.email_verified {
            user.email_verified = verified;
        }
        user.updated_at = self.clock.now();
        let changed: Vec<&str> = [
            (before.name != user.name, "name"),
            (before.roles != user.roles, "roles"),
            (before.disabled != user.disabled, "disabled"),
            (
                before.email_verified != user.email_verified,
                "emailVerified",
            ),
        ]
        .into_iter()
        .filter_map(|(yes, field)| yes.then_some(field))
        .collect();
        let updated = self
            .event(EventType::UserUpdated, meta)
            .subject(user.id)
            .actor(Uuid::parse_str(actor).ok())
            .data(serde_json::json!({"changed": changed}));
        let events = if changed.is_empty() {
            vec![]
        } else {
            vec![updated]
        };
        let written = self
            .store
            .update_user(&user, &events)
            .await
            .map_err(store_failed)?;
        if !written {
            return Err(AccountError::NotFound);
        }
        if disabling {
            self.sessions
                .end_all_sessions(user.id, user.updated_at)
                .await
                .map_err(store_failed)?;
        }
        let mut event = self.audit_event("user.updated", meta);
        event.actor = Some(actor.to_string());
        event.subject = Some(user.id.to_string());
        event.detail = serde_json::json!({"disabled": user.disabled});
        if before_roles != user.roles {
            event.kind = "user.roles_changed".into();
            event.detail = serde_json::json!({"from": before_roles, "to": user.roles});
        }
        self.record(event).await;
        Ok(user)
    }

    /// Soft delete (admin only): the row stays with `deleted_at` so the address cannot be
    /// registered by someone else; sessions, refresh tokens, access tokens and links die now.
    pub async fn delete_user(
        &self,
        meta: &RequestMeta,
        actor: &User,
        id: Uuid,
    ) -> Result<(), AccountError> {
        if !is_admin(actor) {
            return Err(AccountError::Forbidden);
        }
        self.soft_delete(meta, actor, id).await
    }

    /// The same soft delete for a person deleting their own account (after the caller's
    /// [`AccountService::reauthenticate`]); audited with the person as actor.
    pub async fn delete_own_account(
        &self,
        meta: &RequestMeta,
        user: &User,
    ) -> Result<(), AccountError> {
        self.soft_delete(meta, user, user.id).await
    }

    async fn soft_delete(
        &self,
        meta: &RequestMeta,
        actor: &User,
        id: Uuid,
    ) -> Result<(), AccountError> {
        let deleted = self
            .event(EventType::UserDeleted, meta)
            .subject(id)
            .actor(Some(actor.id));
        let jtis = self
            .store
            .soft_delete_user(id, self.clock.now(), &[deleted])
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::NotFound)?;
        self.sessions.deny_access_tokens(jtis).await;
        let mut event = self.audit_event("user.deleted", meta);
        event.actor = Some(actor.id.to_string());
        event.subject = Some(id.to_string());
        event.detail = serde_json::json!({"by_owner": actor.id == id});
        self.record(event).await;
        Ok(())
    }
}
