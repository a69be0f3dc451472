//! Account email: a `Mailer` port with two adapters — SMTP (lettre, STARTTLS) for production
//! and the dev outbox, which writes each message as an `.eml` file and logs who it is for.
//! Messages are built from askama templates (text and HTML alternatives).

mod outbox;
mod smtp;

use std::sync::Arc;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::config::MailSettings;

pub use outbox::Outbox;
pub use smtp::Smtp;

/// One message, already rendered.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("cannot deliver the message: {0}")]
    Delivery(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
    /// "smtp" or "outbox", for logs and health output.
    fn kind(&self) -> &'static str;
}

/// The adapter the settings choose: SMTP when a host is configured, else the outbox.
pub fn from_settings(settings: &MailSettings) -> Result<Arc<dyn Mailer>, MailError> {
    match &settings.smtp.host {
        Some(host) => Ok(Arc::new(Smtp::new(&settings.from, host, &settings.smtp)?)),
        None => Ok(Arc::new(Outbox::new(&settings.from, &settings.outbox_dir)?)),
    }
}

/// The MIME message: text and HTML alternatives, quoted-printable.
pub(crate) fn build(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, MailError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| MailError::Build(format!("recipient: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )
        .map_err(|e| MailError::Build(e.to_string()))
}

pub(crate) fn parse_from(from: &str) -> Result<Mailbox, MailError> {
    from.parse()
        .map_err(|e| MailError::Build(format!("mail.from {from:?}: {e}")))
}

/// Sends in the background so that the answer to the request neither waits for the relay
/// nor takes longer when a mail is sent (timing must not tell whether an account exists).
pub fn send_later(mailer: Arc<dyn Mailer>, mail: OutgoingMail) {
    tokio::spawn(async move {
        if let Err(e) = mailer.send(&mail).await {
            tracing::error!(error = %e, subject = %mail.subject, "account email not sent");
        }
    });
}
