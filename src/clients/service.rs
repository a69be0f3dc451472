//! The operator's use cases for clients — search, register, update, switch off, rotate the
//! secret, delete — shared by the admin API, the console and the CLI. Every change is
//! validated by the one set of registration rules ([`super::prepare`]), audited with the acting
//! operator, and announced so that every instance forgets its cached copy at once.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;

use super::{prepare, ClientDirectory, ClientRegistration, Registered, RegistrationError};
use crate::cache::RedisHandle;
use crate::clock::Clock;
use crate::denylist::DenyList;
use crate::events::{Event, EventType};
use crate::protocol::redirect_uri::RedirectUri;
use crate::random;
use crate::store::{AuditEvent, Client, ClientQuery, Store, StoreError};

/// The built-in client the console signs operators in with (a public, first-party client
/// with PKCE). It is created at start-up and is never the first-party client of the JSON API.
pub const CONSOLE_CLIENT_ID: &str = "portcullis-console";

/// A change to a client; `None` leaves a field as it is. The result is validated as a whole
/// with the rules of `client create`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scope: Option<String>,
    /// Public (no secret, PKCE) or confidential: switching to confidential issues a secret.
    pub public: Option<bool>,
    /// `client_secret_post` rather than `client_secret_basic` for a confidential client.
    pub client_secret_post: Option<bool>,
    pub first_party: Option<bool>,
    pub allow_insecure_redirect: Option<bool>,
    /// `Some(None)` goes back to the deployment default.
    pub id_token_alg: Option<Option<String>>,
    pub access_token_alg: Option<Option<String>>,
    pub always_issue_refresh_token: Option<bool>,
    pub backchannel_logout_uri: Option<Option<String>>,
    pub backchannel_logout_session_required: Option<bool>,
    pub jwks: Option<Option<String>>,
    pub jwks_uri: Option<Option<String>>,
    pub require_mfa: Option<bool>,
    pub disabled: Option<bool>,
    pub require_par: Option<bool>,
    pub logo_uri: Option<Option<String>>,
    pub client_uri: Option<Option<String>>,
    pub application_type: Option<String>,
    pub resources: Option<Vec<String>>,
    pub dpop_bound_access_tokens: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no client with id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] RegistrationError),
    #[error("client {0:?} has no secret to rotate: it is public or authenticates with signed assertions (private_key_jwt)")]
    NoSecret(String),
    #[error("the console's built-in client is managed by Portcullis itself; it cannot be changed or deleted")]
    BuiltIn,
    #[error("storage failed: {0}")]
    Store(String),
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        ClientError::Store(e.to_string())
    }
}

impl ClientError {
    /// Whether the operator's input is at fault rather than the system.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ClientError::Store(_) => false,
            ClientError::Invalid(e) => e.is_bad_input(),
            _ => true,
        }
    }
}

/// A changed client and, when the change gave it one, its new secret (shown once).
#[derive(Debug)]
pub struct Updated {
    pub client: Client,
    pub secret: Option<SecretString>,
    /// The names of the fields that changed, as the audit trail records them.
    pub changed: Vec<&'static str>,
}

/// Built once in `app.rs` (with the directory and Redis of the server), or by the CLI
/// (without a directory: it announces through Redis only).
pub struct ClientService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    directory: Option<Arc<ClientDirectory>>,
    redis: Option<Arc<RedisHandle>>,
    deny: DenyList,
    /// `tokens.access_token_ttl_secs`: how long a denied access token stays listed.
    access_ttl_secs: i64,
}

impl ClientService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        directory: Option<Arc<ClientDirectory>>,
        redis: Option<Arc<RedisHandle>>,
        access_ttl_secs: u64,
    ) -> ClientService {
        ClientService {
            deny: DenyList::new(store.clone(), redis.clone()),
            store,
            clock,
            directory,
            redis,
            access_ttl_secs: access_ttl_secs as i64,
        }
    }

    pub async fn search(&self, query: &ClientQuery) -> Result<(Vec<Client>, u64), ClientError> {
        Ok(self.store.search_clients(query).await?)
    }

    pub async fn get(&self, id: &str) -> Result<Client, ClientError> {
        self.store
            .get_client(id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.to_string()))
    }

    /// Validates and stores a new client (see [`super::register`]).
    pub async fn create(
        &self,
        reg: &ClientRegistration,
        actor: &str,
    ) -> Result<Registered, ClientError> {
        Ok(super::register(&*self.store, reg, self.clock.now(), actor).await?)
    }

    /// Applies `update` to the client, validated as a whole by the registration rules. A
    /// client that starts or stops authenticating with a secret loses its outstanding grants
    /// (a refresh token issued to an authenticated client must not become usable without
    /// authentication, RFC 6749 §10.4).
    pub async fn update(
        &self,
        id: &str,
        update: &ClientUpdate,
        actor: &str,
    ) -> Result<Updated, ClientError> {
        if id == CONSOLE_CLIENT_ID {
            return Err(ClientError::BuiltIn);
        }
        let before = self.get(id).await?;
        let now = self.clock.now();
        let (mut client, secret) = apply(&before, update, now)?;
        if update.resources.is_some() {
            super::check_resources_exist(&*self.store, &client.resources)
                .await
                .map_err(ClientError::Invalid)?;
        }
        client.updated_at = now;
        let mut changed = changed_fields(&before, &client);
        let method_changed = before.token_endpoint_auth_method != client.token_endpoint_auth_method;
        if !changed.is_empty() {
            let updated = self.event(
                EventType::ClientUpdated,
                id,
                actor,
                json!({"change": "registration", "changed": changed}),
            );
            if !self
                .store
                .update_client(&client, method_changed, &[updated])
                .await?
            {
                return Err(ClientError::NotFound(id.to_string()));
            }
            if method_changed {
                self.revoke_grants(id, now).await?;
            }
            let detail = json!({"changed": changed, "secret_issued": secret.is_some()});
            self.audit("client.updated", id, actor, detail).await?;
        }
        if let Some(disabled) = update.disabled.filter(|d| *d != before.disabled) {
            client = self.switch(id, disabled, actor).await?;
            changed.push("disabled");
        }
        self.changed().await;
        Ok(Updated {
            client,
            secret,
            changed,
        })
    }

    /// Switches a client off (every endpoint treats it as unknown, its refresh tokens and
    /// codes are revoked, its access tokens denied) or on again.
    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        actor: &str,
    ) -> Result<Client, ClientError> {
        if id == CONSOLE_CLIENT_ID {
            return Err(ClientError::BuiltIn);
        }
        let client = self.switch(id, disabled, actor).await?;
        self.changed().await;
        Ok(client)
    }

    async fn switch(&self, id: &str, disabled: bool, actor: &str) -> Result<Client, ClientError> {
        let now = self.clock.now();
        let change = if disabled { "disabled" } else { "enabled" };
        let updated = self.event(
            EventType::ClientUpdated,
            id,
            actor,
            json!({"change": change}),
        );
        if !self
            .store
            .set_client_disabled(id, disabled, now, &[updated])
            .await?
        {
            return Err(ClientError::NotFound(id.to_string()));
        }
        if disabled {
            self.revoke_grants(id, now).await?;
        }
        let kind = if disabled {
            "client.disabled"
        } else {
            "client.enabled"
        };
        self.audit(kind, id, actor, json!({})).await?;
        self.get(id).await
    }

    async fn revoke_grants(&self, id: &str, now: i64) -> Result<(), ClientError> {
        let jtis = self.store.revoke_client_grants(id, now).await?;
        for jti in jtis {
            if let Err(e) = self.deny.deny(&jti, now + self.access_ttl_secs, now).await {
                tracing::error!(error = %e, "could not deny an access token");
            }
        }
        Ok(())
    }

    /// A new secret for a confidential client; the old one stops working at once.
    pub async fn rotate_secret(&self, id: &str, actor: &str) -> Result<SecretString, ClientError> {
        if id == CONSOLE_CLIENT_ID {
            return Err(ClientError::BuiltIn);
        }
        let client = self.get(id).await?;
        if client.secret_hash.is_none() {
            return Err(ClientError::NoSecret(id.to_string()));
        }
        let secret = random::token(32);
        let now = self.clock.now();
        if !self
            .store
            .set_client_secret(
                id,
                &random::hash_secret(&secret),
                now,
                &[self.event(
                    EventType::ClientUpdated,
                    id,
                    actor,
                    json!({"change": "secret_rotated"}),
                )],
            )
            .await?
        {
            return Err(ClientError::NoSecret(id.to_string()));
        }
        self.audit("client.secret_rotated", id, actor, json!({}))
            .await?;
        self.changed().await;
        Ok(SecretString::from(secret))
    }

    /// Deletes a client with its codes, tokens and consents.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<(), ClientError> {
        if id == CONSOLE_CLIENT_ID {
            return Err(ClientError::BuiltIn);
        }
        self.get(id).await?;
        // The rows go with the client; the access tokens they were issued with are denied.
        self.revoke_grants(id, self.clock.now()).await?;
        let deleted = self.event(EventType::ClientDeleted, id, actor, json!({}));
        if !self.store.delete_client(id, &[deleted]).await? {
            return Err(ClientError::NotFound(id.to_string()));
        }
        self.audit("client.deleted", id, actor, json!({})).await?;
        self.changed().await;
        Ok(())
    }

    /// Whether running servers were told through Redis (else they notice within
    /// `database.client_cache_secs`).
    pub fn announces(&self) -> bool {
        self.redis.is_some()
    }

    /// Makes sure the console's client exists with the redirect URI of this issuer.
    pub async fn ensure_console_client(&self, issuer: &str) -> Result<(), ClientError> {
        let redirect = format!("{}/console/callback", issuer.trim_end_matches('/'));
        let now = self.clock.now();
        let wanted = console_client(&redirect, now);
        match self.store.get_client(CONSOLE_CLIENT_ID).await? {
            // The built-in console client is no operator's change: no event.
            None => match self.store.create_client(&wanted, &[]).await {
                Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Some(existing) if existing.redirect_uris != wanted.redirect_uris => {
                let client = Client {
                    redirect_uris: wanted.redirect_uris,
                    updated_at: now,
                    ..existing
                };
                self.store.update_client(&client, false, &[]).await?;
                self.audit(
                    "client.updated",
                    CONSOLE_CLIENT_ID,
                    "portcullis",
                    json!({"changed": ["redirect_uris"]}),
                )
                .await?;
                self.changed().await;
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// A `client.*` event; `actor` is named when it is a user id (not "cli", "portcullis").
    fn event(&self, kind: EventType, id: &str, actor: &str, data: serde_json::Value) -> Event {
        Event::new(kind, self.clock.now())
            .subject(id)
            .client(Some(id))
            .actor(uuid::Uuid::parse_str(actor).ok())
            .data(data)
    }

    async fn audit(
        &self,
        kind: &str,
        id: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), ClientError> {
        let mut event = AuditEvent::new(kind, self.clock.now());
        event.actor = Some(actor.to_string());
        event.client_id = Some(id.to_string());
        event.detail = detail;
        self.store.record_audit(&event).await?;
        Ok(())
    }

    /// This instance forgets its cached clients now; the others when Redis tells them.
    async fn changed(&self) {
        if let Some(directory) = &self.directory {
            directory.invalidate();
        }
        if let Some(redis) = &self.redis {
            if let Err(e) = redis.publish("clients").await {
                tracing::warn!(error = %e, "could not announce a client change; other instances notice within database.client_cache_secs");
            }
        }
    }
}

/// The console's built-in client: public (PKCE), first-party (no consent), one redirect URI.
fn console_client(redirect: &str, now: i64) -> Client {
    Client {
        id: CONSOLE_CLIENT_ID.to_string(),
        name: "Portcullis console".to_string(),
        secret_hash: None,
        redirect_uris: vec![redirect.to_string()],
        post_logout_redirect_uris: vec![],
        grant_types: vec![super::GRANT_AUTHORIZATION_CODE.to_string()],
        scope: "email openid profile".to_string(),
        token_endpoint_auth_method: "none".to_string(),
        first_party: true,
        id_token_signed_response_alg: None,
        access_token_signed_response_alg: None,
        always_issue_refresh_token: false,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        jwks: None,
        jwks_uri: None,
        require_mfa: false,
        disabled: false,
        require_par: false,
        dynamic: false,
        logo_uri: None,
        client_uri: None,
        application_type: "web".to_string(),
        resources: vec![],
        dpop_bound_access_tokens: false,
        created_at: now,
        updated_at: now,
    }
}

/// The registration that `before` with `update` applied amounts to, validated by the same
/// rules as a new client; then the validated fields are carried over to the stored client
/// (which keeps its id, creation time and, unless its kind changes, its secret).
fn apply(
    before: &Client,
    update: &ClientUpdate,
    now: i64,
) -> Result<(Client, Option<SecretString>), ClientError> {
    // A client registered with --allow-insecure-redirect keeps that allowance for its
    // existing URIs; new URIs need it asked for again.
    let uris_change = update.redirect_uris.is_some()
        || update.post_logout_redirect_uris.is_some()
        || update.backchannel_logout_uri.is_some();
    let was_insecure = before
        .redirect_uris
        .iter()
        .chain(&before.post_logout_redirect_uris)
        .any(|u| RedirectUri::parse(u, false).is_err())
        || before.backchannel_logout_uri.as_deref().is_some_and(|u| {
            url::Url::parse(u).is_ok_and(|u| {
                u.scheme() == "http" && !crate::protocol::redirect_uri::is_loopback(&u)
            })
        });
    let inherit_insecure = was_insecure && !uris_change;
    let pick = |new: &Option<Option<String>>, old: &Option<String>| match new {
        Some(v) => v.clone(),
        None => old.clone(),
    };
    let reg = ClientRegistration {
        name: update.name.clone().unwrap_or_else(|| before.name.clone()),
        redirect_uris: update
            .redirect_uris
            .clone()
            .unwrap_or_else(|| before.redirect_uris.clone()),
        post_logout_redirect_uris: update
            .post_logout_redirect_uris
            .clone()
            .unwrap_or_else(|| before.post_logout_redirect_uris.clone()),
        grant_types: update
            .grant_types
            .clone()
            .unwrap_or_else(|| before.grant_types.clone()),
        scope: Some(update.scope.clone().unwrap_or_else(|| before.scope.clone())),
        public: update.public.unwrap_or_else(|| before.is_public()),
        client_secret_post: update
            .client_secret_post
            .unwrap_or(before.token_endpoint_auth_method == "client_secret_post"),
        first_party: update.first_party.unwrap_or(before.first_party),
        allow_insecure_redirect: update.allow_insecure_redirect.unwrap_or(inherit_insecure),
        id_token_alg: pick(&update.id_token_alg, &before.id_token_signed_response_alg),
        access_token_alg: pick(
            &update.access_token_alg,
            &before.access_token_signed_response_alg,
        ),
        always_issue_refresh_token: update
            .always_issue_refresh_token
            .unwrap_or(before.always_issue_refresh_token),
        backchannel_logout_uri: pick(
            &update.backchannel_logout_uri,
            &before.backchannel_logout_uri,
        ),
        backchannel_logout_session_required: update
            .backchannel_logout_session_required
            .unwrap_or(before.backchannel_logout_session_required),
        jwks: pick(&update.jwks, &before.jwks),
        jwks_uri: pick(&update.jwks_uri, &before.jwks_uri),
        require_mfa: update.require_mfa.unwrap_or(before.require_mfa),
        require_par: update.require_par.unwrap_or(before.require_par),
        dynamic: before.dynamic,
        logo_uri: pick(&update.logo_uri, &before.logo_uri),
        client_uri: pick(&update.client_uri, &before.client_uri),
        application_type: Some(
            update
                .application_type
                .clone()
                .unwrap_or_else(|| before.application_type.clone()),
        ),
        resources: update
            .resources
            .clone()
            .unwrap_or_else(|| before.resources.clone()),
        dpop_bound_access_tokens: update
            .dpop_bound_access_tokens
            .unwrap_or(before.dpop_bound_access_tokens),
    };
    let fresh = prepare(&reg, now)?;
    let method = fresh.client.token_endpoint_auth_method.clone();
    // The stored secret stays unless the client stops using one or starts to.
    let (secret_hash, secret) = match (method.as_str(), &before.secret_hash) {
        ("client_secret_basic" | "client_secret_post", Some(old)) => (Some(old.clone()), None),
        ("client_secret_basic" | "client_secret_post", None) => {
            (fresh.client.secret_hash.clone(), fresh.secret)
        }
        _ => (None, None),
    };
    let client = Client {
        id: before.id.clone(),
        secret_hash,
        created_at: before.created_at,
        updated_at: before.updated_at,
        disabled: before.disabled,
        ..fresh.client
    };
    Ok((client, secret))
}

fn changed_fields(a: &Client, b: &Client) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            out.push(name);
        }
    };
    check("name", a.name == b.name);
    check("redirect_uris", a.redirect_uris == b.redirect_uris);
    check(
        "post_logout_redirect_uris",
        a.post_logout_redirect_uris == b.post_logout_redirect_uris,
    );
    check("grant_types", a.grant_types == b.grant_types);
    check("scope", a.scope == b.scope);
    check(
        "token_endpoint_auth_method",
        a.token_endpoint_auth_method == b.token_endpoint_auth_method,
    );
    check("first_party", a.first_party == b.first_party);
    check(
        "id_token_signed_response_alg",
        a.id_token_signed_response_alg == b.id_token_signed_response_alg,
    );
    check(
        "access_token_signed_response_alg",
        a.access_token_signed_response_alg == b.access_token_signed_response_alg,
    );
    check(
        "always_issue_refresh_token",
        a.always_issue_refresh_token == b.always_issue_refresh_token,
    );
    check(
        "backchannel_logout_uri",
        a.backchannel_logout_uri == b.backchannel_logout_uri,
    );
    check(
        "backchannel_logout_session_required",
        a.backchannel_logout_session_required == b.backchannel_logout_session_required,
    );
    check("jwks", a.jwks == b.jwks);
    check("jwks_uri", a.jwks_uri == b.jwks_uri);
    check("require_mfa", a.require_mfa == b.require_mfa);
    check("require_par", a.require_par == b.require_par);
    check("logo_uri", a.logo_uri == b.logo_uri);
    check("client_uri", a.client_uri == b.client_uri);
    check("application_type", a.application_type == b.application_type);
    check("resources", a.resources == b.resources);
    check(
        "dpop_bound_access_tokens",
        a.dpop_bound_access_tokens == b.dpop_bound_access_tokens,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confidential() -> Client {
        let reg = ClientRegistration {
            name: "Shop".into(),
            redirect_uris: vec!["https://shop.example.com/cb".into()],
            ..Default::default()
        };
        prepare(&reg, 10).unwrap().client
    }

    #[test]
    fn an_update_keeps_id_secret_and_creation_and_names_what_changed() {
        let before = confidential();
        let update = ClientUpdate {
            name: Some("Shop 2".into()),
            require_mfa: Some(true),
            ..Default::default()
        };
        let (after, secret) = apply(&before, &update, 20).unwrap();
        assert!(secret.is_none());
        assert_eq!(after.id, before.id);
        assert_eq!(after.secret_hash, before.secret_hash);
        assert_eq!(after.created_at, 10);
        assert_eq!(changed_fields(&before, &after), ["name", "require_mfa"]);
    }

    #[test]
    fn an_update_is_validated_like_a_registration() {
        let before = confidential();
        let update = ClientUpdate {
            redirect_uris: Some(vec!["http://evil.example.com/cb".into()]),
            ..Default::default()
        };
        assert!(matches!(
            apply(&before, &update, 20),
            Err(ClientError::Invalid(RegistrationError::RedirectUri(_)))
        ));
        let update = ClientUpdate {
            redirect_uris: Some(vec![]),
            ..Default::default()
        };
        assert!(matches!(
            apply(&before, &update, 20),
            Err(ClientError::Invalid(RegistrationError::NoRedirectUri))
        ));
    }

    #[test]
    fn switching_kind_drops_or_issues_the_secret() {
        let before = confidential();
        let to_public = ClientUpdate {
            public: Some(true),
            ..Default::default()
        };
        let (public, secret) = apply(&before, &to_public, 20).unwrap();
        assert!(public.secret_hash.is_none() && secret.is_none());
        assert_eq!(public.token_endpoint_auth_method, "none");
        let back = ClientUpdate {
            public: Some(false),
            ..Default::default()
        };
        let (confidential, secret) = apply(&public, &back, 30).unwrap();
        assert!(secret.is_some() && confidential.secret_hash.is_some());
    }
}
