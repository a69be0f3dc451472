//! `portcullis user ...`: create, list, switch off and on, set roles, and see or end the
//! sessions of users, through the same account and session services as the admin API.

use std::io::Read;

use clap::{Args, Subcommand};
use serde_json::json;
use uuid::Uuid;

use super::{show_time, CliError};
use crate::accounts::service::{AccountError, RequestMeta};
use crate::accounts::{Email, Password, PasswordHasher, Role, UserPatch};
use crate::app::{self, AppState, Portcullis};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::store::{AuditEvent, Store, StoreError, User};

/// Who the audit trail names for changes made here.
const ACTOR: &str = "cli";

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input, never from the command line
    Create(CreateArgs),
    /// List users
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Switch a user off: signed out everywhere, and refused at sign-in until `user enable`
    Disable {
        /// The user's email address
        #[arg(long)]
        email: String,
    },
    /// Switch a disabled user on again
    Enable {
        /// The user's email address
        #[arg(long)]
        email: String,
    },
    /// Replace a user's roles (each one of accounts.roles)
    SetRoles {
        /// The user's email address
        #[arg(long)]
        email: String,
        /// Role (repeatable)
        #[arg(
            long = "role",
            value_name = "ROLE",
            required_unless_present = "no_roles"
        )]
        roles: Vec<String>,
        /// Remove every role
        #[arg(long, conflicts_with = "roles")]
        no_roles: bool,
    },
    /// List a user's live browser sessions, most recently active first
    Sessions {
        /// The user's email address
        #[arg(long)]
        email: String,
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// End every browser session of a user, each like a sign-out (refresh tokens revoked,
    /// clients told by back-channel logout)
    RevokeSessions {
        /// The user's email address
        #[arg(long)]
        email: String,
    },
    /// Remove every second factor and recovery code of a user (a lost phone); if a policy
    /// requires a factor, the user enrolls a new one at the next sign-in
    ResetMfa {
        /// The user's email address
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    email: String,
    /// Display name
    #[arg(long)]
    name: Option<String>,
    /// Role (repeatable); must be one of accounts.roles (default: admin, expert, user)
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Mark the email address as already verified (the default for users an operator
    /// creates; kept for scripts)
    #[arg(long, conflicts_with = "unverified")]
    verified: bool,
    /// Leave the email address unverified: with accounts.require_verified_email the user
    /// must confirm it (ask for a link on the sign-in page) before signing in
    #[arg(long)]
    unverified: bool,
    /// Read the password from standard input (one line)
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Print a JSON object {"id": ..., "email": ...}
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: UserCommand, settings: &Settings) -> Result<(), CliError> {
    match cmd {
        UserCommand::Create(args) => create(args, settings).await,
        UserCommand::Disable { email } => {
            let patch = UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            };
            let user = patch_user(settings, &email, patch).await?;
            println!(
                "disabled {}: signed out everywhere; sign-in is refused until `portcullis user enable --email {}`",
                user.email, user.email
            );
            Ok(())
        }
        UserCommand::Enable { email } => {
            let patch = UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            };
            let user = patch_user(settings, &email, patch).await?;
            println!("enabled {}: the user may sign in again", user.email);
            Ok(())
        }
        UserCommand::SetRoles { email, roles, .. } => {
            let patch = UserPatch {
                roles: Some(roles),
                ..UserPatch::default()
            };
            let user = patch_user(settings, &email, patch).await?;
            if user.roles.is_empty() {
                println!("{} has no roles now", user.email);
            } else {
                println!("{} has the roles: {}", user.email, user.roles.join(", "));
            }
            println!("(tokens issued before keep the roles they carry until they expire)");
            Ok(())
        }
        UserCommand::Sessions { email, json } => {
            let state = services(settings).await?;
            let user = find_user(&*state.store, &email).await?;
            let sessions = state.sessions.user_sessions(user.id).await?;
            if json {
                let rows: Vec<_> = sessions
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.sid,
                            "created_at": s.created_at,
                            "last_seen_at": s.last_seen_at,
                            "expires_at": s.expires_at,
                            "auth_time": s.auth_time,
                            "amr": s.amr,
                            "acr": s.acr,
                            "ip": s.ip,
                            "user_agent": s.user_agent,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else if sessions.is_empty() {
                println!("{} has no live session", user.email);
            } else {
                println!(
                    "{:<24} {:<20} {:<20} {:<20} {:<15} {:<8} USER AGENT",
                    "ID", "CREATED", "LAST SEEN", "EXPIRES", "IP", "AMR"
                );
                for s in &sessions {
                    println!(
                        "{:<24} {:<20} {:<20} {:<20} {:<15} {:<8} {}",
                        s.sid,
                        show_time(s.created_at),
                        show_time(s.last_seen_at),
                        show_time(s.expires_at),
                        s.ip.as_deref().unwrap_or("-"),
                        s.amr.join(","),
                        s.user_agent.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        UserCommand::RevokeSessions { email } => {
            let state = services(settings).await?;
            let user = find_user(&*state.store, &email).await?;
            let ended = state
                .sessions
                .end_other_sessions(user.id, None, ACTOR, "admin")
                .await?;
            println!("ended {ended} session(s) of {}", user.email);
            Ok(())
        }
        UserCommand::ResetMfa { email } => {
            let store = app::open_store(settings).await?;
            let user = find_user(&*store, &email).await?;
            let removed_event = crate::events::Event::new(
                crate::events::EventType::UserMfaRemoved,
                SystemClock.now(),
            )
            .subject(user.id)
            .data(json!({"all": true}));
            let removed = store.delete_all_factors(user.id, &[removed_event]).await?;
            let mut event = AuditEvent::new("mfa.reset", SystemClock.now());
            event.subject = Some(user.id.to_string());
            event.actor = Some(ACTOR.into());
            event.detail = json!({"factors": removed});
            store.record_audit(&event).await?;
            println!(
                "removed {removed} second factor(s) and every recovery code of {}",
                user.email
            );
            Ok(())
        }
        UserCommand::List { json } => {
            let store = app::open_store(settings).await?;
            let users = store.list_users().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&users).unwrap_or_default()
                );
            } else if users.is_empty() {
                println!("no users yet: create one with `portcullis user create --email E --password-stdin`");
            } else {
                println!(
                    "{:<36} {:<32} {:<9} {:<20} CREATED",
                    "ID", "EMAIL", "VERIFIED", "ROLES"
                );
                for u in &users {
                    println!(
                        "{:<36} {:<32} {:<9} {:<20} {}",
                        u.id,
                        u.email,
                        if u.email_verified { "yes" } else { "no" },
                        u.roles.join(","),
                        show_time(u.created_at)
                    );
                }
            }
            Ok(())
        }
    }
}

/// The live user with this address, or the words to fix a typo.
async fn find_user(store: &dyn Store, email: &str) -> Result<User, CliError> {
    let parsed = Email::parse(email).map_err(|e| CliError::BadInput(e.to_string()))?;
    store
        .find_user_by_email(&User::email_key(parsed.as_str()))
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or_else(|| {
            CliError::BadInput(format!(
                "no user has the address {email} (see `portcullis user list`)"
            ))
        })
}

/// The server's services (accounts, sessions), built as `serve` builds them but not serving:
/// a change made here takes down what it would through the API.
async fn services(settings: &Settings) -> Result<AppState, CliError> {
    Ok(Portcullis::build(settings.clone()).await?.state().clone())
}

/// Applies `patch` to the user with this address as the operator, with the rules of the
/// admin API (`PATCH /users/{id}`).
async fn patch_user(settings: &Settings, email: &str, patch: UserPatch) -> Result<User, CliError> {
    let state = services(settings).await?;
    let user = find_user(&*state.store, email).await?;
    state
        .accounts
        .update_user_as_operator(&RequestMeta::default(), ACTOR, user.id, patch)
        .await
        .map_err(|e| match e {
            AccountError::Invalid { .. } | AccountError::NotFound => {
                CliError::BadInput(e.to_string())
            }
            other => CliError::Failed(other.to_string()),
        })
}

async fn create(args: CreateArgs, settings: &Settings) -> Result<(), CliError> {
    let email = Email::parse(&args.email).map_err(|e| CliError::BadInput(e.to_string()))?;
    let mut roles: Vec<String> = Vec::new();
    for r in &args.roles {
        let role = Role::parse(r).map_err(|e| CliError::BadInput(e.to_string()))?;
        if !settings
            .accounts
            .roles
            .iter()
            .any(|known| known == role.as_str())
        {
            return Err(CliError::BadInput(format!(
                "unknown role {r:?}; configured roles are: {}",
                settings.accounts.roles.join(", ")
            )));
        }
        if !roles.iter().any(|x| x == role.as_str()) {
            roles.push(role.as_str().to_string());
        }
    }
    let name = args
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(CliError::BadInput(
            "the name must be at most 200 characters".into(),
        ));
    }
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw).map_err(|e| {
        CliError::BadInput(format!("cannot read the password from standard input: {e}"))
    })?;
    let line = raw.strip_suffix('\n').unwrap_or(&raw);
    let line = line.strip_suffix('\r').unwrap_or(line).to_string();
    let password =
        Password::parse(line, &settings.password).map_err(|e| CliError::BadInput(e.to_string()))?;

    let store = app::open_store(settings).await?;
    let taken = || {
        CliError::BadInput(format!(
            "a user with email {:?} already exists",
            email.as_str()
        ))
    };
    if store
        .find_user_by_email(&User::email_key(email.as_str()))
        .await?
        .is_some()
    {
        return Err(taken());
    }
    let hasher =
        PasswordHasher::new(&settings.password).map_err(|e| CliError::BadInput(e.to_string()))?;
    let hash = hasher
        .hash(&password)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let now = SystemClock.now();
    let user = User {
        id: Uuid::new_v4(),
        email: email.as_str().to_string(),
        email_verified: args.verified || !args.unverified,
        name,
        password_hash: Some(hash),
        roles,
        disabled: false,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let registered = crate::events::Event::new(crate::events::EventType::UserRegistered, now)
        .subject(user.id)
        .data(json!({"email": user.email, "emailVerified": user.email_verified}));
    match store.create_user(&user, &[registered]).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(taken()),
        Err(e) => return Err(e.into()),
    }
    let mut event = AuditEvent::new("user.created", now);
    event.actor = Some(ACTOR.into());
    event.subject = Some(user.id.to_string());
    store.record_audit(&event).await?;
    if args.json {
        println!("{}", json!({"id": user.id, "email": user.email}));
    } else {
        println!("Created user {} ({})", user.email, user.id);
    }
    Ok(())
}
