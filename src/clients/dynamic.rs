//! Clients that register themselves (RFC 7591) and manage their registration (RFC 7592):
//! who may register (the `[registration]` policy), registering, reading, replacing and
//! deleting with the registration access token, and the sweep of clients never used.
//! Every change goes through the [`ClientService`] (the one set of registration rules, audit,
//! cache invalidation); only SHA-256 hashes of tokens are stored. Never touches HTTP.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{prepare, ClientError, ClientRegistration, ClientService, ClientUpdate};
use crate::clock::Clock;
use crate::config::{RegistrationMode, RegistrationSettings};
use crate::metrics::Metrics;
use crate::protocol::discovery::endpoint;
use crate::protocol::registration::{self as metadata, MetadataError, Policy, RequestKind};
use crate::random;
use crate::store::{
    AuditEvent, Client, DynamicRegistration, InitialAccessToken, Store, StoreError, Timestamp,
};

/// The path of the registration endpoint; a client's configuration endpoint hangs off it.
pub const REGISTRATION_PATH: &str = "/connect/register";
/// Who the audit trail names for a change made with a registration access token.
const MANAGER: &str = "rfc7592 (registration access token)";
/// ...and for the deletion of a client that was never used.
const SWEEPER: &str = "registration sweep (never used)";
/// Clients remembered as used, per instance (being used is forever); beyond this the memory
/// starts over.
const USED_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum DynamicError {
    /// `registration.mode = "off"`: there is no registration endpoint.
    #[error("client registration is switched off")]
    Off,
    /// RFC 6750 §3.1 `invalid_token`: a missing, wrong or spent initial or registration
    /// access token, or a client that no longer exists (RFC 7592 §2.1: 401 either way).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// RFC 7591 §3.2.2.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("storage failed: {0}")]
    Store(String),
}

impl From<StoreError> for DynamicError {
    fn from(e: StoreError) -> Self {
        DynamicError::Store(e.to_string())
    }
}

/// A client as its registration (or a read, or an update) left it, with what was issued.
#[derive(Debug)]
pub struct Issued {
    pub client: Client,
    /// A client secret, when this operation issued one (shown once).
    pub secret: Option<SecretString>,
    /// The new registration access token (the previous one no longer works).
    pub access_token: SecretString,
}

/// Built once in `app.rs`.
pub struct RegistrationService {
    store: Arc<dyn Store>,
    clients: Arc<ClientService>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    settings: RegistrationSettings,
    issuer: String,
    used: RwLock<HashSet<String>>,
}

impl RegistrationService {
    pub fn new(
        store: Arc<dyn Store>,
        clients: Arc<ClientService>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: RegistrationSettings,
        issuer: &str,
    ) -> RegistrationService {
        RegistrationService {
            store,
            clients,
            clock,
            metrics,
            settings,
            issuer: issuer.to_string(),
            used: RwLock::default(),
        }
    }

    pub fn mode(&self) -> RegistrationMode {
        self.settings.mode
    }

    /// RFC 7592 §1: the client configuration endpoint of one client.
    pub fn configuration_uri(&self, client_id: &str) -> String {
        // Client ids are hex (`prepare`), so they need no escaping in a path.
        endpoint(&self.issuer, &format!("{REGISTRATION_PATH}/{client_id}"))
    }

    /// The client information response (RFC 7591 §3.2.1, RFC 7592 §3).
    pub fn information(&self, issued: &Issued) -> Value {
        let uri = self.configuration_uri(&issued.client.id);
        metadata::client_information(
            &issued.client,
            &metadata::Issued {
                client_secret: issued.secret.as_ref().map(|s| s.expose_secret()),
                registration_access_token: issued.access_token.expose_secret(),
                registration_client_uri: &uri,
            },
        )
    }

    /// RFC 7591 §3: whether this request may register, by the configured mode; `bearer` is
    /// the token of an `Authorization: Bearer` header, if any.
    pub async fn admit(&self, bearer: Option<&str>) -> Result<RegistrationMode, DynamicError> {
        let mode = self.settings.mode;
        match mode {
            RegistrationMode::Off => Err(DynamicError::Off),
            RegistrationMode::Open => Ok(mode),
            RegistrationMode::InitialToken => {
                let Some(token) = bearer else {
                    self.refused(mode);
                    return Err(DynamicError::InvalidToken(
                        "an initial access token is required: Authorization: Bearer <token from `portcullis client registration-token`>",
                    ));
                };
                let hash = random::hash_secret(token);
                if self
                    .store
                    .initial_access_token_valid(&hash, self.clock.now())
                    .await?
                {
                    Ok(mode)
                } else {
                    self.refused(mode);
                    Err(DynamicError::InvalidToken(
                        "the initial access token is invalid or has expired",
                    ))
                }
            }
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            allowed_grant_types: &self.settings.allowed_grant_types,
            allowed_scopes: &self.settings.allowed_scopes,
        }
    }

    fn refused(&self, mode: RegistrationMode) {
        self.metrics.count(
            "portcullis_client_registrations_total",
            &[("mode", mode.as_str()), ("result", "refused")],
        );
    }

    fn managed(&self, op: &'static str, result: &'static str) {
        self.metrics.count(
            "portcullis_client_registration_management_total",
            &[("op", op), ("result", result)],
        );
    }

    /// RFC 7591 §3.1-3.2: registers the client the JSON `body` describes. Validated as a
    /// whole before anything is written.
    #[tracing::instrument(skip_all, fields(mode = mode.as_str()))]
    pub async fn register(
        &self,
        body: &[u8],
        mode: RegistrationMode,
    ) -> Result<Issued, DynamicError> {
        let request = match metadata::parse(body, &self.policy(), RequestKind::Register) {
            Ok(r) => r,
            Err(e) => {
                self.refused(mode);
                return Err(e.into());
            }
        };
        let actor = format!("rfc7591 ({})", mode.as_str());
        let registered = match self.clients.create(&request.registration, &actor).await {
            Ok(r) => r,
            Err(e) => {
                let e = refusal(e, &request.registration);
                if matches!(e, DynamicError::Metadata(_)) {
                    self.refused(mode);
                }
                return Err(e);
            }
        };
        let client = registered.client;
        let token = random::token(32);
        let row = DynamicRegistration {
            client_id: client.id.clone(),
            access_token_hash: random::hash_secret(&token),
            mode: mode.as_str().to_string(),
            created_at: client.created_at,
            used_at: None,
        };
        if let Err(e) = self.store.create_dynamic_registration(&row).await {
            // Nothing half-written: without its registration the client could not be managed.
            // (Should this delete fail too, the sweep finds the client, never used.)
            if let Err(undo) = self.clients.delete(&client.id, &actor).await {
                tracing::error!(error = %undo, client_id = %client.id, "could not remove a client whose registration failed");
            }
            return Err(e.into());
        }
        tracing::info!(client_id = %client.id, "client registered itself");
        self.metrics.count(
            "portcullis_client_registrations_total",
            &[("mode", mode.as_str()), ("result", "registered")],
        );
        Ok(Issued {
            client,
            secret: registered.secret,
            access_token: SecretString::from(token),
        })
    }

    /// The client of a configuration endpoint, if `token` is its current registration access
    /// token and the client still exists, is switched on and has not expired unused.
    async fn authenticate(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<(Client, DynamicRegistration), DynamicError> {
        const WRONG: DynamicError = DynamicError::InvalidToken(
            "the registration access token is not valid for this client, or the client no longer exists",
        );
        let Some(token) = token else {
            return Err(DynamicError::InvalidToken(
                "a registration access token is required: Authorization: Bearer <registration_access_token>",
            ));
        };
        let Some(registration) = self.store.get_dynamic_registration(client_id).await? else {
            return Err(WRONG);
        };
        if !random::verify_secret(token, &registration.access_token_hash) {
            return Err(WRONG);
        }
        let client = match self.clients.get(client_id).await {
            Ok(c) if !c.disabled => c,
            Ok(_) | Err(ClientError::NotFound(_)) => return Err(WRONG),
            Err(e) => return Err(DynamicError::Store(e.to_string())),
        };
        if self.expired(&client, registration.used_at.is_some()) {
            return Err(WRONG);
        }
        Ok((client, registration))
    }

    /// A new registration access token in place of the one presented: one conditional update,
    /// so a token is spent once even by two parallel requests.
    async fn rotate(
        &self,
        registration: &DynamicRegistration,
    ) -> Result<SecretString, DynamicError> {
        let token = random::token(32);
        let rotated = self
            .store
            .rotate_registration_token(
                &registration.client_id,
                &registration.access_token_hash,
                &random::hash_secret(&token),
            )
            .await?;
        if !rotated {
            return Err(DynamicError::InvalidToken(
                "the registration access token was used meanwhile; use the one that request returned",
            ));
        }
        Ok(SecretString::from(token))
    }

    /// RFC 7592 §2.1. Every client information response carries a registration access token
    /// (§3, REQUIRED) and only its hash is stored, so a read answers with a new one (§2.1
    /// allows it; the client "MUST immediately discard its previous" token).
    #[tracing::instrument(skip_all, fields(client_id))]
    pub async fn read(&self, client_id: &str, token: Option<&str>) -> Result<Issued, DynamicError> {
        let (client, registration) = self.authenticate(client_id, token).await?;
        let access_token = self.rotate(&registration).await?;
        self.managed("read", "ok");
        Ok(Issued {
            client,
            secret: None,
            access_token,
        })
    }

    /// RFC 7592 §2.2: replaces the client's metadata with `body` (omitted fields are deleted),
    /// validated as a registration is, and rotates the registration access token.
    #[tracing::instrument(skip_all, fields(client_id))]
    pub async fn update(
        &self,
        client_id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Issued, DynamicError> {
        let (client, registration) = self.authenticate(client_id, token).await?;
        let request = metadata::parse(body, &self.policy(), RequestKind::Update)?;
        if request.client_id.as_deref() != Some(client.id.as_str()) {
            return Err(MetadataError {
                code: metadata::MetadataErrorCode::InvalidClientMetadata,
                description:
                    "client_id: must be the client_id of this registration (RFC 7592 §2.2)".into(),
            }
            .into());
        }
        if let Some(secret) = &request.client_secret {
            // §2.2: "the value of this field MUST match the currently issued client secret".
            let matches = client
                .secret_hash
                .as_deref()
                .is_some_and(|h| random::verify_secret(secret, h));
            if !matches {
                return Err(MetadataError {
                    code: metadata::MetadataErrorCode::InvalidClientMetadata,
                    description: "client_secret: does not match the client's current secret; a client cannot choose its secret (RFC 7592 §2.2)".into(),
                }
                .into());
            }
        }
        // Refused metadata must not cost the client its token: check before rotating.
        prepare(&request.registration, self.clock.now())
            .map_err(|e| refusal(ClientError::Invalid(e), &request.registration))?;
        let access_token = self.rotate(&registration).await?;
        let update = replacement(&request.registration);
        match self.clients.update(client_id, &update, MANAGER).await {
            Ok(updated) => {
                self.managed("update", "ok");
                Ok(Issued {
                    client: updated.client,
                    secret: updated.secret,
                    access_token,
                })
            }
            Err(e) => {
                // The change did not happen: the presented token stays the valid one.
                let back = self
                    .store
                    .rotate_registration_token(
                        client_id,
                        &random::hash_secret(access_token.expose_secret()),
                        &registration.access_token_hash,
                    )
                    .await;
                if let Err(undo) = back {
                    tracing::error!(error = %undo, "could not restore a registration access token");
                }
                Err(refusal(e, &request.registration))
            }
        }
    }

    /// RFC 7592 §2.3: deletes the client with its codes, tokens and consents.
    #[tracing::instrument(skip_all, fields(client_id))]
    pub async fn delete(&self, client_id: &str, token: Option<&str>) -> Result<(), DynamicError> {
        self.authenticate(client_id, token).await?;
        match self.clients.delete(client_id, MANAGER).await {
            Ok(()) => {
                self.managed("delete", "ok");
                Ok(())
            }
            Err(ClientError::NotFound(_)) => {
                Err(DynamicError::InvalidToken("the client no longer exists"))
            }
            Err(e) => Err(DynamicError::Store(e.to_string())),
        }
    }

    /// Whether `client`, registered at least `unused_client_ttl_secs` ago, was never issued
    /// a token: it is gone, whether or not the sweep deleted it yet.
    fn expired(&self, client: &Client, used: bool) -> bool {
        let ttl = self.settings.unused_client_ttl_secs as i64;
        client.dynamic && !used && ttl > 0 && client.created_at <= self.clock.now() - ttl
    }

    fn known_used(&self, client_id: &str) -> bool {
        self.used.read().is_ok_and(|u| u.contains(client_id))
    }

    fn remember_used(&self, client_id: &str) {
        if let Ok(mut used) = self.used.write() {
            if used.len() >= USED_CAPACITY {
                used.clear();
            }
            used.insert(client_id.to_string());
        }
    }

    /// For the endpoints that authenticate clients: false for a dynamically registered client
    /// that expired unused, which answers `invalid_client` as if deleted (so a well-behaved
    /// client registers again). Costs a read only for an old client not yet known to be used.
    pub async fn admits(&self, client: &Client) -> Result<bool, StoreError> {
        if !self.expired(client, false) || self.known_used(&client.id) {
            return Ok(true);
        }
        let used = self
            .store
            .get_dynamic_registration(&client.id)
            .await?
            .is_some_and(|r| r.used_at.is_some());
        if used {
            self.remember_used(&client.id);
        }
        Ok(used)
    }

    /// Records that `client` was issued a token: it no longer expires unused.
    pub async fn note_use(&self, client: &Client) {
        if !client.dynamic || self.known_used(&client.id) {
            return;
        }
        match self
            .store
            .mark_registration_used(&client.id, self.clock.now())
            .await
        {
            Ok(_) => self.remember_used(&client.id),
            Err(e) => {
                tracing::warn!(error = %e, client_id = %client.id, "could not record the first use of a registered client")
            }
        }
    }

    /// Deletes (through the client service: audited, caches told) the registered clients that
    /// were never used within `unused_client_ttl_secs`, and expired initial access tokens;
    /// at most `batch` of each. Returns how many went.
    pub async fn sweep(&self, batch: u32) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut removed = self.store.purge_initial_access_tokens(now, batch).await?;
        let ttl = self.settings.unused_client_ttl_secs as i64;
        if ttl == 0 {
            return Ok(removed);
        }
        for id in self.store.unused_dynamic_clients(now - ttl, batch).await? {
            match self.clients.delete(&id, SWEEPER).await {
                Ok(()) => {
                    removed += 1;
                    self.managed("expired", "ok");
                }
                Err(ClientError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, client_id = %id, "could not delete an unused registered client")
                }
            }
        }
        Ok(removed)
    }
}

/// The registration rules' refusal in RFC 7591 terms, or a storage failure.
fn refusal(e: ClientError, reg: &ClientRegistration) -> DynamicError {
    match &e {
        ClientError::Invalid(re) => match metadata::refusal(re, reg) {
            Some(m) => DynamicError::Metadata(m),
            None => DynamicError::Store(e.to_string()),
        },
        ClientError::NotFound(_) => DynamicError::InvalidToken("the client no longer exists"),
        _ => DynamicError::Store(e.to_string()),
    }
}

/// RFC 7592 §2.2: the update replaces every client metadata field; what the client cannot
/// register (operator settings such as a required second factor) stays as it is.
fn replacement(reg: &ClientRegistration) -> ClientUpdate {
    ClientUpdate {
        name: Some(reg.name.clone()),
        redirect_uris: Some(reg.redirect_uris.clone()),
        post_logout_redirect_uris: Some(reg.post_logout_redirect_uris.clone()),
        grant_types: Some(reg.grant_types.clone()),
        scope: reg.scope.clone(),
        public: Some(reg.public),
        client_secret_post: Some(reg.client_secret_post),
        first_party: Some(false),
        allow_insecure_redirect: Some(false),
        id_token_alg: Some(reg.id_token_alg.clone()),
        backchannel_logout_uri: Some(reg.backchannel_logout_uri.clone()),
        backchannel_logout_session_required: Some(reg.backchannel_logout_session_required),
        jwks: Some(reg.jwks.clone()),
        jwks_uri: Some(reg.jwks_uri.clone()),
        // Asked for, it is set; left out, an operator's `--require-par` stays (RFC 9126 §6).
        require_par: reg.require_par.then_some(true),
        dpop_bound_access_tokens: Some(reg.dpop_bound_access_tokens),
        logo_uri: Some(reg.logo_uri.clone()),
        client_uri: Some(reg.client_uri.clone()),
        application_type: Some(
            reg.application_type
                .clone()
                .unwrap_or_else(|| "web".to_string()),
        ),
        ..ClientUpdate::default()
    }
}

/// Makes an initial access token (RFC 7591 §3) valid for `expires_in` seconds, stores its
/// hash and records who made it. Returns the token (shown once) and when it expires.
pub async fn create_initial_token(
    store: &dyn Store,
    now: Timestamp,
    expires_in: u64,
    actor: &str,
) -> Result<(SecretString, Timestamp), StoreError> {
    let token = random::token(32);
    let expires_at = now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX));
    store
        .create_initial_access_token(&InitialAccessToken {
            token_hash: random::hash_secret(&token),
            created_at: now,
            expires_at,
        })
        .await?;
    let mut event = AuditEvent::new("registration.initial_token_created", now);
    event.actor = Some(actor.to_string());
    event.detail = json!({"expires_at": expires_at});
    store.record_audit(&event).await?;
    Ok((SecretString::from(token), expires_at))
}
