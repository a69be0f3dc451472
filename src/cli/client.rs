//! `portcullis client ...`: register, list, show and delete OAuth clients.

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{show_time, CliError};
use crate::app;
use crate::clients::{self, ClientRegistration};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::store::{AuditEvent, Client, StoreError};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once, never stored in clear
    Create(Box<CreateArgs>),
    /// List registered clients
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        /// Name each confidential client with a loopback http redirect URI: it used to be
        /// redirected to any port of it, now only to the registered one (RFC 9700 §2.1)
        #[arg(long)]
        check: bool,
    },
    /// Show one client (never its secret)
    Show {
        id: String,
        /// Print a JSON object
        #[arg(long)]
        json: bool,
    },
    /// Delete a client, with its codes, tokens and consents
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name shown to users on the consent page
    #[arg(long)]
    name: String,
    /// Exact redirect URI (repeatable); https, http on loopback, or an app scheme such as
    /// com.example.app:/cb. Matched exactly: only a --public (native) client may use any port on
    /// a loopback http URI (RFC 8252 §7.3); register each port a confidential client uses
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the user back to (repeatable)
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Grant type (repeatable): authorization_code (default), refresh_token, client_credentials
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// Space-separated scopes the client may request
    #[arg(long, default_value = clients::DEFAULT_SCOPE)]
    scope: String,
    /// A public client (SPA, mobile): no secret, PKCE required, token_endpoint_auth_method=none
    #[arg(long)]
    public: bool,
    /// The product's own app: skips consent and may use the first-party JSON API
    #[arg(long)]
    first_party: bool,
    /// Allow http redirect URIs on non-loopback hosts (test setups only)
    #[arg(long)]
    allow_insecure_redirect: bool,
    /// ID token signing algorithm: RS256 (default), PS256, ES256 or EdDSA
    #[arg(long, value_name = "ALG")]
    id_token_alg: Option<String>,
    /// Access token signing algorithm: ES256 (default), RS256, PS256 or EdDSA
    #[arg(long, value_name = "ALG")]
    access_token_alg: Option<String>,
    /// Issue refresh tokens even when offline_access is not requested (needs --grant refresh_token)
    #[arg(long)]
    always_refresh: bool,
    /// OIDC Back-Channel Logout: URL that receives logout tokens
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// Logout tokens must carry the session id (sid)
    #[arg(long)]
    backchannel_logout_session_required: bool,
    /// private_key_jwt: the client's public JWK Set as JSON (no secret is issued)
    #[arg(long, value_name = "JSON")]
    jwks: Option<String>,
    /// private_key_jwt: URL of the client's public JWK Set (no secret is issued)
    #[arg(long, value_name = "URI")]
    jwks_uri: Option<String>,
    /// Issue codes only after a second factor (the sign-in reaches acr "mfa")
    #[arg(long)]
    require_mfa: bool,
    /// Print exactly one JSON object {"client_id": ..., "client_secret": ...}
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: ClientCommand, settings: &Settings) -> Result<(), CliError> {
    if let ClientCommand::Create(args) = &cmd {
        // Validate before touching the database, so refused input writes nothing at all.
        clients::prepare(&registration(args), 0).map_err(|e| CliError::BadInput(e.to_string()))?;
    }
    let store = app::open_store(settings).await?;
    match cmd {
        ClientCommand::Create(args) => {
            let now = SystemClock.now();
            let registered = clients::register(&*store, &registration(&args), now, "cli")
                .await
                .map_err(|e| {
                    if e.is_bad_input() {
                        CliError::BadInput(e.to_string())
                    } else {
                        CliError::Failed(e.to_string())
                    }
                })?;
            let c = &registered.client;
            let secret = registered
                .secret
                .as_ref()
                .map(|s| s.expose_secret().to_string());
            if args.json {
                let mut out = json!({"client_id": c.id});
                if let Some(secret) = &secret {
                    out["client_secret"] = json!(secret);
                }
                println!("{out}");
            } else {
                println!("Created client {:?}", c.name);
                println!("  client_id:     {}", c.id);
                match &secret {
                    Some(s) => {
                        println!("  client_secret: {s}");
                        println!("  (the secret is shown only now: store it safely)");
                    }
                    None => println!("  public client: no secret; PKCE (S256) is required"),
                }
            }
            Ok(())
        }
        ClientCommand::List { json, check } => {
            let clients = store.list_clients().await?;
            if check {
                let notices = clients::port_variation_notices(&clients);
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&notices).unwrap_or_default()
                    );
                } else if notices.is_empty() {
                    println!("ok: no confidential client has a loopback http redirect URI, so none relied on any-port matching");
                } else {
                    for n in &notices {
                        println!("warning: {n}");
                    }
                }
            } else if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&clients).unwrap_or_default()
                );
            } else if clients.is_empty() {
                println!("no clients yet: register one with `portcullis client create --name NAME --redirect-uri URI`");
            } else {
                println!("{:<24} {:<24} {:<13} GRANTS", "CLIENT_ID", "NAME", "TYPE");
                for c in &clients {
                    println!(
                        "{:<24} {:<24} {:<13} {}",
                        c.id,
                        truncate(&c.name, 24),
                        kind(c),
                        c.grant_types.join(",")
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Show { id, json } => {
            let c = store.get_client(&id).await?.ok_or_else(|| {
                CliError::BadInput(format!(
                    "no client with id {id:?} (see `portcullis client list`)"
                ))
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
            } else {
                println!("client_id:                  {}", c.id);
                println!("name:                       {}", c.name);
                println!("type:                       {}", kind(&c));
                println!(
                    "token_endpoint_auth_method: {}",
                    c.token_endpoint_auth_method
                );
                println!("grant_types:                {}", c.grant_types.join(" "));
                println!("scope:                      {}", c.scope);
                println!("redirect_uris:              {}", c.redirect_uris.join(" "));
                println!(
                    "post_logout_redirect_uris:  {}",
                    c.post_logout_redirect_uris.join(" ")
                );
                println!("created:                    {}", show_time(c.created_at));
            }
            Ok(())
        }
        ClientCommand::Delete { id } => {
            if !store.delete_client(&id).await? {
                return Err(CliError::BadInput(format!(
                    "no client with id {id:?} (see `portcullis client list`)"
                )));
            }
            let mut event = AuditEvent::new("client.deleted", SystemClock.now());
            event.actor = Some("cli".into());
            event.client_id = Some(id.clone());
            store
                .record_audit(&event)
                .await
                .map_err(|e: StoreError| CliError::Failed(e.to_string()))?;
            println!("deleted client {id}");
            if super::announce(settings, "clients").await {
                println!("announced to running servers through Redis: they refuse it now");
            } else {
                println!(
                    "running servers refuse it within {}s (database.client_cache_secs)",
                    settings.database.client_cache_secs
                );
            }
            Ok(())
        }
    }
}

fn registration(args: &CreateArgs) -> ClientRegistration {
    ClientRegistration {
        name: args.name.clone(),
        redirect_uris: args.redirect_uris.clone(),
        post_logout_redirect_uris: args.post_logout_redirect_uris.clone(),
        grant_types: args.grants.clone(),
        scope: Some(args.scope.clone()),
        public: args.public,
        first_party: args.first_party,
        allow_insecure_redirect: args.allow_insecure_redirect,
        id_token_alg: args.id_token_alg.clone(),
        access_token_alg: args.access_token_alg.clone(),
        always_issue_refresh_token: args.always_refresh,
        backchannel_logout_uri: args.backchannel_logout_uri.clone(),
        backchannel_logout_session_required: args.backchannel_logout_session_required,
        jwks: args.jwks.clone(),
        jwks_uri: args.jwks_uri.clone(),
        require_mfa: args.require_mfa,
    }
}

fn kind(c: &Client) -> &'static str {
    match (c.is_public(), c.first_party) {
        (true, true) => "public,1st",
        (true, false) => "public",
        (false, true) => "confid.,1st",
        (false, false) => "confidential",
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
