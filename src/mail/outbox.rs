//! The dev outbox: every message becomes `<outbox_dir>/<time>-<id>.eml`, readable by any mail
//! client, and one log line with its subject and recipient.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use lettre::message::Mailbox;

use super::{build, parse_from, MailError, Mailer, OutgoingMail};

pub struct Outbox {
    from: Mailbox,
    dir: PathBuf,
}

impl Outbox {
    pub fn new(from: &str, dir: &Path) -> Result<Outbox, MailError> {
        Ok(Outbox {
            from: parse_from(from)?,
            dir: dir.to_path_buf(),
        })
    }
}

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let message = build(&self.from, mail)?;
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| {
            MailError::Delivery(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let name = format!("{millis}-{}.eml", uuid::Uuid::new_v4().simple());
        let path = self.dir.join(name);
        // Written under a temporary name and renamed, so a reader never sees half a message.
        let partial = path.with_extension("eml.part");
        tokio::fs::write(&partial, message.formatted())
            .await
            .map_err(|e| MailError::Delivery(format!("cannot write {}: {e}", partial.display())))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| MailError::Delivery(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(to = %mail.to, subject = %mail.subject, file = %path.display(), "mail written to the dev outbox");
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "outbox"
    }
}
