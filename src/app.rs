//! Wiring: turns `Settings` into adapters behind ports (`AppState`), builds the route tree and
//! runs the server with graceful shutdown. Used by `main` and by the integration tests alike.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::CatchPanic;
use poem::{get, post, EndpointExt, Route, Server};
use secrecy::ExposeSecret;

use crate::accounts::{AccountService, PasswordHasher};
use crate::cache::RedisHandle;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::denylist::DenyList;
use crate::document::JsonDocument;
use crate::http;
use crate::keys::{KeyManager, MasterKey, MasterKeySource};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::protocol::discovery::ProviderMetadata;
use crate::sessions::SessionService;
use crate::store::{self, Store};

/// Everything a request handler may use: one shared pointer, so the per-request copy that
/// poem's `data` middleware makes is a single reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<AppServices>);

impl std::ops::Deref for AppState {
    type Target = AppServices;

    fn deref(&self) -> &AppServices {
        &self.0
    }
}

/// The services behind [`AppState`], built once by [`Portcullis::build`].
pub struct AppServices {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyManager>,
    /// Client lookups, cached for `database.client_cache_secs`.
    pub clients: Arc<crate::clients::ClientDirectory>,
    pub clock: Arc<dyn Clock>,
    pub passwords: PasswordHasher,
    pub redis: Option<Arc<RedisHandle>>,
    pub deny: Arc<DenyList>,
    pub limiter: Arc<Limiter>,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// The hosted pages' Content-Security-Policy (hashes depend on the branding colour).
    pub page_csp: poem::http::HeaderValue,
    pub metrics: Arc<Metrics>,
    /// For outgoing calls: client JWKS URIs, back-channel logout.
    pub http: reqwest::Client,
    /// Discovery metadata, serialized once: it depends on settings alone.
    pub discovery: JsonDocument,
    /// DPoP proofs (RFC 9449): replay cache and server nonces shared by every instance.
    pub dpop: Arc<crate::dpop::DpopGuard>,
    /// Registered APIs (RFC 8707 resources).
    pub resources: Arc<crate::resources::ResourceService>,
    /// `Cache-Control` of the JWKS, from `keys.jwks_max_age_secs`.
    pub jwks_cache_control: poem::http::HeaderValue,
    /// Account email: SMTP or the dev outbox.
    pub mailer: Arc<dyn crate::mail::Mailer>,
    /// Ends browser sessions (one, or all of a user's) and what they take down with them.
    pub sessions: Arc<SessionService>,
    /// The account use cases, for the pages and the JSON API alike.
    pub accounts: Arc<AccountService>,
    /// Second factors, pending sign-ins and MFA policies.
    pub mfa: Arc<crate::accounts::mfa::MfaService>,
    /// The operator's client use cases (admin API, console; the CLI builds its own).
    pub client_admin: Arc<crate::clients::ClientService>,
    /// Clients that register themselves (RFC 7591, RFC 7592).
    pub registration: Arc<crate::clients::dynamic::RegistrationService>,
    /// Upstream providers ("Sign in with …") and the identities linked to accounts.
    pub federation: Arc<crate::federation::FederationService>,
    /// Webhooks, the event listings and the outbox's delivery workers.
    pub events: Arc<crate::events::EventService>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the database {url}: {reason}")]
    Database { url: String, reason: String },
    #[error("{0}")]
    MasterKey(#[from] crate::keys::MasterKeyError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("cannot listen on {addr} (`{key}`): {reason}; choose another address with {env}")]
    Bind {
        addr: String,
        reason: String,
        key: &'static str,
        env: &'static str,
    },
}

/// Opens the configured database (applying migrations) with a readable error.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    store::open(&settings.database.url, settings.database.max_connections)
        .await
        .map_err(|e| StartError::Database {
            url: crate::config::redact_url(&settings.database.url),
            reason: e.to_string(),
        })
}

/// The master key from config, or from (or into) the key file.
pub fn master_key(settings: &Settings) -> Result<MasterKey, StartError> {
    if let Some(configured) = &settings.master_key {
        return MasterKey::from_base64(configured.expose_secret()).map_err(|e| {
            StartError::Config(format!(
                "invalid configuration value for `master_key` (value hidden): {e}"
            ))
        });
    }
    let (key, source) = MasterKey::load_or_create(&settings.master_key_file)?;
    if source == MasterKeySource::FileGenerated {
        tracing::warn!(
            path = %settings.master_key_file.display(),
            "generated a new master key file; production must supply its own key in \
             PORTCULLIS_MASTER_KEY (and keep it safe: without it the signing keys are lost)"
        );
    }
    Ok(key)
}

pub struct Portcullis {
    state: AppState,
}

impl Portcullis {
    /// Builds the application on the real clock.
    pub async fn build(settings: Settings) -> Result<Portcullis, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Portcullis, StartError> {
        settings
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let master = master_key(&settings)?;
        let events_master = master.clone();
        let store = open_store(&settings).await?;
        let retention = settings.longest_token_ttl_secs() + settings.keys.jwks_max_age_secs;
        let keys = KeyManager::start(
            store.clone(),
            master,
            clock.clone(),
            retention,
            settings.keys.verify_cache_entries,
        )
        .await?;
        let redis = match &settings.redis.url {
            Some(url) => Some(Arc::new(
                RedisHandle::new(url, &settings.redis.namespace).map_err(StartError::Config)?,
            )),
            None => None,
        };
        let passwords = PasswordHasher::new(&settings.password)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let discovery = JsonDocument::new(
            &ProviderMetadata::new(&settings.issuer, settings.oauth.allow_plain_pkce)
                .with_par(&settings.par)
                .with_device_flow(settings.device.enabled)
                .with_dpop(&settings.dpop)
                .with_registration(
                    settings.registration.mode != crate::config::RegistrationMode::Off,
                ),
        )
        .map_err(|e| StartError::Config(format!("cannot serialize the discovery metadata: {e}")))?;
        let jwks_cache_control = poem::http::HeaderValue::from_str(&format!(
            "public, max-age={}",
            settings.keys.jwks_max_age_secs
        ))
        .map_err(|e| StartError::Config(format!("keys.jwks_max_age_secs: {e}")))?;
        let deny = Arc::new(DenyList::new(store.clone(), redis.clone()));
        let clients = Arc::new(crate::clients::ClientDirectory::new(
            store.clone(),
            clock.clone(),
            settings.database.client_cache_secs,
        ));
        let redis_for_limits = redis.clone();
        let trusted_proxies = Arc::new(http::middleware::client_ip::parse_trusted(
            &settings.http.trusted_proxies,
        ));
        let page_csp = poem::http::HeaderValue::from_str(&http::middleware::guard::page_csp(
            &settings.branding.primary_color,
        ))
        .map_err(|e| StartError::Config(format!("branding.primary_color: {e}")))?;
        let http_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Config(format!("cannot build the HTTP client: {e}")))?;
        let mailer = crate::mail::from_settings(&settings.mail)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let dpop = Arc::new(crate::dpop::DpopGuard::new(
            store.clone(),
            redis.clone(),
            keys.master(),
            settings.dpop.clone(),
        ));
        let resources = Arc::new(
            crate::resources::ResourceService::new(store.clone(), clock.clone())
                .reserving(&settings),
        );
        let settings = Arc::new(settings);
        let keys = Arc::new(keys);
        let sessions = Arc::new(SessionService::new(
            settings.clone(),
            store.clone(),
            clock.clone(),
            deny.clone(),
            keys.clone(),
            http_client.clone(),
        ));
        let limiter = Arc::new(Limiter::new(redis_for_limits));
        let metrics = Arc::<Metrics>::default();
        let accounts = Arc::new(AccountService::new(
            settings.clone(),
            store.clone(),
            clock.clone(),
            passwords.clone(),
            mailer.clone(),
            limiter.clone(),
            metrics.clone(),
            sessions.clone(),
        ));
        let mfa = Arc::new(crate::accounts::mfa::MfaService::new(
            settings.clone(),
            store.clone(),
            clock.clone(),
            keys.clone(),
            limiter.clone(),
            metrics.clone(),
            accounts.clone(),
        ));
        let client_admin = Arc::new(crate::clients::ClientService::new(
            store.clone(),
            clock.clone(),
            Some(clients.clone()),
            redis.clone(),
            settings.tokens.access_token_ttl_secs,
        ));
        let registration = Arc::new(crate::clients::dynamic::RegistrationService::new(
            store.clone(),
            client_admin.clone(),
            clock.clone(),
            metrics.clone(),
            settings.registration.clone(),
            &settings.issuer,
        ));
        let federation = Arc::new(
            crate::federation::FederationService::new(
                settings.clone(),
                store.clone(),
                clock.clone(),
                metrics.clone(),
                keys.clone(),
            )
            .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let events = Arc::new(
            crate::events::EventService::new(
                store.clone(),
                clock.clone(),
                events_master,
                settings.events.clone(),
                metrics.clone(),
                redis.clone(),
            )
            .map_err(StartError::Config)?,
        );
        match store.refresh_search_names().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "recomputed lower-cased names for search"),
            Err(e) => {
                tracing::warn!(error = %e, "could not recompute lower-cased names for search")
            }
        }
        client_admin
            .ensure_console_client(&settings.issuer)
            .await
            .map_err(|e| StartError::Database {
                url: crate::config::redact_url(&settings.database.url),
                reason: format!("cannot create the console's client: {e}"),
            })?;
        Ok(Portcullis {
            state: AppState(Arc::new(AppServices {
                client_admin,
                registration,
                events,
                settings,
                store,
                keys,
                clients,
                clock,
                passwords,
                redis,
                deny,
                limiter,
                trusted_proxies,
                page_csp,
                metrics,
                http: http_client,
                discovery,
                dpop,
                resources,
                jwks_cache_control,
                mailer,
                sessions,
                accounts,
                mfa,
                federation,
            })),
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The full route tree with its middleware.
    pub fn endpoint(&self) -> BoxedEndpoint {
        use http::middleware::cors::cors;
        let preflight = || poem::endpoint::make_sync(|_| poem::http::StatusCode::NO_CONTENT);
        let api = http::api::service(&self.state.settings.issuer);
        let (spec, docs) = (api.spec_endpoint(), api.swagger_ui());
        let api = http::api::endpoint(api);
        let access = self.state.settings.log.access;
        Route::new()
            .nest_no_strip("/auth", api.clone())
            .nest_no_strip("/users", api.clone())
            .nest_no_strip("/admin", api)
            .nest_no_strip("/console", http::console::routes())
            .at("/openapi.json", get(spec))
            .nest("/docs", docs)
            .at(
                "/.well-known/openid-configuration",
                get(http::oidc::discovery).options(preflight()).around(cors),
            )
            .at(
                "/.well-known/oauth-authorization-server",
                get(http::oidc::discovery).options(preflight()).around(cors),
            )
            .at(
                "/jwks.json",
                get(http::oidc::jwks).options(preflight()).around(cors),
            )
            .at(
                "/authorize",
                get(http::oauth::authorize).post(http::oauth::authorize),
            )
            .at(
                "/token",
                post(http::oauth::token).options(preflight()).around(cors),
            )
            // RFC 9126 §2: answers 404 when `par.enabled` is false.
            .at(
                http::par::PATH,
                post(http::par::push).options(preflight()).around(cors),
            )
            .at(
                "/revoke",
                post(http::tokens::revoke).options(preflight()).around(cors),
            )
            .at(
                "/introspect",
                post(http::tokens::introspect)
                    .options(preflight())
                    .around(cors),
            )
            .at(
                "/userinfo",
                get(http::oidc::userinfo)
                    .post(http::oidc::userinfo)
                    .options(preflight())
                    .around(cors),
            )
            .at(
                "/login",
                get(http::pages::login_form).post(http::pages::login_submit),
            )
            .at("/login/mfa", post(http::pages::mfa_submit))
            .at(
                "/login/mfa/passkey",
                post(http::pages::passkey::second_factor),
            )
            .at(
                "/login/mfa/passkey/register",
                post(http::pages::passkey::enroll),
            )
            .at(
                "/login/passkey/options",
                post(http::pages::passkey::passwordless_options),
            )
            .at("/login/passkey", post(http::pages::passkey::passwordless))
            .at(
                "/login/magic-link",
                get(http::pages::magic_link::request_form)
                    .post(http::pages::magic_link::request_submit),
            )
            .at(
                crate::accounts::magic_link::PATH,
                get(http::pages::magic_link::follow),
            )
            .at(
                "/upstream/:provider/start",
                post(http::pages::upstream::start),
            )
            .at(
                "/upstream/:provider/callback",
                get(http::pages::upstream::callback),
            )
            .at(
                crate::federation::linking::CONFIRM_PATH,
                get(http::pages::upstream::confirm_link),
            )
            .nest("/account", http::account::routes())
            .at("/consent", post(http::pages::consent_submit))
            .at("/device_authorization", post(http::device::authorization))
            .at(
                "/device",
                get(http::device::entry_form).post(http::device::entry_submit),
            )
            .at(
                "/device/confirm",
                get(http::device::confirm_form).post(http::device::confirm_submit),
            )
            .at(
                "/register",
                get(http::account_pages::register_form).post(http::account_pages::register_submit),
            )
            .at(
                "/forgot-password",
                get(http::account_pages::forgot_form).post(http::account_pages::forgot_submit),
            )
            .at(
                "/reset-password",
                get(http::account_pages::reset_form).post(http::account_pages::reset_submit),
            )
            .at(
                "/verify-email",
                get(http::account_pages::verify_form).post(http::account_pages::verify_submit),
            )
            .at(
                "/end_session",
                get(http::logout::end_session).post(http::logout::end_session),
            )
            .at(
                crate::clients::dynamic::REGISTRATION_PATH,
                post(http::registration::register),
            )
            .at(
                "/connect/register/:client_id",
                get(http::registration::read)
                    .put(http::registration::update)
                    .delete(http::registration::delete),
            )
            .at("/static/portcullis.css", get(http::pages::stylesheet))
            .at("/static/webauthn.js", get(http::pages::passkey::script))
            .at("/health/live", get(http::health::live))
            .at("/health/ready", get(http::health::ready))
            .catch_error(|_: poem::error::NotFoundError| async { http::not_found() })
            .catch_error(|_: poem::error::MethodNotAllowedError| async {
                http::method_not_allowed()
            })
            .around(http::middleware::guard::guard)
            .data(self.state.clone())
            .with(CatchPanic::new())
            .around(move |next, req| http::middleware::request_id::request_id(next, req, access))
            .map_to_response()
            .boxed()
    }

    /// Binds the configured addresses and serves until `shutdown` resolves, then drains
    /// in-flight requests for up to 10 s.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartError> {
        let running = self.bind().await?;
        tracing::info!(
            addr = %running.addr,
            management = %running.management_addr,
            issuer = %running.state.settings.issuer,
            database = running.state.store.backend(),
            "Portcullis is listening"
        );
        running.run(shutdown).await;
        Ok(())
    }

    /// Binds the configured addresses (port 0 picks a free port) without serving yet.
    pub async fn bind(self) -> Result<BoundServer, StartError> {
        let listen = self.state.settings.listen.clone();
        let acceptor = bind_addr(&listen, PUBLIC).await?;
        self.bound(acceptor).await
    }

    /// Serves on a listener the caller bound already (tests bind first to learn the port,
    /// so that the issuer can name it).
    pub async fn bind_std(
        self,
        listener: std::net::TcpListener,
    ) -> Result<BoundServer, StartError> {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let bind_err = |e: std::io::Error| StartError::Bind {
            addr: addr.clone(),
            reason: e.to_string(),
            key: PUBLIC.0,
            env: PUBLIC.1,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let acceptor = TcpAcceptor::from_std(listener).map_err(bind_err)?;
        self.bound(acceptor).await
    }

    async fn bound(self, acceptor: TcpAcceptor) -> Result<BoundServer, StartError> {
        let management = bind_addr(&self.state.settings.management.listen, MANAGEMENT).await?;
        Ok(BoundServer {
            addr: local_addr(&acceptor, &self.state.settings.listen)?,
            management_addr: local_addr(&management, &self.state.settings.management.listen)?,
            state: self.state.clone(),
            endpoint: self.endpoint(),
            management_endpoint: self.management_endpoint(),
            acceptor,
            management,
        })
    }

    /// The operators' listener: metrics and health probes.
    pub fn management_endpoint(&self) -> BoxedEndpoint {
        Route::new()
            .at("/metrics", get(http::health::metrics))
            .at("/health/live", get(http::health::live))
            .at("/health/ready", get(http::health::ready))
            .catch_error(|_: poem::error::NotFoundError| async { http::not_found() })
            .data(self.state.clone())
            .with(CatchPanic::new())
            .map_to_response()
            .boxed()
    }
}

/// Which listener a bind error is about: (config key, environment variable).
type ListenerName = (&'static str, &'static str);
const PUBLIC: ListenerName = ("listen", "PORTCULLIS_LISTEN");
const MANAGEMENT: ListenerName = ("management.listen", "PORTCULLIS_MANAGEMENT__LISTEN");

async fn bind_addr(listen: &str, (key, env): ListenerName) -> Result<TcpAcceptor, StartError> {
    TcpListener::bind(listen.to_string())
        .into_acceptor()
        .await
        .map_err(|e| StartError::Bind {
            addr: listen.to_string(),
            reason: e.to_string(),
            key,
            env,
        })
}

fn local_addr(acceptor: &TcpAcceptor, listen: &str) -> Result<SocketAddr, StartError> {
    acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| StartError::Bind {
            addr: listen.to_string(),
            reason: "no socket address".into(),
            key: PUBLIC.0,
            env: PUBLIC.1,
        })
}

type BoxedEndpoint = poem::endpoint::BoxEndpoint<'static, poem::Response>;

pub struct BoundServer {
    pub addr: SocketAddr,
    pub management_addr: SocketAddr,
    pub state: AppState,
    endpoint: BoxedEndpoint,
    management_endpoint: BoxedEndpoint,
    acceptor: TcpAcceptor,
    management: TcpAcceptor,
}

impl BoundServer {
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        warn_about_port_variation(&self.state).await;
        let refresher = tokio::spawn(refresh_keys_periodically(self.state.clone()));
        let cleaner = tokio::spawn(janitor(self.state.clone()));
        let listener = tokio::spawn(listen_for_events(self.state.clone()));
        let outbox = tokio::spawn(crate::events::worker::run(self.state.events.clone()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let drain = Some(Duration::from_secs(10));
        let public = Server::new_with_acceptor(self.acceptor).run_with_graceful_shutdown(
            self.endpoint,
            wait(stopped.clone()),
            drain,
        );
        let management = Server::new_with_acceptor(self.management).run_with_graceful_shutdown(
            self.management_endpoint,
            wait(stopped),
            drain,
        );
        let trigger = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (public, management, ()) = tokio::join!(public, management, trigger);
        refresher.abort();
        cleaner.abort();
        listener.abort();
        outbox.abort();
        for result in [public, management] {
            if let Err(e) = result {
                tracing::error!(error = %e, "server stopped with an error");
            }
        }
    }
}

/// RFC 9700 §2.1: confidential clients no longer get any-port loopback matching; name, once,
/// each one whose redirect URIs may have relied on it (`portcullis client list --check`).
async fn warn_about_port_variation(state: &AppState) {
    match state.store.list_clients().await {
        Ok(clients) => {
            for notice in crate::clients::port_variation_notices(&clients) {
                tracing::warn!(
                    client_id = %notice.client_id,
                    redirect_uri = %notice.redirect_uri,
                    "{notice}"
                );
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not list clients to check their loopback redirect URIs"
        ),
    }
}

/// Other instances may rotate keys: re-read them on a short period, and rotate on schedule.
async fn refresh_keys_periodically(state: AppState) {
    let k = &state.settings.keys;
    let mut ticker = tokio::time::interval(Duration::from_secs(k.refresh_secs));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if k.rotate_every_secs > 0 {
            match state
                .keys
                .rotate_if_due(k.rotate_every_secs, k.jwks_max_age_secs)
                .await
            {
                Ok(rotated) => {
                    if !rotated.is_empty() {
                        announce_keys_changed(&state).await;
                    }
                    for alg in rotated {
                        state
                            .metrics
                            .count("portcullis_key_rotations_total", &[("alg", alg.as_str())]);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "scheduled key rotation failed; will retry"),
            }
        }
        if let Err(e) = state.keys.refresh().await {
            tracing::warn!(error = %e, "could not refresh signing keys; using the cached ones");
        }
    }
}

/// Tells the other instances (through Redis, when configured) that the signing keys changed,
/// so they re-read them at once instead of at their next refresh.
pub async fn announce_keys_changed(state: &AppState) {
    if let Some(redis) = &state.redis {
        if let Err(e) = redis.publish("keys").await {
            tracing::warn!(error = %e, "could not announce a key change; instances catch up on refresh");
        }
    }
}

/// Listens for other instances' announcements and refreshes what they name.
async fn listen_for_events(state: AppState) {
    use futures_util::StreamExt;
    let Some(redis) = state.redis.clone() else {
        return;
    };
    loop {
        match redis.subscribe().await {
            Ok(mut events) => {
                // Announcements made while we were not subscribed are lost (pub/sub keeps
                // nothing): catch up on whatever they could have said.
                state.clients.invalidate();
                if let Err(e) = state.keys.refresh().await {
                    tracing::warn!(error = %e, "could not refresh signing keys after subscribing");
                }
                while let Some(msg) = events.next().await {
                    match msg.get_payload::<String>().as_deref() {
                        Ok("keys") => {
                            if let Err(e) = state.keys.refresh().await {
                                tracing::warn!(error = %e, "could not refresh signing keys after an announcement");
                            }
                        }
                        Ok("clients") => state.clients.invalidate(),
                        _ => {}
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "event subscription unavailable; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Deletes what has expired, in bounded batches, until a pass finds little left.
async fn janitor(state: AppState) {
    let j = &state.settings.janitor;
    if j.interval_secs == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(j.interval_secs));
    let me = uuid::Uuid::new_v4().to_string();
    loop {
        ticker.tick().await;
        // One instance at a time: the lease outlives a pass and is renewed by its holder.
        let lease = (j.interval_secs * 2) as i64;
        match state
            .store
            .try_lease("janitor", &me, state.clock.now(), lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "janitor lease unavailable");
                continue;
            }
        }
        let mut total = 0;
        loop {
            let now = state.clock.now();
            let grace = state.settings.tokens.refresh_grace_secs as i64;
            let cleared = state
                .store
                .clear_sealed_successors(now - grace, j.batch)
                .await
                .unwrap_or(0)
                + state
                    .store
                    .purge_device_grants(now, j.batch)
                    .await
                    .unwrap_or(0);
            match state
                .store
                .purge_expired(now, j.batch)
                .await
                .map(|n| n + cleared)
            {
                Ok(n) => {
                    total += n;
                    state
                        .metrics
                        .add("portcullis_janitor_removed_total", &[], n);
                    if n < u64::from(j.batch) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "janitor pass failed");
                    break;
                }
            }
        }
        // Registered clients never used, and expired initial access tokens.
        match state.registration.sweep(j.batch).await {
            Ok(n) => {
                total += n;
                state
                    .metrics
                    .add("portcullis_janitor_removed_total", &[], n);
            }
            Err(e) => tracing::warn!(error = %e, "registration sweep failed"),
        }
        if total > 0 {
            tracing::info!(removed = total, "janitor removed expired rows");
        }
    }
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
