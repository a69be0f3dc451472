//! `portcullis events list`: the newest domain events of the outbox, as webhooks get them.

use clap::Subcommand;

use super::CliError;
use crate::config::Settings;
use crate::store::EventQuery;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print the newest events (newest first), one JSON envelope per line
    List {
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        /// Only events of this type, e.g. user.registered
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
    },
}

pub async fn run(cmd: EventsCommand, settings: &Settings) -> Result<(), CliError> {
    let EventsCommand::List { limit, kind } = cmd;
    let events = super::webhook::service(settings).await?;
    let list = events
        .recent_events(&EventQuery {
            kind,
            since: None,
            limit: limit.clamp(1, 10_000),
        })
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    for e in list {
        println!("{}", e.payload);
    }
    Ok(())
}
