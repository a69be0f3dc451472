//! Clients: the registration rules (an operator's request turned into a valid `Client`, its
//! secret shown once and only its hash stored; used by the CLI and any future admin API) and
//! the cached directory the endpoints read.
//! Decides what a valid client is; never touches HTTP, and never stores a secret in clear.

pub mod directory;
pub mod dynamic;
pub mod service;

pub use directory::ClientDirectory;
pub use service::{ClientError, ClientService, ClientUpdate, CONSOLE_CLIENT_ID};

use std::fmt;

use secrecy::SecretString;

use crate::protocol::redirect_uri::{RedirectUri, RedirectUriError};
use crate::protocol::scope::{Scope, ScopeError};
use crate::random;
use crate::store::{AuditEvent, Client, Store, StoreError, Timestamp};

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8628 §3.4; the CLI also takes `device_code` as a short form ([`normalize_grant`]).
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8693 §2.1; the CLI also takes `token_exchange` as a short form.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const KNOWN_GRANTS: [&str; 5] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_TOKEN_EXCHANGE,
];

/// A grant as an operator may type it: `device_code` stands for the device grant's URN.
pub fn normalize_grant(grant: &str) -> String {
    match grant {
        "device_code" => GRANT_DEVICE_CODE.to_string(),
        "token_exchange" => GRANT_TOKEN_EXCHANGE.to_string(),
        other => other.to_string(),
    }
}
pub const DEFAULT_SCOPE: &str = "openid profile email";

/// What an operator asks for.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistration {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Empty means `authorization_code`.
    pub grant_types: Vec<String>,
    /// `None` means [`DEFAULT_SCOPE`].
    pub scope: Option<String>,
    pub public: bool,
    /// A confidential client that sends its secret in the body: `client_secret_post` rather
    /// than `client_secret_basic` (RFC 7591 §2); the token endpoint accepts either.
    pub client_secret_post: bool,
    pub first_party: bool,
    pub allow_insecure_redirect: bool,
    /// ID token algorithm (RS256, PS256, ES256, EdDSA); `None` = deployment default.
    pub id_token_alg: Option<String>,
    /// Access token algorithm; `None` = deployment default.
    pub access_token_alg: Option<String>,
    /// Issue refresh tokens without `offline_access` being requested.
    pub always_issue_refresh_token: bool,
    /// OIDC Back-Channel Logout: where logout tokens are POSTed.
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    /// `private_key_jwt` (RFC 7523): the client's public JWK Set, inline JSON...
    pub jwks: Option<String>,
    /// ...or its URL. Either makes the client authenticate with signed assertions, no secret.
    pub jwks_uri: Option<String>,
    /// Codes only after a second factor (`--require-mfa`).
    pub require_mfa: bool,
    /// Authorization requests only through `/par` (`--require-par`, RFC 9126 §6).
    pub require_par: bool,
    /// Registered by the client itself (RFC 7591): never first-party.
    pub dynamic: bool,
    /// RFC 7591 §2: pages about the client, shown on the consent page.
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    /// `web` (default) or `native` (OIDC Dynamic Client Registration §2).
    pub application_type: Option<String>,
    /// RFC 8707: the registered APIs the client may ask tokens for (`--resource`).
    pub resources: Vec<String>,
    /// RFC 9449 §5.2 `dpop_bound_access_tokens` (`--dpop-bound`).
    pub dpop_bound_access_tokens: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the client name must be 1 to 100 characters")]
    Name,
    #[error(transparent)]
    RedirectUri(#[from] RedirectUriError),
    #[error("unknown grant {0:?}; expected one of authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:device_code (or device_code), urn:ietf:params:oauth:grant-type:token-exchange (or token_exchange)")]
    UnknownGrant(String),
    #[error("the authorization_code grant needs at least one --redirect-uri")]
    NoRedirectUri,
    #[error(
        "a public client cannot use client_credentials: it has no secret to authenticate with"
    )]
    PublicClientCredentials,
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("the back-channel logout URI {0:?} must be an absolute https URL (http only on loopback), without fragment")]
    BackchannelUri(String),
    #[error("--jwks must be a JSON Web Key Set with public keys: {0}")]
    Jwks(String),
    #[error("the JWKS URI {0:?} must be an absolute https URL")]
    JwksUri(String),
    #[error("give either --jwks or --jwks-uri, not both; and not for a public client")]
    KeysConflict,
    #[error("unknown signing algorithm {0:?}; expected one of RS256, PS256, ES256, EdDSA")]
    UnknownAlg(String),
    #[error("the scope must not be empty")]
    EmptyScope,
    #[error("the {0} {1:?} must be an absolute https URL (http only on loopback)")]
    InfoUri(&'static str, String),
    #[error("unknown application type {0:?}; expected web or native")]
    ApplicationType(String),
    #[error("a public client cannot use token exchange: RFC 8693 needs an authenticated client")]
    PublicTokenExchange,
    #[error("{0}")]
    Resource(String),
    #[error("no resource {0:?} is registered; register it with `portcullis resource create`")]
    UnknownResource(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistrationError {
    /// Whether the operator's input is at fault (exit status 2) rather than the system.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RegistrationError::Store(_))
    }
}

/// A registered client and, for a confidential client, its secret (never stored in clear).
#[derive(Debug)]
pub struct Registered {
    pub client: Client,
    pub secret: Option<SecretString>,
}

/// Validates everything first, so that a refused registration writes nothing.
pub fn prepare(reg: &ClientRegistration, now: Timestamp) -> Result<Registered, RegistrationError> {
    let name = reg.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(RegistrationError::Name);
    }
    let redirect_uris = parse_uris(&reg.redirect_uris, reg.allow_insecure_redirect)?;
    let post_logout_redirect_uris =
        parse_uris(&reg.post_logout_redirect_uris, reg.allow_insecure_redirect)?;
    let mut grant_types = Vec::new();
    for g in reg.grant_types.iter().map(|g| normalize_grant(g)) {
        if !KNOWN_GRANTS.contains(&g.as_str()) {
            return Err(RegistrationError::UnknownGrant(g));
        }
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    if grant_types.is_empty() {
        grant_types.push(GRANT_AUTHORIZATION_CODE.to_string());
    }
    if grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) && redirect_uris.is_empty() {
        return Err(RegistrationError::NoRedirectUri);
    }
    if reg.public && grant_types.iter().any(|g| g == GRANT_CLIENT_CREDENTIALS) {
        return Err(RegistrationError::PublicClientCredentials);
    }
    if reg.public && grant_types.iter().any(|g| g == GRANT_TOKEN_EXCHANGE) {
        return Err(RegistrationError::PublicTokenExchange);
    }
    let mut resources: Vec<String> = Vec::new();
    for raw in &reg.resources {
        let id = crate::protocol::resource::parse_identifier(raw)
            .map_err(RegistrationError::Resource)?;
        if !resources.contains(&id) {
            resources.push(id);
        }
    }
    let default_scope = if grant_types.iter().any(|g| g == GRANT_REFRESH_TOKEN) {
        "openid profile email offline_access"
    } else {
        DEFAULT_SCOPE
    };
    let scope = Scope::parse(reg.scope.as_deref().unwrap_or(default_scope))?;
    let backchannel = match &reg.backchannel_logout_uri {
        None => None,
        Some(raw) => {
            let ok = url::Url::parse(raw).is_ok_and(|u| {
                u.fragment().is_none()
                    && (u.scheme() == "https"
                        || (u.scheme() == "http"
                            && (crate::protocol::redirect_uri::is_loopback(&u)
                                || reg.allow_insecure_redirect)))
            });
            if !ok {
                return Err(RegistrationError::BackchannelUri(raw.clone()));
            }
            Some(raw.clone())
        }
    };
    if (reg.jwks.is_some() && reg.jwks_uri.is_some())
        || (reg.public && (reg.jwks.is_some() || reg.jwks_uri.is_some()))
    {
        return Err(RegistrationError::KeysConflict);
    }
    if let Some(jwks) = &reg.jwks {
        crate::protocol::assertion::parse_jwks(jwks).map_err(RegistrationError::Jwks)?;
    }
    if let Some(uri) = &reg.jwks_uri {
        let ok = url::Url::parse(uri).is_ok_and(|u| {
            u.scheme() == "https"
                || (u.scheme() == "http" && crate::protocol::redirect_uri::is_loopback(&u))
        });
        if !ok {
            return Err(RegistrationError::JwksUri(uri.clone()));
        }
    }
    for (field, uri) in [("logo_uri", &reg.logo_uri), ("client_uri", &reg.client_uri)] {
        if let Some(uri) = uri {
            let ok = url::Url::parse(uri).is_ok_and(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http"
                        && (crate::protocol::redirect_uri::is_loopback(&u)
                            || reg.allow_insecure_redirect))
            });
            if !ok {
                return Err(RegistrationError::InfoUri(field, uri.clone()));
            }
        }
    }
    let application_type = match reg.application_type.as_deref() {
        None | Some("web") => "web",
        Some("native") => "native",
        Some(other) => return Err(RegistrationError::ApplicationType(other.to_string())),
    };
    let uses_keys = reg.jwks.is_some() || reg.jwks_uri.is_some();
    if scope.is_empty() {
        return Err(RegistrationError::EmptyScope);
    }
    for alg in [&reg.id_token_alg, &reg.access_token_alg]
        .into_iter()
        .flatten()
    {
        if crate::keys::SigningAlg::parse(alg).is_none() {
            return Err(RegistrationError::UnknownAlg(alg.clone()));
        }
    }
    let secret = (!reg.public && !uses_keys).then(|| random::token(32));
    let client = Client {
        id: random::hex_token(12),
        name: name.to_string(),
        secret_hash: secret.as_deref().map(random::hash_secret),
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        scope: scope.to_string(),
        token_endpoint_auth_method: if reg.public {
            "none"
        } else if uses_keys {
            "private_key_jwt"
        } else if reg.client_secret_post {
            "client_secret_post"
        } else {
            "client_secret_basic"
        }
        .to_string(),
        first_party: reg.first_party && !reg.dynamic,
        id_token_signed_response_alg: reg.id_token_alg.clone(),
        access_token_signed_response_alg: reg.access_token_alg.clone(),
        always_issue_refresh_token: reg.always_issue_refresh_token,
        backchannel_logout_uri: backchannel,
        backchannel_logout_session_required: reg.backchannel_logout_session_required,
        jwks: reg.jwks.clone(),
        jwks_uri: reg.jwks_uri.clone(),
        require_mfa: reg.require_mfa,
        disabled: false,
        require_par: reg.require_par,
        dynamic: reg.dynamic,
        logo_uri: reg.logo_uri.clone(),
        client_uri: reg.client_uri.clone(),
        application_type: application_type.to_string(),
        resources,
        dpop_bound_access_tokens: reg.dpop_bound_access_tokens,
        created_at: now,
        updated_at: now,
    };
    Ok(Registered {
        client,
        secret: secret.map(SecretString::from),
    })
}

/// Validates, stores the client and records an audit event.
pub async fn register(
    store: &dyn Store,
    reg: &ClientRegistration,
    now: Timestamp,
    actor: &str,
) -> Result<Registered, RegistrationError> {
    let registered = prepare(reg, now)?;
    check_resources_exist(store, &registered.client.resources).await?;
    let created = crate::events::Event::new(crate::events::EventType::ClientCreated, now)
        .subject(&registered.client.id)
        .client(Some(&registered.client.id))
        .actor(uuid::Uuid::parse_str(actor).ok())
        .data(serde_json::json!({
            "name": registered.client.name,
            "dynamic": registered.client.dynamic,
        }));
    store.create_client(&registered.client, &[created]).await?;
    let mut event = AuditEvent::new("client.created", now);
    event.actor = Some(actor.to_string());
    event.client_id = Some(registered.client.id.clone());
    event.detail = serde_json::json!({
        "name": registered.client.name,
        "public": registered.client.is_public(),
        "grant_types": registered.client.grant_types,
    });
    store.record_audit(&event).await?;
    Ok(registered)
}

/// Every resource a client is allowed must be registered (RFC 8707 resources are the
/// operator's list of APIs, not free text).
pub async fn check_resources_exist(
    store: &dyn Store,
    resources: &[String],
) -> Result<(), RegistrationError> {
    for id in resources {
        if store.get_resource(id).await?.is_none() {
            return Err(RegistrationError::UnknownResource(id.clone()));
        }
    }
    Ok(())
}

/// A stored confidential client with a loopback `http` redirect URI. Earlier versions also
/// redirected such a client to any other port of that URI; RFC 9700 §2.1 keeps port variation
/// for native apps (RFC 8252 §7.3), so it now gets exactly the registered port. Nothing is
/// changed for the operator: this names the client and what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortVariationNotice {
    pub client_id: String,
    pub name: String,
    pub redirect_uri: String,
}

impl PortVariationNotice {
    /// Both fixes keep the `client_id`: `client update` changes the client in place.
    pub const ADVICE: &'static str = "register each port the app uses exactly: \
        `portcullis client update ID --redirect-uri URI` with the URI once per port, or, if it \
        is a native app, make it a public client (`portcullis client update ID --public true`, \
        PKCE) to keep any port";
}

impl fmt::Display for PortVariationNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "confidential client {} ({:?}) has the loopback redirect URI {}: only that exact \
             port is accepted now (RFC 9700 §2.1), other ports are refused; {}",
            self.client_id,
            self.name,
            self.redirect_uri,
            Self::ADVICE
        )
    }
}

/// The confidential clients (and URIs) that may have relied on loopback port variation.
pub fn port_variation_notices(clients: &[Client]) -> Vec<PortVariationNotice> {
    clients
        .iter()
        .filter(|c| !c.is_public())
        .flat_map(|c| {
            c.redirect_uris
                .iter()
                .filter(|uri| {
                    url::Url::parse(uri).is_ok_and(|u| {
                        u.scheme() == "http" && crate::protocol::redirect_uri::is_loopback(&u)
                    })
                })
                .map(|uri| PortVariationNotice {
                    client_id: c.id.clone(),
                    name: c.name.clone(),
                    redirect_uri: uri.clone(),
                })
        })
        .collect()
}

fn parse_uris(raw: &[String], allow_insecure: bool) -> Result<Vec<String>, RedirectUriError> {
    let mut out: Vec<String> = Vec::new();
    for r in raw {
        let uri = RedirectUri::parse(r, allow_insecure)?.into_string();
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> ClientRegistration {
        ClientRegistration {
            name: "demo".into(),
            redirect_uris: vec!["http://localhost:3000/cb".into()],
            ..Default::default()
        }
    }

    #[test]
    fn confidential_clients_get_a_secret_that_is_stored_hashed() {
        let r = prepare(&reg(), 1).unwrap();
        let secret = r.secret.expect("secret");
        use secrecy::ExposeSecret;
        assert_eq!(
            r.client.secret_hash.as_deref(),
            Some(random::hash_secret(secret.expose_secret()).as_str())
        );
        assert_eq!(r.client.grant_types, vec!["authorization_code"]);
        assert_eq!(r.client.scope, "email openid profile");
    }

    #[test]
    fn public_clients_have_no_secret_and_no_client_credentials() {
        let mut r = reg();
        r.public = true;
        let p = prepare(&r, 1).unwrap();
        assert!(p.secret.is_none());
        assert_eq!(p.client.token_endpoint_auth_method, "none");
        r.grant_types = vec!["client_credentials".into()];
        assert!(matches!(
            prepare(&r, 1),
            Err(RegistrationError::PublicClientCredentials)
        ));
    }

    #[test]
    fn bad_input_is_named() {
        let mut r = reg();
        r.grant_types = vec!["password".into()];
        assert!(prepare(&r, 1)
            .unwrap_err()
            .to_string()
            .contains("\"password\""));
        let mut r = reg();
        r.redirect_uris.clear();
        assert!(matches!(
            prepare(&r, 1),
            Err(RegistrationError::NoRedirectUri)
        ));
    }

    #[test]
    fn only_confidential_clients_with_loopback_http_uris_are_noticed() {
        let mut confidential = reg();
        confidential.redirect_uris = vec![
            "http://localhost:7777/cb".into(),
            "https://app.example.com/cb".into(),
            "http://127.0.0.1/cb".into(),
        ];
        let confidential = prepare(&confidential, 1).unwrap().client;
        let mut public = reg();
        public.public = true;
        let public = prepare(&public, 1).unwrap().client;
        let notices = port_variation_notices(&[confidential.clone(), public]);
        let uris: Vec<&str> = notices.iter().map(|n| n.redirect_uri.as_str()).collect();
        assert_eq!(uris, ["http://localhost:7777/cb", "http://127.0.0.1/cb"]);
        assert!(notices.iter().all(|n| n.client_id == confidential.id));
        let text = notices[0].to_string();
        assert!(text.contains(&confidential.id) && text.contains("http://localhost:7777/cb"));
        assert!(
            text.contains("--public") && text.contains("once per port"),
            "{text}"
        );
    }
}
