//! The account mails: verification links, reset links, email-change links and the note to
//! the previous address, and the note to an owner whose address someone tried to register
//! again. Decides what each mail says and how long its link
//! lives; never sends on the request's time (delivery is queued) and never stores a link.

use askama::Template;

use super::service::AccountError;
use super::AccountService;
use crate::mail::{send_later, OutgoingMail};
use crate::store::{TokenPurpose, User};

#[derive(Template)]
#[template(path = "email/verify.txt")]
struct VerifyText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "email/verify.html")]
struct VerifyHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
    color: &'a str,
}

#[derive(Template)]
#[template(path = "email/reset.txt")]
struct ResetText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "email/reset.html")]
struct ResetHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
    valid_for: &'a str,
    color: &'a str,
}

#[derive(Template)]
#[template(path = "email/exists.txt")]
struct ExistsText<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/exists.html")]
struct ExistsHtml<'a> {
    product: &'a str,
    email: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/email_change.txt")]
struct EmailChangeText<'a> {
    product: &'a str,
    email: &'a str,
    old: &'a str,
    link: &'a str,
    valid_for: &'a str,
}

#[derive(Template)]
#[template(path = "email/email_change.html")]
struct EmailChangeHtml<'a> {
    product: &'a str,
    email: &'a str,
    old: &'a str,
    link: &'a str,
    valid_for: &'a str,
    color: &'a str,
}

#[derive(Template)]
#[template(path = "email/email_changed.txt")]
struct EmailChangedText<'a> {
    product: &'a str,
    email: &'a str,
    old: &'a str,
}

#[derive(Template)]
#[template(path = "email/email_changed.html")]
struct EmailChangedHtml<'a> {
    product: &'a str,
    email: &'a str,
    old: &'a str,
}

#[derive(Template)]
#[template(path = "email/security.txt")]
struct SecurityText<'a> {
    what: &'a str,
    email: &'a str,
}

#[derive(Template)]
#[template(path = "email/security.html")]
struct SecurityHtml<'a> {
    product: &'a str,
    what: &'a str,
    email: &'a str,
}

impl AccountService {
    /// Tells the owner of an account that its sign-in methods changed (a factor added or
    /// removed, a recovery code used), so a stranger's change does not go unnoticed.
    pub fn send_security_notice(&self, user: &User, what: &str) {
        let b = &self.settings.branding;
        let (Ok(text), Ok(html)) = (
            render(&SecurityText {
                what,
                email: &user.email,
            }),
            render(&SecurityHtml {
                product: &b.product_name,
                what,
                email: &user.email,
            }),
        ) else {
            return;
        };
        let subject = format!("Security change on your {} account", b.product_name);
        self.deliver(&user.email, subject, text, html);
    }

    pub(super) fn deliver(&self, to: &str, subject: String, text: String, html: String) {
        send_later(
            self.mailer.clone(),
            OutgoingMail {
                to: to.to_string(),
                subject,
                text,
                html,
            },
        );
    }

    /// Stores a new link token for the address `to` and mails the link there; `compose` renders
    /// (subject, text, html) from the link and its lifetime in words.
    #[allow(clippy::too_many_arguments)] // the facts of one link
    async fn send_link(
        &self,
        user: &User,
        to: &str,
        purpose: TokenPurpose,
        ttl: u64,
        path: &str,
        compose: impl FnOnce(&str, &str) -> Result<(String, String, String), AccountError>,
    ) -> Result<(), AccountError> {
        let value = self.new_token(user, to, purpose, ttl).await?;
        let link = format!("{}{path}?token={value}", self.settings.issuer);
        let (subject, text, html) = compose(&link, &human_duration(ttl))?;
        self.deliver(to, subject, text, html);
        Ok(())
    }

    pub(super) async fn send_verification(&self, user: &User) -> Result<(), AccountError> {
        let ttl = self.settings.accounts.verify_email_ttl_secs;
        let b = &self.settings.branding;
        self.send_link(
            user,
            &user.email,
            TokenPurpose::VerifyEmail,
            ttl,
            "/verify-email",
            |link, valid_for| {
                let (product, email) = (b.product_name.as_str(), user.email.as_str());
                Ok((
                    format!("Confirm your email address for {product}"),
                    render(&VerifyText {
                        product,
                        email,
                        link,
                        valid_for,
                    })?,
                    render(&VerifyHtml {
                        product,
                        email,
                        link,
                        valid_for,
                        color: &b.primary_color,
                    })?,
                ))
            },
        )
        .await
    }

    pub(super) async fn send_reset(&self, user: &User) -> Result<(), AccountError> {
        let ttl = self.settings.accounts.password_reset_ttl_secs;
        let b = &self.settings.branding;
        self.send_link(
            user,
            &user.email,
            TokenPurpose::PasswordReset,
            ttl,
            "/reset-password",
            |link, valid_for| {
                let (product, email) = (b.product_name.as_str(), user.email.as_str());
                Ok((
                    format!("Reset your {product} password"),
                    render(&ResetText {
                        product,
                        email,
                        link,
                        valid_for,
                    })?,
                    render(&ResetHtml {
                        product,
                        email,
                        link,
                        valid_for,
                        color: &b.primary_color,
                    })?,
                ))
            },
        )
        .await
    }

    /// Mails `new_email` the link that makes it the address of `user`'s account.
    pub(super) async fn send_email_change(
        &self,
        user: &User,
        new_email: &str,
    ) -> Result<(), AccountError> {
        let ttl = self.settings.accounts.verify_email_ttl_secs;
        let b = &self.settings.branding;
        self.send_link(
            user,
            new_email,
            TokenPurpose::EmailChange,
            ttl,
            "/account/email/confirm",
            |link, valid_for| {
                let product = b.product_name.as_str();
                let (email, old) = (new_email, user.email.as_str());
                Ok((
                    format!("Confirm your new email address for {product}"),
                    render(&EmailChangeText {
                        product,
                        email,
                        old,
                        link,
                        valid_for,
                    })?,
                    render(&EmailChangeHtml {
                        product,
                        email,
                        old,
                        link,
                        valid_for,
                        color: &b.primary_color,
                    })?,
                ))
            },
        )
        .await
    }

    /// Tells the previous address of an account that the account moved to `new_email`.
    pub(super) fn send_email_changed(
        &self,
        old: &str,
        new_email: &str,
    ) -> Result<(), AccountError> {
        let product = self.settings.branding.product_name.as_str();
        let text = render(&EmailChangedText {
            product,
            email: new_email,
            old,
        })?;
        let html = render(&EmailChangedHtml {
            product,
            email: new_email,
            old,
        })?;
        let subject = format!("The email address of your {product} account was changed");
        self.deliver(old, subject, text, html);
        Ok(())
    }

    pub(super) fn send_already_registered(&self, email: &str) -> Result<(), AccountError> {
        let link = format!("{}/forgot-password", self.settings.issuer);
        let b = &self.settings.branding;
        let text = render(&ExistsText {
            product: &b.product_name,
            email,
            link: &link,
        })?;
        let html = render(&ExistsHtml {
            product: &b.product_name,
            email,
            link: &link,
        })?;
        let subject = format!("You already have a {} account", b.product_name);
        self.deliver(email, subject, text, html);
        Ok(())
    }
}

pub(super) fn human_duration(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 && s >= 86400 => plural(s / 86400, "day"),
        s if s % 3600 == 0 && s >= 3600 => plural(s / 3600, "hour"),
        s => plural(s.div_ceil(60), "minute"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

pub(super) fn render(t: &impl Template) -> Result<String, AccountError> {
    t.render().map_err(|e| {
        tracing::error!(error = %e, "an email template failed to render");
        AccountError::Internal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(86400), "1 day");
        assert_eq!(human_duration(1800), "30 minutes");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(90), "2 minutes");
    }
}
