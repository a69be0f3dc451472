//! `portcullis client ...`: register, list, show, change, switch off, rotate the secret of
//! and delete OAuth clients, through the same `ClientService` as the admin API and console.

use std::sync::Arc;

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{show_time, CliError};
use crate::app;
use crate::clients::{self, ClientError, ClientRegistration, ClientService, ClientUpdate};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::store::Client;

/// Who the audit trail names for changes made here.
const ACTOR: &str = "cli";

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
    /// Change a client: each option given replaces that field; the result is checked by the
    /// rules of `client create`
    Update(Box<UpdateArgs>),
    /// Give a confidential client a new secret, printed once; the old one stops working
    RotateSecret {
        id: String,
        /// Print exactly one JSON object {"client_id": ..., "client_secret": ...}
        #[arg(long)]
        json: bool,
    },
    /// Switch a client off: every endpoint treats it as unknown until `client enable`
    Disable { id: String },
    /// Switch a disabled client on again
    Enable { id: String },
    /// Delete a client, with its codes, tokens and consents
    Delete { id: String },
    /// Make an initial access token for dynamic client registration (RFC 7591 §3): a client
    /// presents it as `Authorization: Bearer` at /connect/register (registration.mode =
    /// "initial_token"). Printed once, stored hashed; it registers clients until it expires
    RegistrationToken {
        /// Seconds the token stays valid (60 to 31536000)
        #[arg(long, value_name = "SECS", default_value_t = 86_400)]
        expires_in: u64,
        /// Print exactly one JSON object {"token": ..., "expires_at": ...}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The client_id (see `portcullis client list`)
    id: String,
    /// Name shown to users on the consent page
    #[arg(long)]
    name: Option<String>,
    /// Replaces the redirect URIs (repeatable; same rules as `client create`)
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Replaces the post-logout redirect URIs (repeatable)
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Remove every post-logout redirect URI
    #[arg(long, conflicts_with = "post_logout_redirect_uris")]
    no_post_logout_redirect_uris: bool,
    /// Replaces the grant types (repeatable): authorization_code, refresh_token,
    /// client_credentials, urn:ietf:params:oauth:grant-type:device_code (or device_code)
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// Space-separated scopes the client may request
    #[arg(long)]
    scope: Option<String>,
    /// true: a public client (no secret, PKCE); false: confidential (a secret is printed once)
    #[arg(long, value_name = "BOOL")]
    public: Option<bool>,
    /// true: the product's own app (no consent, may use the first-party JSON API)
    #[arg(long, value_name = "BOOL")]
    first_party: Option<bool>,
    /// Allow http redirect URIs on non-loopback hosts (test setups only); by default allowed
    /// when the client already has one
    #[arg(long, value_name = "BOOL")]
    allow_insecure_redirect: Option<bool>,
    /// ID token signing algorithm (RS256, PS256, ES256, EdDSA), or `default`
    #[arg(long, value_name = "ALG")]
    id_token_alg: Option<String>,
    /// Access token signing algorithm (RS256, PS256, ES256, EdDSA), or `default`
    #[arg(long, value_name = "ALG")]
    access_token_alg: Option<String>,
    /// Issue refresh tokens even when offline_access is not requested
    #[arg(long, value_name = "BOOL")]
    always_refresh: Option<bool>,
    /// OIDC Back-Channel Logout URL, or `none`
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// Logout tokens must carry the session id (sid)
    #[arg(long, value_name = "BOOL")]
    backchannel_logout_session_required: Option<bool>,
    /// private_key_jwt: the client's public JWK Set as JSON, or `none`
    #[arg(long, value_name = "JSON")]
    jwks: Option<String>,
    /// private_key_jwt: URL of the client's public JWK Set, or `none`
    #[arg(long, value_name = "URI")]
    jwks_uri: Option<String>,
    /// Issue codes only after a second factor
    #[arg(long, value_name = "BOOL")]
    require_mfa: Option<bool>,
    /// Accept authorization requests only through /par (RFC 9126)
    #[arg(long, value_name = "BOOL")]
    require_par: Option<bool>,
    /// Replaces the registered APIs (RFC 8707 resources) the client may ask tokens for
    /// (repeatable)
    #[arg(long = "resource", value_name = "URI")]
    resources: Vec<String>,
    /// Remove every resource
    #[arg(long, conflicts_with = "resources")]
    no_resources: bool,
    /// true: every token request must carry a DPoP proof (RFC 9449)
    #[arg(long, value_name = "BOOL")]
    dpop_bound: Option<bool>,
    /// Print exactly one JSON object {"client_id": ..., "changed": [...]} (with
    /// "client_secret" when the change issued one)
    #[arg(long)]
    json: bool,
}

impl UpdateArgs {
    fn update(&self) -> ClientUpdate {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        ClientUpdate {
            name: self.name.clone(),
            redirect_uris: list(&self.redirect_uris),
            post_logout_redirect_uris: if self.no_post_logout_redirect_uris {
                Some(Vec::new())
            } else {
                list(&self.post_logout_redirect_uris)
            },
            grant_types: list(&self.grants),
            scope: self.scope.clone(),
            public: self.public,
            first_party: self.first_party,
            allow_insecure_redirect: self.allow_insecure_redirect,
            id_token_alg: or_reset(&self.id_token_alg, "default"),
            access_token_alg: or_reset(&self.access_token_alg, "default"),
            always_issue_refresh_token: self.always_refresh,
            backchannel_logout_uri: or_reset(&self.backchannel_logout_uri, "none"),
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            jwks: or_reset(&self.jwks, "none"),
            jwks_uri: or_reset(&self.jwks_uri, "none"),
            require_mfa: self.require_mfa,
            disabled: None,
            require_par: self.require_par,
            resources: if self.no_resources {
                Some(Vec::new())
            } else {
                list(&self.resources)
            },
            dpop_bound_access_tokens: self.dpop_bound,
            ..ClientUpdate::default()
        }
    }
}

/// `Some(None)` for the word that means "back to the default", else the value given.
fn or_reset(value: &Option<String>, reset: &str) -> Option<Option<String>> {
    value
        .as_ref()
        .map(|v| (!v.eq_ignore_ascii_case(reset)).then(|| v.clone()))
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
    /// Grant type (repeatable): authorization_code (default), refresh_token, client_credentials,
    /// urn:ietf:params:oauth:grant-type:device_code (or device_code),
    /// urn:ietf:params:oauth:grant-type:token-exchange (or token_exchange)
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
    /// Accept authorization requests only as pushed authorization requests (RFC 9126 /par)
    #[arg(long)]
    require_par: bool,
    /// A registered API (RFC 8707 resource identifier, see `portcullis resource create`) the
    /// client may ask tokens for (repeatable)
    #[arg(long = "resource", value_name = "URI")]
    resources: Vec<String>,
    /// Every token request must carry a DPoP proof (RFC 9449 dpop_bound_access_tokens)
    #[arg(long)]
    dpop_bound: bool,
    /// Print exactly one JSON object {"client_id": ..., "client_secret": ...}
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: ClientCommand, settings: &Settings) -> Result<(), CliError> {
    if let ClientCommand::Create(args) = &cmd {
        // Validate before touching the database, so refused input writes nothing at all.
        clients::prepare(&registration(args), 0).map_err(|e| CliError::BadInput(e.to_string()))?;
    }
    if let ClientCommand::Update(args) = &cmd {
        if args.update() == ClientUpdate::default() {
            return Err(CliError::BadInput(format!(
                "nothing to change for client {:?}: give at least one option, e.g. --name NAME \
                 or --redirect-uri URI (see `portcullis client update --help`)",
                args.id
            )));
        }
    }
    if let ClientCommand::RegistrationToken { expires_in, .. } = &cmd {
        if !(60..=31_536_000).contains(expires_in) {
            return Err(CliError::BadInput(format!(
                "--expires-in {expires_in}: expected 60 to 31536000 seconds (one minute to a year)"
            )));
        }
    }
    let store = app::open_store(settings).await?;
    let service = ClientService::new(
        store.clone(),
        Arc::new(SystemClock),
        None,
        super::redis(settings)?,
        settings.tokens.access_token_ttl_secs,
    );
    match cmd {
        ClientCommand::Create(args) => {
            let registered = service
                .create(&registration(&args), ACTOR)
                .await
                .map_err(failed)?;
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
                println!(
                    "{:<24} {:<24} {:<13} {:<9} GRANTS",
                    "CLIENT_ID", "NAME", "TYPE", "STATE"
                );
                for c in &clients {
                    println!(
                        "{:<24} {:<24} {:<13} {:<9} {}",
                        c.id,
                        truncate(&c.name, 24),
                        kind(c),
                        if c.disabled { "disabled" } else { "active" },
                        c.grant_types.join(",")
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Show { id, json } => {
            let c = service.get(&id).await.map_err(failed)?;
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
                println!("require_mfa:                {}", yes_no(c.require_mfa));
                println!("require_par:                {}", yes_no(c.require_par));
                println!("resources:                  {}", c.resources.join(" "));
                println!(
                    "dpop_bound_access_tokens:   {}",
                    yes_no(c.dpop_bound_access_tokens)
                );
                println!(
                    "registered:                 {}",
                    if c.dynamic {
                        "dynamically (RFC 7591), unverified"
                    } else {
                        "by an operator"
                    }
                );
                println!("disabled:                   {}", yes_no(c.disabled));
                println!("created:                    {}", show_time(c.created_at));
                println!("updated:                    {}", show_time(c.updated_at));
            }
            Ok(())
        }
        ClientCommand::Update(args) => {
            let updated = service
                .update(&args.id, &args.update(), ACTOR)
                .await
                .map_err(failed)?;
            let secret = updated
                .secret
                .as_ref()
                .map(|s| s.expose_secret().to_string());
            if args.json {
                let mut out = json!({"client_id": updated.client.id, "changed": updated.changed});
                if let Some(secret) = &secret {
                    out["client_secret"] = json!(secret);
                }
                println!("{out}");
                return Ok(());
            }
            if updated.changed.is_empty() {
                println!(
                    "client {} already had these settings: nothing changed",
                    args.id
                );
                return Ok(());
            }
            println!("Updated client {:?} ({})", updated.client.name, args.id);
            println!("  changed: {}", updated.changed.join(", "));
            if let Some(s) = &secret {
                println!("  client_secret: {s}");
                println!("  (it is now a confidential client; the secret is shown only now: store it safely)");
            }
            tell_servers(&service, settings, "use the change");
            Ok(())
        }
        ClientCommand::RotateSecret { id, json } => {
            let secret = service.rotate_secret(&id, ACTOR).await.map_err(failed)?;
            if json {
                println!(
                    "{}",
                    json!({"client_id": id, "client_secret": secret.expose_secret()})
                );
                return Ok(());
            }
            println!("New secret for client {id}");
            println!("  client_secret: {}", secret.expose_secret());
            println!(
                "  (the secret is shown only now: store it safely; the old one no longer works)"
            );
            tell_servers(&service, settings, "refuse the old secret");
            Ok(())
        }
        ClientCommand::Disable { id } => {
            service
                .set_disabled(&id, true, ACTOR)
                .await
                .map_err(failed)?;
            println!("disabled client {id}: every endpoint treats it as unknown (`portcullis client enable {id}` switches it on)");
            tell_servers(&service, settings, "refuse it");
            Ok(())
        }
        ClientCommand::Enable { id } => {
            service
                .set_disabled(&id, false, ACTOR)
                .await
                .map_err(failed)?;
            println!("enabled client {id}");
            tell_servers(&service, settings, "accept it");
            Ok(())
        }
        ClientCommand::Delete { id } => {
            service.delete(&id, ACTOR).await.map_err(failed)?;
            println!("deleted client {id}");
            tell_servers(&service, settings, "refuse it");
            Ok(())
        }
        ClientCommand::RegistrationToken { expires_in, json } => {
            let now = crate::clock::Clock::now(&SystemClock);
            let (token, expires_at) =
                clients::dynamic::create_initial_token(&*store, now, expires_in, ACTOR).await?;
            if settings.registration.mode != crate::config::RegistrationMode::InitialToken {
                eprintln!(
                    "note: registration.mode is {:?}; the token is asked for only when it is \"initial_token\"",
                    settings.registration.mode.as_str()
                );
            }
            if json {
                println!(
                    "{}",
                    json!({"token": token.expose_secret(), "expires_at": expires_at})
                );
            } else {
                println!("initial access token: {}", token.expose_secret());
                println!(
                    "  valid until {} (shown only now: store it safely)",
                    show_time(expires_at)
                );
                println!("  a client registers with: POST /connect/register, Authorization: Bearer <token>");
            }
            Ok(())
        }
    }
}

/// The operator's words for a refused or failed client change.
fn failed(e: ClientError) -> CliError {
    match e {
        ClientError::NotFound(id) => CliError::BadInput(format!(
            "no client with id {id:?} (see `portcullis client list`)"
        )),
        e if e.is_bad_input() => CliError::BadInput(e.to_string()),
        e => CliError::Failed(e.to_string()),
    }
}

/// Says when running servers see the change: the service announced it through Redis, or
/// their cached copies expire.
fn tell_servers(service: &ClientService, settings: &Settings, what: &str) {
    if service.announces() {
        println!("announced to running servers through Redis: they {what} now");
    } else {
        println!(
            "running servers {what} within {}s (database.client_cache_secs)",
            settings.database.client_cache_secs
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
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
        require_par: args.require_par,
        resources: args.resources.clone(),
        dpop_bound_access_tokens: args.dpop_bound,
        ..ClientRegistration::default()
    }
}

fn kind(c: &Client) -> &'static str {
    match (c.is_public(), c.first_party, c.dynamic) {
        (true, true, _) => "public,1st",
        // Registered by the client itself (RFC 7591), never first-party.
        (true, false, true) => "public,dyn",
        (true, false, false) => "public",
        (false, true, _) => "confid.,1st",
        (false, false, true) => "confid.,dyn",
        (false, false, false) => "confidential",
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
