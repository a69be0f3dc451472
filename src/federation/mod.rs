//! Upstream sign-in ("Sign in with …"): the providers of `[[upstream]]`, the authorization
//! code flow to them (PKCE, `state`, `nonce`; `oidc.rs` with the `openidconnect` crate,
//! `oauth2.rs` for plain OAuth 2.0 and GitHub), and who the person is here (`linking.rs`).
//! Decides; never renders a page, never logs a code, token or verifier.
//!
//! A flow's state lives server-side: a single-use record named by the SHA-256 of the random
//! `state`, bound to the browser that started it by the hash of a cookie nonce. The PKCE
//! verifier and the OIDC nonce are not stored at all: they are HMACs of the `state` under a
//! key derived from the master key, so the callback recomputes them and a stolen database
//! (or a leaked `state`) yields neither.

pub mod linking;
pub mod oauth2;
pub mod oidc;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::accounts::service::RequestMeta;
use crate::clock::Clock;
use crate::config::{Settings, UpstreamKind, UpstreamSettings};
use crate::keys::KeyManager;
use crate::metrics::Metrics;
use crate::random;
use crate::store::{AuditEvent, MfaChallenge, Store};

/// The purpose of a flow's record in the challenge table.
const FLOW_PURPOSE: &str = "upstream_flow";
/// How long a person has at the upstream before the flow expires.
pub const FLOW_TTL_SECS: i64 = 600;
const METRIC: &str = "portcullis_upstream_sign_ins_total";

/// RFC 8176 has no value for "signed in at another identity provider": Portcullis records
/// `fed` (federated), followed by the upstream's own `amr` values.
pub const FEDERATED_AMR: &str = "fed";

/// The `amr` values of RFC 8176 §2 an upstream's may contribute (others are dropped).
const KNOWN_AMR: [&str; 21] = [
    "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pop", "pwd", "rba",
    "retina", "sc", "sms", "swk", "tel", "user", "vbm", "wia",
];

/// A configured provider, with its secret resolved.
pub struct Provider {
    pub config: UpstreamSettings,
    secret: Option<SecretString>,
}

impl Provider {
    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    fn secret(&self) -> Option<String> {
        self.secret.as_ref().map(|s| s.expose_secret().to_string())
    }
}

/// What the login page shows for one provider.
#[derive(Debug, Clone)]
pub struct ProviderButton {
    pub id: String,
    pub name: String,
    pub icon_url: Option<String>,
}

/// What the authorization request being signed in for asks of the sign-in, passed on to the
/// upstream (OIDC Core §3.1.2.1) so that re-authentication there is real.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Hints {
    pub prompt_login: bool,
    pub max_age: Option<i64>,
    /// A relying party demands it: the upstream's `auth_time` must prove it, and a provider
    /// that cannot (plain OAuth 2.0) is refused. Otherwise (linking from the security page)
    /// it is asked for, as a courtesy.
    pub demanded: bool,
}

impl Hints {
    pub fn any(&self) -> bool {
        self.prompt_login || self.max_age.is_some()
    }
}

/// Clock skew allowed when comparing the upstream's `auth_time` with ours.
const AUTH_TIME_SKEW_SECS: i64 = 30;

/// The record of a flow in progress.
#[derive(Debug, Serialize, Deserialize)]
struct FlowData {
    provider: String,
    /// Where the sign-in goes on: an authorization request, or one of our pages.
    return_to: String,
    /// SHA-256 of the nonce in the starting browser's cookie.
    browser_hash: String,
    /// Set when a signed-in person links this provider from the security page.
    link_user: Option<Uuid>,
    #[serde(default)]
    hints: Hints,
}

/// Who the upstream says the person is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProfile {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// The upstream's `amr` (OIDC), RFC 8176 values only.
    pub amr: Vec<String>,
}

impl UpstreamProfile {
    /// The `amr` of a session from this sign-in: `fed`, then — from a provider trusted for
    /// it (`trust_amr`) — the upstream's methods.
    pub fn session_amr(&self, trust_amr: bool) -> Vec<String> {
        let mut amr = vec![FEDERATED_AMR.to_string()];
        for m in self.amr.iter().filter(|_| trust_amr) {
            if KNOWN_AMR.contains(&m.as_str()) && !amr.contains(m) {
                amr.push(m.clone());
            }
        }
        amr
    }
}

/// What the callback brought back.
#[derive(Debug, Default)]
pub struct Callback {
    pub state: String,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207 `iss`.
    pub iss: Option<String>,
}

/// A flow that came back with a valid identity.
#[derive(Debug)]
pub struct Finished {
    pub profile: UpstreamProfile,
    pub return_to: String,
    pub link_user: Option<Uuid>,
}

/// Why an upstream sign-in did not succeed. Each ends on a page saying so.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("there is no sign-in provider {0:?} on this server")]
    UnknownProvider(String),
    #[error("this sign-in expired or was already finished; start again")]
    BadState,
    #[error("finish the sign-in in the browser where you started it")]
    OtherBrowser,
    /// The upstream answered with an error (RFC 6749 §4.1.2.1), e.g. `access_denied`.
    #[error("the provider did not sign you in ({code})")]
    Denied { code: String },
    #[error("the provider cannot be reached right now; try again later")]
    Unreachable(String),
    /// The code exchange failed, or the answer was malformed.
    #[error("the provider's answer could not be used; try again")]
    BadResponse(String),
    /// Signature, `iss`, `aud`, `exp` or `nonce` (OIDC Core §3.1.3.7).
    #[error("the provider's ID token is not valid")]
    InvalidIdToken(String),
    #[error(
        "the provider did not share an email address, which this server needs for a new account"
    )]
    NoEmail,
    #[error("signing up through this provider is closed")]
    SignUpClosed,
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("that account at the provider is already linked to another account here")]
    LinkedElsewhere,
    #[error("your account is already linked to another account at this provider; unlink it first")]
    ProviderTaken,
    #[error("this is your last way to sign in; add a password or another provider first")]
    LastMethod,
    /// The relying party asked for a fresh sign-in (`prompt=login`, `max_age`), which a plain
    /// OAuth 2.0 provider cannot prove, or the upstream's `auth_time` does not show.
    #[error("this application needs a fresh sign-in, which the provider did not confirm; sign in another way")]
    NotFresh,
    #[error("that provider is not linked to your account")]
    NotLinked,
    #[error("something went wrong; try again in a moment")]
    Internal,
}

impl FederationError {
    /// The `reason` of audit events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FederationError::UnknownProvider(_) => "unknown_provider",
            FederationError::BadState => "bad_state",
            FederationError::OtherBrowser => "other_browser",
            FederationError::Denied { .. } => "denied",
            FederationError::Unreachable(_) => "unreachable",
            FederationError::BadResponse(_) => "bad_response",
            FederationError::InvalidIdToken(_) => "invalid_id_token",
            FederationError::NoEmail => "no_email",
            FederationError::SignUpClosed => "sign_up_closed",
            FederationError::AccountDisabled => "account_disabled",
            FederationError::LinkedElsewhere => "linked_elsewhere",
            FederationError::ProviderTaken => "provider_taken",
            FederationError::LastMethod => "last_method",
            FederationError::NotFresh => "not_fresh",
            FederationError::NotLinked => "not_linked",
            FederationError::Internal => "internal",
        }
    }
}

pub(crate) fn store_failed(e: crate::store::StoreError) -> FederationError {
    tracing::error!(error = %e, "federation: storage failed");
    FederationError::Internal
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FederationStartError {
    #[error("[[upstream]] {id:?}: client_secret_env names {var:?}, which is not set in the environment; set it to the client secret the provider gave you")]
    MissingSecret { id: String, var: String },
    #[error("cannot build the HTTP client for upstream providers: {0}")]
    Http(String),
}

pub struct FederationService {
    pub(crate) settings: Arc<Settings>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    keys: Arc<KeyManager>,
    /// No redirects (a provider's endpoint must answer itself), short timeouts.
    pub(crate) http: reqwest::Client,
    providers: Vec<Provider>,
    oidc: oidc::MetadataCache,
}

impl FederationService {
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        keys: Arc<KeyManager>,
    ) -> Result<FederationService, FederationStartError> {
        let mut providers = Vec::new();
        for config in &settings.upstream {
            let secret = match (&config.client_secret, &config.client_secret_env) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Some(SecretString::from(v)),
                    _ => {
                        return Err(FederationStartError::MissingSecret {
                            id: config.id.clone(),
                            var: var.clone(),
                        })
                    }
                },
                (None, None) => None,
            };
            providers.push(Provider {
                config: config.clone(),
                secret,
            });
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("Portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FederationStartError::Http(e.to_string()))?;
        Ok(FederationService {
            settings,
            store,
            clock,
            metrics,
            keys,
            http,
            providers,
            oidc: oidc::MetadataCache::default(),
        })
    }

    pub fn buttons(&self) -> Vec<ProviderButton> {
        self.providers
            .iter()
            .map(|p| ProviderButton {
                id: p.config.id.clone(),
                name: p.config.name.clone(),
                icon_url: p.config.icon_url.clone(),
            })
            .collect()
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.id == id)
    }

    /// Where the provider sends the browser back (registered with the provider).
    pub fn redirect_uri(&self, provider: &str) -> String {
        format!("{}/upstream/{provider}/callback", self.settings.issuer)
    }

    /// A secret of the flow derived from its `state`: HMAC-SHA256 under a master-key-derived
    /// key, base64url (43 characters: a valid PKCE verifier, RFC 7636 §4.1).
    fn derived(&self, what: &str, state: &str) -> String {
        URL_SAFE_NO_PAD.encode(
            self.keys
                .master()
                .keyed_hash(&format!("upstream-{what}"), state.as_bytes()),
        )
    }

    /// Starts a flow: stores its record and answers the provider's authorization URL.
    #[tracing::instrument(skip_all, fields(provider = %provider_id))]
    pub async fn begin(
        &self,
        meta: &RequestMeta,
        provider_id: &str,
        return_to: &str,
        browser_nonce: &str,
        link_user: Option<Uuid>,
        hints: Hints,
    ) -> Result<String, FederationError> {
        let provider = self
            .provider(provider_id)
            .ok_or_else(|| FederationError::UnknownProvider(provider_id.to_string()))?;
        let state = random::token(32);
        let pkce_verifier = self.derived("pkce", &state);
        let nonce = self.derived("nonce", &state);
        let redirect_uri = self.redirect_uri(provider_id);
        let url = match provider.config.kind {
            // Boxed: the `openidconnect` types make large futures.
            UpstreamKind::Oidc => {
                Box::pin(oidc::authorization_url(
                    self,
                    provider,
                    &redirect_uri,
                    &state,
                    &pkce_verifier,
                    &nonce,
                    hints,
                ))
                .await
            }
            // Plain OAuth 2.0 says nothing of when the person signed in.
            UpstreamKind::Oauth2 | UpstreamKind::Github if hints.demanded && hints.any() => {
                Err(FederationError::NotFresh)
            }
            UpstreamKind::Oauth2 | UpstreamKind::Github => {
                oauth2::authorization_url(provider, &redirect_uri, &state, &pkce_verifier)
            }
        };
        let url = match url {
            Ok(url) => url,
            Err(e) => {
                self.failed(meta, provider_id, &e).await;
                return Err(e);
            }
        };
        let data = FlowData {
            provider: provider_id.to_string(),
            return_to: return_to.to_string(),
            browser_hash: random::hash_secret(browser_nonce),
            link_user,
            hints,
        };
        let now = self.clock.now();
        let record = MfaChallenge {
            id_hash: random::hash_secret(&state),
            purpose: FLOW_PURPOSE.into(),
            user_id: link_user,
            data: serde_json::to_string(&data).map_err(|_| FederationError::Internal)?,
            created_at: now,
            expires_at: now + FLOW_TTL_SECS,
            used_at: None,
        };
        self.store
            .create_challenge(&record)
            .await
            .map_err(store_failed)?;
        Ok(url)
    }

    /// The callback: checks the flow is this browser's and unspent, spends it, then asks the
    /// provider who signed in. Every refusal is audited and counted.
    #[tracing::instrument(skip_all, fields(provider = %provider_id))]
    pub async fn finish(
        &self,
        meta: &RequestMeta,
        provider_id: &str,
        callback: &Callback,
        browser_nonce: Option<&str>,
    ) -> Result<Finished, FederationError> {
        let result = Box::pin(self.finish_inner(provider_id, callback, browser_nonce)).await;
        if let Err(e) = &result {
            self.failed(meta, provider_id, e).await;
        }
        result
    }

    async fn finish_inner(
        &self,
        provider_id: &str,
        callback: &Callback,
        browser_nonce: Option<&str>,
    ) -> Result<Finished, FederationError> {
        let provider = self
            .provider(provider_id)
            .ok_or_else(|| FederationError::UnknownProvider(provider_id.to_string()))?;
        if callback.state.is_empty() || callback.state.len() > 128 {
            return Err(FederationError::BadState);
        }
        let now = self.clock.now();
        let id_hash = random::hash_secret(&callback.state);
        let record = self
            .store
            .get_challenge(&id_hash, FLOW_PURPOSE, now)
            .await
            .map_err(store_failed)?
            .ok_or(FederationError::BadState)?;
        let data: FlowData =
            serde_json::from_str(&record.data).map_err(|_| FederationError::BadState)?;
        if data.provider != provider_id {
            return Err(FederationError::BadState);
        }
        // Login CSRF (RFC 6749 §10.12): the browser that comes back must be the one that left.
        let same_browser = browser_nonce.is_some_and(|n| {
            bool::from(
                random::hash_secret(n)
                    .as_bytes()
                    .ct_eq(data.browser_hash.as_bytes()),
            )
        });
        if !same_browser {
            return Err(FederationError::OtherBrowser);
        }
        // Spent before the code is used, by one conditional update: a replayed callback
        // (or two parallel ones) gets nothing.
        if self
            .store
            .consume_challenge(&id_hash, FLOW_PURPOSE, now)
            .await
            .map_err(store_failed)?
            .is_none()
        {
            return Err(FederationError::BadState);
        }
        if let Some(code) = &callback.error {
            let code: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(FederationError::Denied { code });
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or_else(|| FederationError::BadResponse("no code in the callback".into()))?;
        let pkce_verifier = self.derived("pkce", &callback.state);
        let redirect_uri = self.redirect_uri(provider_id);
        let profile = match provider.config.kind {
            UpstreamKind::Oidc => {
                let nonce = self.derived("nonce", &callback.state);
                let fresh = oidc::Freshness {
                    hints: data.hints,
                    started_at: record.created_at,
                    now,
                    skew: AUTH_TIME_SKEW_SECS,
                };
                Box::pin(oidc::exchange(
                    self,
                    provider,
                    &redirect_uri,
                    code,
                    &pkce_verifier,
                    &nonce,
                    callback.iss.as_deref(),
                    fresh,
                ))
                .await?
            }
            UpstreamKind::Oauth2 | UpstreamKind::Github => {
                Box::pin(oauth2::exchange(
                    self,
                    provider,
                    &redirect_uri,
                    code,
                    &pkce_verifier,
                ))
                .await?
            }
        };
        Ok(Finished {
            profile,
            return_to: data.return_to,
            link_user: data.link_user,
        })
    }

    pub(crate) fn event(&self, kind: &str, meta: &RequestMeta, provider: &str) -> AuditEvent {
        let mut event = AuditEvent::new(kind, self.clock.now());
        event.ip = meta.ip.map(|ip| ip.to_string());
        event.user_agent = meta
            .user_agent
            .as_ref()
            .map(|ua| ua.chars().take(256).collect());
        event.trace_id = meta.trace_id.clone();
        event.detail = serde_json::json!({ "provider": provider });
        event
    }

    pub(crate) async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, kind = %event.kind, "could not record an audit event");
        }
    }

    /// Audits and counts a refused upstream sign-in (the detail is logged, never shown).
    pub(crate) async fn failed(&self, meta: &RequestMeta, provider: &str, e: &FederationError) {
        if matches!(e, FederationError::UnknownProvider(_)) {
            // Anyone can make up a path: counted, not written to the audit log.
            self.metrics
                .count(METRIC, &[("provider", "unknown"), ("result", e.reason())]);
            return;
        }
        let detail = match e {
            FederationError::Unreachable(d)
            | FederationError::BadResponse(d)
            | FederationError::InvalidIdToken(d) => d.as_str(),
            _ => "",
        };
        tracing::warn!(
            provider,
            reason = e.reason(),
            detail,
            "upstream sign-in refused"
        );
        let mut event = self.event("upstream.failed", meta, provider);
        event.detail = serde_json::json!({"provider": provider, "reason": e.reason()});
        if let FederationError::Denied { code } = e {
            event.detail["error"] = serde_json::json!(code);
        }
        self.record(event).await;
        self.metrics.count(
            METRIC,
            &[
                ("provider", self.metric_label(provider)),
                ("result", e.reason()),
            ],
        );
    }

    /// A provider id as a metric label: configured ids only (a path segment is not a label).
    pub(crate) fn metric_label<'a>(&'a self, provider: &'a str) -> &'a str {
        self.provider(provider).map_or("unknown", |p| p.id())
    }

    pub(crate) fn succeeded_metric(&self, provider: &str, result: &str) {
        self.metrics.count(
            METRIC,
            &[
                ("provider", self.metric_label(provider)),
                ("result", result),
            ],
        );
    }
}
