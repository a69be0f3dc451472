//! The command line: `serve`, `migrate`, and the operator's `client`, `user`, `keys`,
//! `audit`, `webhook` and `events` tools (sharing the services of the admin API and console).
//! Exit status: 0 done, 1 the system failed (database down, ...), 2 the input was refused.

mod audit;
mod client;
mod events;
mod keys;
mod resource;
mod user;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, Portcullis};
use crate::config::{LogSettings, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Portcullis: an OAuth 2.0 / OpenID Connect identity provider",
    long_about = "Portcullis: an OAuth 2.0 / OpenID Connect identity provider.\n\n\
        With no configuration it runs on an embedded SQLite database under data/ and listens on \
        127.0.0.1:8080. Settings come from built-in defaults, then a TOML file \
        (--config, or config/portcullis.toml when present), then PORTCULLIS_* environment \
        variables (PORTCULLIS_DATABASE__URL for database.url).",
    after_help = "Examples:\n  \
        portcullis serve\n  \
        portcullis client create --name demo --redirect-uri http://localhost:3000/cb --json\n  \
        echo 'a long passphrase' | portcullis user create --email ada@example.com --password-stdin\n  \
        portcullis keys rotate"
)]
pub struct Cli {
    /// TOML configuration file (default: config/portcullis.toml if it exists)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (applies pending migrations and creates signing keys on first start)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Ask a running server whether it is ready (for container health checks); exit 0 if so
    Health {
        /// The readiness URL (default: http://<management.listen>/health/ready)
        #[arg(long)]
        url: Option<String>,
    },
    /// Register and manage OAuth clients
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Create, list, switch off and on, and set the roles and end the sessions of users
    #[command(subcommand)]
    User(user::UserCommand),
    /// Inspect and rotate signing keys
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Read the audit trail
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Subscribe webhooks to events; list their deliveries and replay dead letters
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Read the recent domain events
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Register the APIs (RFC 8707 resources) access tokens can be issued for
    #[command(subcommand)]
    Resource(resource::ResourceCommand),
}

/// A command's failure: bad input (exit 2) or a system fault (exit 1).
#[derive(Debug)]
pub enum CliError {
    BadInput(String),
    Failed(String),
}

impl From<app::StartError> for CliError {
    fn from(e: app::StartError) -> Self {
        match e {
            app::StartError::Config(_) => CliError::BadInput(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        CliError::Failed(e.to_string())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = LogSettings {
        level: "warn".into(),
        ..settings.log.clone()
    };
    let _telemetry = match cli.command {
        Command::Serve => Some(crate::telemetry::init_with(
            &settings.log,
            &settings.telemetry,
        )),
        _ => None,
    };
    match cli.command {
        Command::Serve => {}
        Command::Migrate => crate::telemetry::init(&settings.log),
        Command::Health { .. } => {}
        _ => crate::telemetry::init(&quiet),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BadInput(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), CliError> {
    match command {
        Command::Serve => {
            let app = Portcullis::build(settings).await?;
            app.serve(app::shutdown_signal()).await?;
            Ok(())
        }
        Command::Migrate => {
            let store = app::open_store(&settings).await?;
            tracing::info!(database = store.backend(), "migrations applied");
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Health { url } => {
            let url = url.unwrap_or_else(|| {
                let listen = settings.management.listen.replace("0.0.0.0", "127.0.0.1");
                format!("http://{listen}/health/ready")
            });
            let resp = reqwest::Client::new()
                .get(&url)
                .timeout(std::time::Duration::from_secs(3))
                .send()
                .await
                .map_err(|e| CliError::Failed(format!("{url} did not answer: {e}")))?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            println!("{body}");
            if status.is_success() {
                Ok(())
            } else {
                Err(CliError::Failed(format!("{url} answered {status}")))
            }
        }
        Command::Client(cmd) => client::run(cmd, &settings).await,
        Command::User(cmd) => user::run(cmd, &settings).await,
        Command::Keys(cmd) => keys::run(cmd, settings).await,
        Command::Audit(cmd) => audit::run(cmd, &settings).await,
        Command::Webhook(cmd) => webhook::run(cmd, &settings).await,
        Command::Events(cmd) => events::run(cmd, &settings).await,
        Command::Resource(cmd) => resource::run(cmd, &settings).await,
    }
}

/// Formats Unix seconds as an RFC 3339 UTC time for tables.
pub(crate) fn show_time(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm), to avoid a date crate for one table column.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// The configured Redis (for services that announce their changes to running servers).
fn redis(
    settings: &Settings,
) -> Result<Option<std::sync::Arc<crate::cache::RedisHandle>>, CliError> {
    match &settings.redis.url {
        None => Ok(None),
        Some(url) => crate::cache::RedisHandle::new(url, &settings.redis.namespace)
            .map(|r| Some(std::sync::Arc::new(r)))
            .map_err(CliError::BadInput),
    }
}

/// Tells running servers, through Redis when one is configured, that `event` ("keys",
/// "clients") changed, so they re-read it at once. Answers whether anyone could be told.
async fn announce(settings: &Settings, event: &str) -> bool {
    let Some(url) = &settings.redis.url else {
        return false;
    };
    match crate::cache::RedisHandle::new(url, &settings.redis.namespace) {
        Ok(redis) => redis.publish(event).await.is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(show_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(show_time(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(show_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
