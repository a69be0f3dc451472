//! SMTP delivery through a relay: STARTTLS is required before credentials are sent, unless
//! `tls = "none"` is chosen for a relay on the same host.

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{build, parse_from, MailError, Mailer, OutgoingMail};
use crate::config::SmtpSettings;

pub struct Smtp {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    pub fn new(from: &str, host: &str, settings: &SmtpSettings) -> Result<Smtp, MailError> {
        let mut builder = if settings.tls == "none" {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| MailError::Build(format!("mail.smtp.host {host:?}: {e}")))?
        };
        builder = builder
            .port(settings.port)
            .timeout(Some(std::time::Duration::from_secs(15)));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        Ok(Smtp {
            from: parse_from(from)?,
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl Mailer for Smtp {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let message = build(&self.from, mail)?;
        // lettre's errors name the relay's reply, never the credentials.
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::Delivery(e.to_string()))?;
        tracing::info!(to = %mail.to, subject = %mail.subject, "mail handed to the SMTP relay");
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "smtp"
    }
}
