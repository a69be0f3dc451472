//! `portcullis audit tail`: the newest audit events, optionally following new ones.

use std::collections::HashSet;
use std::time::Duration;

use clap::Subcommand;
use uuid::Uuid;

use super::{show_time, CliError};
use crate::app;
use crate::config::Settings;
use crate::store::{AuditEvent, AuditQuery};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest events (oldest of them first), then follow new ones with --follow
    Tail {
        /// How many past events to print
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing events as they happen (Ctrl-C to stop)
        #[arg(short, long)]
        follow: bool,
        /// Only events of this type, e.g. login.failed
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only events caused by or about this user id
        #[arg(long)]
        user: Option<Uuid>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: AuditCommand, settings: &Settings) -> Result<(), CliError> {
    let AuditCommand::Tail {
        lines,
        follow,
        kind,
        user,
        json,
    } = cmd;
    let store = app::open_store(settings).await?;
    let mut query = AuditQuery {
        user: user.map(|u| u.to_string()),
        kind,
        limit: lines.clamp(1, 10_000),
        ..AuditQuery::default()
    };
    let mut events = store.query_audit(&query).await?;
    events.reverse();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut since = 0;
    for e in &events {
        print_event(e, json);
        seen.insert(e.id);
        since = since.max(e.at);
    }
    if !follow {
        return Ok(());
    }
    query.limit = 1000;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        query.since = Some(since);
        let mut fresh = store.query_audit(&query).await?;
        fresh.reverse();
        for e in fresh.iter().filter(|e| !seen.contains(&e.id)) {
            print_event(e, json);
            since = since.max(e.at);
        }
        // Only ids at the newest second can come back from the next query.
        seen = fresh
            .iter()
            .filter(|e| e.at >= since)
            .map(|e| e.id)
            .collect();
    }
}

fn print_event(e: &AuditEvent, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
        return;
    }
    let field = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!(" {name}={v}"));
    let mut line = format!("{}  {:<26}", show_time(e.at), e.kind);
    for part in [
        field("actor", &e.actor),
        field("subject", &e.subject),
        field("client", &e.client_id),
        field("ip", &e.ip),
        field("trace", &e.trace_id),
    ]
    .into_iter()
    .flatten()
    {
        line.push_str(&part);
    }
    if e.detail.as_object().is_some_and(|m| !m.is_empty()) {
        line.push_str(&format!(" {}", e.detail));
    }
    println!("{line}");
}
