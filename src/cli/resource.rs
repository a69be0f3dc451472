//! `portcullis resource ...`: register, list and delete the APIs (RFC 8707 resources) that
//! access tokens can be issued for, through the same service as the admin API.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;

use super::{show_time, CliError};
use crate::app;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::resources::{NewResource, ResourceError, ResourceService};

const ACTOR: &str = "cli";

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Register an API: its access tokens have the identifier as audience and carry only its
    /// scopes. Allow a client to ask for it with `client create --resource URI`
    Create {
        /// The resource identifier: an absolute URI without fragment, e.g. https://api.example.com
        #[arg(long, value_name = "URI")]
        identifier: String,
        /// A scope that belongs to this API (repeatable)
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Lifetime of its access tokens (10..=86400 seconds; default and upper bound
        /// tokens.access_token_ttl_secs: an API may shorten it, never lengthen it)
        #[arg(long, value_name = "SECS")]
        access_token_lifetime: Option<u64>,
        /// Print a JSON object
        #[arg(long)]
        json: bool,
    },
    /// List registered APIs
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Delete an API: requests naming it are refused with invalid_target from then on
    Delete {
        #[arg(value_name = "URI")]
        identifier: String,
    },
}

fn failed(e: ResourceError) -> CliError {
    if e.is_bad_input() {
        CliError::BadInput(e.to_string())
    } else {
        CliError::Failed(e.to_string())
    }
}

pub async fn run(cmd: ResourceCommand, settings: &Settings) -> Result<(), CliError> {
    if let ResourceCommand::Create {
        identifier,
        scopes,
        access_token_lifetime,
        ..
    } = &cmd
    {
        // Refused input writes nothing, not even a migrated database.
        let new = NewResource {
            identifier: identifier.clone(),
            scopes: scopes.clone(),
            access_token_ttl_secs: *access_token_lifetime,
        };
        crate::resources::prepare(&new, 0).map_err(failed)?;
    }
    let store = app::open_store(settings).await?;
    let service = ResourceService::new(store, Arc::new(SystemClock)).reserving(settings);
    match cmd {
        ResourceCommand::Create {
            identifier,
            scopes,
            access_token_lifetime,
            json,
        } => {
            let new = NewResource {
                identifier,
                scopes,
                access_token_ttl_secs: access_token_lifetime,
            };
            let r = service.create(&new, ACTOR).await.map_err(failed)?;
            if json {
                println!("{}", json!(r));
            } else {
                println!("Registered resource {}", r.identifier);
                println!("  scopes: {}", r.scopes.join(" "));
            }
            Ok(())
        }
        ResourceCommand::List { json } => {
            let all = service.list().await.map_err(failed)?;
            if json {
                println!("{}", json!(all));
            } else {
                println!("{:<40} {:<30} {:<9} CREATED", "IDENTIFIER", "SCOPES", "TTL");
                for r in &all {
                    let ttl = r
                        .access_token_ttl_secs
                        .map(|t| format!("{t}s"))
                        .unwrap_or_else(|| "default".into());
                    println!(
                        "{:<40} {:<30} {:<9} {}",
                        r.identifier,
                        r.scopes.join(" "),
                        ttl,
                        show_time(r.created_at)
                    );
                }
            }
            Ok(())
        }
        ResourceCommand::Delete { identifier } => {
            service.delete(&identifier, ACTOR).await.map_err(failed)?;
            println!("Deleted resource {identifier}");
            Ok(())
        }
    }
}
