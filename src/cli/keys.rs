//! `portcullis keys ...`: list and rotate signing keys.

use std::sync::Arc;

use clap::Subcommand;

use super::{show_time, CliError};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::keys::KeyManager;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state (next, active, retired) and whether the JWKS publishes them
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Promote each algorithm's next key to active, retire the active one, and create a new next key
    Rotate,
    /// Emergency: remove a compromised key from the JWKS now (rotating first if it signs)
    Revoke { kid: String },
}

pub async fn run(cmd: KeysCommand, settings: Settings) -> Result<(), CliError> {
    let keys = open(&settings).await?;
    match cmd {
        KeysCommand::List { json } => {
            let ring = keys.ring();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(ring.summary()).unwrap_or_default()
                );
                return Ok(());
            }
            println!(
                "{:<18} {:<6} {:<8} {:<10} {:<21} ACTIVATED",
                "KID", "ALG", "STATE", "PUBLISHED", "CREATED"
            );
            for k in ring.summary() {
                println!(
                    "{:<18} {:<6} {:<8} {:<10} {:<21} {}",
                    k.kid,
                    k.alg,
                    k.state.as_str(),
                    if k.published { "yes" } else { "no" },
                    show_time(k.created_at),
                    k.activated_at.map(show_time).unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { kid } => {
            if !keys
                .revoke_by(&kid, Some("cli"))
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?
            {
                return Err(CliError::BadInput(format!(
                    "no signing key with kid {kid:?} (see `portcullis keys list`)"
                )));
            }
            super::announce(&settings, "keys").await;
            println!("revoked {kid}: it is no longer published; tokens it signed no longer verify");
            println!(
                "verifiers may hold it until their JWKS cache expires ({}s)",
                settings.keys.jwks_max_age_secs
            );
            Ok(())
        }
        KeysCommand::Rotate => {
            let promoted = keys
                .rotate_by(Some("cli"))
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            if super::announce(&settings, "keys").await {
                println!("announced to running servers through Redis");
            }
            for (alg, kid) in promoted {
                println!("{alg}: {kid} is now the active key");
            }
            println!(
                "retired keys stay in the JWKS for {}s; running servers pick up the change within {}s",
                settings.longest_token_ttl_secs() + settings.keys.jwks_max_age_secs,
                settings.keys.refresh_secs
            );
            Ok(())
        }
    }
}

async fn open(settings: &Settings) -> Result<KeyManager, CliError> {
    let master = crate::app::master_key(settings)?;
    let store = crate::app::open_store(settings).await?;
    let retention = settings.longest_token_ttl_secs() + settings.keys.jwks_max_age_secs;
    KeyManager::start(store, master, Arc::new(SystemClock), retention, 0)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))
}
