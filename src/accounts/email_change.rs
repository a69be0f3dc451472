//! Changing a signed-in person's email address: a link goes to the new address first, and the
//! change happens (in one transaction, if the address is still free) only when it is followed;
//! the previous address is told. Decides when an address may change; never tells whether the
//! new address belongs to someone else.

use uuid::Uuid;

use super::service::{link_hash, parse_email, store_failed, AccountError, RequestMeta};
use super::AccountService;
use crate::store::User;

impl AccountService {
    /// Mails a confirmation link to `new_email` when no account uses it. The answer, the audit
    /// event and the person's data export read the same whether or not it is taken: only the
    /// owner of the new address learns, by the mail, that the change can go ahead.
    #[tracing::instrument(skip_all, fields(user = %user.id))]
    pub async fn request_email_change(
        &self,
        meta: &RequestMeta,
        user: &User,
        new_email: &str,
    ) -> Result<(), AccountError> {
        let email = parse_email(new_email)?;
        let key = User::email_key(email.as_str());
        if key == User::email_key(&user.email) {
            return Err(AccountError::invalid(
                "invalid_email",
                "that already is your address",
            ));
        }
        // Deleted accounts keep their address (nobody may take it over), so they count too.
        let taken = self
            .store
            .find_user_by_email(&key)
            .await
            .map_err(store_failed)?
            .is_some();
        if !taken && self.mail_budget(email.as_str()).await {
            self.send_email_change(user, email.as_str()).await?;
        }
        let mut event = self.audit_event("user.email_change_requested", meta);
        event.actor = Some(user.id.to_string());
        event.subject = Some(user.id.to_string());
        event.detail = serde_json::json!({"to": email.as_str()});
        self.record(event).await;
        Ok(())
    }

    /// Spends an email-change link: the account takes the address the link was mailed to (now
    /// verified), every other link of the account is spent, and the previous address is told.
    /// A link that is spent, expired, or whose address was taken meanwhile is `InvalidToken`.
    #[tracing::instrument(skip_all)]
    pub async fn confirm_email_change(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> Result<Uuid, AccountError> {
        let hash = link_hash(token)?;
        let now = self.clock.now();
        let link = self
            .store
            .get_account_token(&hash, crate::store::TokenPurpose::EmailChange, now)
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::InvalidToken)?;
        let updated = self
            .event(crate::events::EventType::UserUpdated, meta)
            .subject(link.user_id)
            .actor(Some(link.user_id))
            .data(serde_json::json!({"changed": ["email"], "email": link.email}));
        let changed = self
            .store
            .change_email(&hash, now, &[updated])
            .await
            .map_err(store_failed)?
            .ok_or(AccountError::InvalidToken)?;
        let mut event = self.audit_event("user.email_changed", meta);
        event.actor = Some(changed.user_id.to_string());
        event.subject = Some(changed.user_id.to_string());
        event.detail = serde_json::json!({"from": changed.from, "to": changed.to});
        self.record(event).await;
        // The change stands even if the notice cannot be rendered (that failure is logged).
        let _ = self.send_email_changed(&changed.from, &changed.to);
        Ok(changed.user_id)
    }
}
