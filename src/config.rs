//! Settings: one struct, loaded in layers (defaults, TOML file, `PORTCULLIS_*` environment),
//! then validated so that a bad value stops start-up with the key, the value and what is expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::limiter::Policy;

mod upstream;
pub use upstream::{is_http_url as upstream_url_ok, UpstreamKind, UpstreamSettings};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/portcullis.toml";

/// Environment variables with this prefix override the file; `__` separates nested keys.
pub const ENV_PREFIX: &str = "PORTCULLIS_";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The issuer identifier, exactly as it appears in tokens and discovery.
    pub issuer: String,
    /// Address the HTTP server binds to.
    pub listen: String,
    /// Base64 of 32 random bytes; encrypts signing keys at rest.
    #[serde(skip_serializing)]
    pub master_key: Option<SecretString>,
    /// Where a generated master key is kept when `master_key` is not set.
    pub master_key_file: PathBuf,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub log: LogSettings,
    pub tokens: TokenSettings,
    pub keys: KeySettings,
    pub password: PasswordSettings,
    pub accounts: AccountSettings,
    pub mail: MailSettings,
    pub oauth: OAuthSettings,
    pub device: DeviceSettings,
    pub sessions: SessionSettings,
    pub branding: BrandingSettings,
    pub rate_limits: RateLimitSettings,
    pub http: HttpSettings,
    pub janitor: JanitorSettings,
    pub management: ManagementSettings,
    pub telemetry: TelemetrySettings,
    pub par: ParSettings,
    pub registration: RegistrationSettings,
    /// `[[upstream]]`: providers people may sign in through (`federation/`).
    pub upstream: Vec<UpstreamSettings>,
    pub events: crate::events::EventSettings,
    pub dpop: DpopSettings,
}

/// DPoP sender-constrained tokens (RFC 9449).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopSettings {
    /// `dpop_signing_alg_values_supported` (RFC 9449 §5.1): the proof algorithms accepted.
    pub signing_algs: Vec<String>,
    /// How long after its `iat` a proof is accepted (and its `jti` remembered, §11.1).
    pub proof_max_age_secs: u64,
    /// How far a client's clock may be ahead of or behind ours.
    pub clock_skew_secs: u64,
    /// Make every proof carry a server nonce (RFC 9449 §8, §9): `use_dpop_nonce` otherwise.
    pub require_nonce: bool,
    /// How long a server nonce is good for (it is accepted in its window and the next).
    pub nonce_window_secs: u64,
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings {
            signing_algs: ["ES256", "ES384", "PS256", "RS256", "EdDSA"]
                .map(String::from)
                .to_vec(),
            proof_max_age_secs: 60,
            clock_skew_secs: 5,
            require_nonce: false,
            nonce_window_secs: 300,
        }
    }
}

/// Pushed authorization requests (RFC 9126).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParSettings {
    /// Serve `POST /par` and advertise it in discovery (RFC 9126 §5).
    pub enabled: bool,
    /// `expires_in` of a request URI: how long the client has to send the browser to
    /// `/authorize` with it (RFC 9126 §2.2: "typically ... between 5 and 600 seconds").
    pub request_uri_ttl_secs: u64,
    /// Once a browser has brought the request URI to `/authorize`, how long the sign-in and
    /// consent may take (reloads included) before the request expires.
    pub sign_in_ttl_secs: u64,
    /// `require_pushed_authorization_requests` for every client (RFC 9126 §5); per client
    /// with `client create --require-par`.
    pub require: bool,
}

impl Default for ParSettings {
    fn default() -> Self {
        ParSettings {
            enabled: true,
            request_uri_ttl_secs: 60,
            sign_in_ttl_secs: 600,
            require: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP/HTTP collector base URL (spans go to `<endpoint>/v1/traces`); unset: no export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: "portcullis".into(),
        }
    }
}

/// Who may register a client at `/connect/register` (RFC 7591 §3): nobody, holders of an
/// initial access token, or anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    /// No registration endpoint, none in discovery.
    Off,
    /// `Authorization: Bearer <token>` from `portcullis client registration-token`.
    InitialToken,
    /// Anyone (rate-limited per IP); for agents that register themselves (MCP).
    Open,
}

impl RegistrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Off => "off",
            RegistrationMode::InitialToken => "initial_token",
            RegistrationMode::Open => "open",
        }
    }
}

/// Dynamic client registration (RFC 7591) and its management (RFC 7592).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSettings {
    pub mode: RegistrationMode,
    /// The grant types a client that registers itself may ask for.
    pub allowed_grant_types: Vec<String>,
    /// The scopes it may ask for (its default when it names none).
    pub allowed_scopes: Vec<String>,
    /// Registrations per client IP.
    pub rate_limit: Policy,
    /// A registered client that was never issued a token is deleted this long after it
    /// registered (0: kept until it deletes itself).
    pub unused_client_ttl_secs: u64,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        RegistrationSettings {
            mode: RegistrationMode::InitialToken,
            allowed_grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            allowed_scopes: ["openid", "profile", "email", "offline_access"]
                .map(String::from)
                .to_vec(),
            rate_limit: Policy {
                limit: 20,
                period_secs: 3600,
            },
            unused_client_ttl_secs: 24 * 3600,
        }
    }
}

impl RegistrationSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self
            .allowed_grant_types
            .iter()
            .find(|g| !crate::clients::KNOWN_GRANTS.contains(&g.as_str()))
        {
            return Err(invalid(
                "registration.allowed_grant_types",
                bad,
                &format!(
                    "grant types among {}",
                    crate::clients::KNOWN_GRANTS.join(", ")
                ),
            ));
        }
        if self.allowed_grant_types.is_empty() {
            return Err(invalid(
                "registration.allowed_grant_types",
                "[]",
                "at least one grant type, e.g. [\"authorization_code\", \"refresh_token\"]",
            ));
        }
        let scopes = self.allowed_scopes.join(" ");
        if self.allowed_scopes.is_empty()
            || crate::protocol::scope::Scope::parse(&scopes).is_err()
            || self.allowed_scopes.iter().any(|s| s.contains(' '))
        {
            return Err(invalid(
                "registration.allowed_scopes",
                &format!("{:?}", self.allowed_scopes),
                "a non-empty list of scope names (RFC 6749 §3.3), e.g. [\"openid\", \"profile\"]",
            ));
        }
        let p = self.rate_limit;
        if p.limit == 0 || p.period_secs == 0 || p.period_secs > 86_400 {
            return Err(invalid(
                "registration.rate_limit",
                &format!("limit={} period_secs={}", p.limit, p.period_secs),
                "limit >= 1 and period_secs between 1 and 86400",
            ));
        }
        let ttl = self.unused_client_ttl_secs;
        if ttl != 0 && ttl < 60 {
            return Err(invalid(
                "registration.unused_client_ttl_secs",
                &ttl.to_string(),
                "0 (never) or at least 60 seconds",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementSettings {
    /// Where `/metrics` and the health probes are served for operators; keep it private.
    pub listen: String,
}

impl Default for ManagementSettings {
    fn default() -> Self {
        ManagementSettings {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// Each policy is `{ limit = N, period_secs = S }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Every endpoint without a policy of its own, per client IP.
    pub default: Policy,
    /// The token endpoint, per authenticated client.
    pub token: Policy,
    /// The introspection endpoint, per authenticated client.
    pub introspection: Policy,
    /// Failed client authentication (token, revocation, introspection), per client id and per IP.
    pub client_auth_failures: Policy,
    /// Sign-in attempts per client IP.
    pub login_ip: Policy,
    /// Sign-in attempts per account from one IP: what one attacker can spend on a victim.
    pub login_account_ip: Policy,
    /// Sign-in attempts per account from all IPs together: the temporary lockout.
    pub login_account: Policy,
    /// Second-factor attempts per account (TOTP or recovery code), counted before the check.
    pub mfa_account: Policy,
    /// Account registrations per client IP.
    pub register_ip: Policy,
    /// Mails triggered for one address (reset links, verification resends, registrations).
    pub account_email: Policy,
    /// Per-IP policies count an IPv6 client by its network of this prefix length (48..=128):
    /// one host may use any address of its /64. IPv4-mapped addresses count as IPv4.
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Proxies (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<String>,
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub request_timeout_secs: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let p = |limit, period_secs| Policy { limit, period_secs };
        RateLimitSettings {
            enabled: true,
            default: p(600, 60),
            token: p(300, 60),
            introspection: p(1200, 60),
            client_auth_failures: p(10, 60),
            login_ip: p(30, 60),
            login_account_ip: p(5, 300),
            login_account: p(20, 300),
            // 5 per 5 minutes: 1,440 guesses a day at most, each with a 3-in-a-million
            // chance (one code per step, a step of skew either side), and only after the
            // password: NIST SP 800-63B §5.2.2 allows up to 100 failures before a lockout.
            mfa_account: p(5, 300),
            register_ip: p(10, 3600),
            account_email: p(5, 3600),
            ipv6_prefix: 64,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            trusted_proxies: vec![],
            max_body_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            request_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthSettings {
    /// Authorization code lifetime in seconds (RFC 6749 §4.1.2 recommends at most 600).
    pub code_ttl_secs: u64,
    /// Require PKCE of confidential clients too (RFC 9700 §2.1.1). Public clients always need it.
    pub require_pkce: bool,
    /// Accept `code_challenge_method=plain` (RFC 7636 §4.2); off by default.
    pub allow_plain_pkce: bool,
    /// The default ID token algorithm (OIDC Core §3.1.3.7: RS256 unless registered otherwise).
    pub id_token_alg: String,
    /// The default access token algorithm.
    pub access_token_alg: String,
    /// The `aud` of access tokens when no resource is named (RFC 9068 §3); default: the issuer.
    pub access_token_audience: Option<String>,
}

/// The device authorization grant (RFC 8628): `/device_authorization`, the `/device` pages and
/// the `urn:ietf:params:oauth:grant-type:device_code` grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSettings {
    /// Off: the endpoint, the pages and the grant answer as unknown, and discovery omits them.
    pub enabled: bool,
    /// Lifetime of a device code and its user code (RFC 8628 §3.2 `expires_in`).
    pub code_ttl_secs: u64,
    /// The polling interval a device starts with (RFC 8628 §3.2 `interval`).
    pub interval_secs: u64,
    /// User-code lookups on the `/device` pages per client IP (RFC 8628 §5.1).
    pub user_code_ip: Policy,
    /// User-code lookups per browser (its CSRF cookie).
    pub user_code_browser: Policy,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            enabled: true,
            code_ttl_secs: 600,
            interval_secs: 5,
            user_code_ip: Policy {
                limit: 30,
                period_secs: 600,
            },
            user_code_browser: Policy {
                limit: 10,
                period_secs: 600,
            },
        }
    }
}

impl DeviceSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=1800).contains(&self.code_ttl_secs) {
            return Err(invalid(
                "device.code_ttl_secs",
                &self.code_ttl_secs.to_string(),
                "60 to 1800 seconds (the user codes' entropy is weighed against this lifetime)",
            ));
        }
        if !(1..=60).contains(&self.interval_secs) {
            return Err(invalid(
                "device.interval_secs",
                &self.interval_secs.to_string(),
                "1 to 60 seconds",
            ));
        }
        for (key, p) in [
            ("device.user_code_ip", self.user_code_ip),
            ("device.user_code_browser", self.user_code_browser),
        ] {
            if p.limit == 0 || p.period_secs == 0 || p.period_secs > 86_400 {
                return Err(invalid(
                    key,
                    &format!("limit={} period_secs={}", p.limit, p.period_secs),
                    "limit >= 1 and period_secs between 1 and 86400",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// A browser session ends after this long without activity.
    pub idle_timeout_secs: u64,
    /// A browser session ends this long after sign-in, whatever the activity.
    pub absolute_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrandingSettings {
    /// Shown on the hosted pages.
    pub product_name: String,
    /// An https (or same-origin path) image shown instead of the product name.
    pub logo_url: Option<String>,
    /// A CSS hex colour for buttons and links, e.g. "#4f46e5".
    pub primary_color: String,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            code_ttl_secs: 60,
            require_pkce: true,
            allow_plain_pkce: false,
            id_token_alg: "RS256".into(),
            access_token_alg: "ES256".into(),
            access_token_audience: None,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout_secs: 1800,
            absolute_timeout_secs: 36_000,
        }
    }
}

impl Default for BrandingSettings {
    fn default() -> Self {
        BrandingSettings {
            product_name: "Portcullis".into(),
            logo_url: None,
            primary_color: "#4f46e5".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (embedded) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// How long each instance keeps a client it read (0: read on every request). The CLI's
    /// client changes reach running instances at once through Redis, otherwise within this.
    pub client_cache_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:6379`; when absent, rate limits are kept in process.
    pub url: Option<String>,
    /// Prefix of every key, so several deployments can share one Redis.
    pub namespace: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            namespace: "portcullis".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `portcullis=debug,info`.
    pub level: String,
    /// One `request served` line per request at `info`. Errors (5xx) are logged regardless.
    pub access: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub access_token_ttl_secs: u64,
    pub id_token_ttl_secs: u64,
    /// A refresh token unused this long dies (each rotation starts the clock again).
    pub refresh_idle_ttl_secs: u64,
    /// A refresh family dies this long after the original grant, whatever its use.
    pub refresh_absolute_ttl_secs: u64,
    /// Seconds during which the previous refresh token may be redeemed again and answers with
    /// the same successor (racing tabs); 0 turns it off.
    pub refresh_grace_secs: u64,
    /// How many such redemptions the grace window allows.
    pub refresh_grace_reuse_count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// `Cache-Control: max-age` of the JWKS; must stay below the rotation overlap.
    pub jwks_max_age_secs: u64,
    /// How often each instance re-reads the keys from the database.
    pub refresh_secs: u64,
    /// Scheduled rotation: each active key signs this long (0 turns the schedule off).
    pub rotate_every_secs: u64,
    /// How many verified JWTs each instance remembers (until their `exp`) so a token shown
    /// again skips the signature check; 0 turns it off. About 1 KiB each.
    pub verify_cache_entries: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JanitorSettings {
    /// How often expired codes, sessions, tokens and deny-list entries are deleted (0: never).
    pub interval_secs: u64,
    /// At most this many rows per table per pass.
    pub batch: u32,
}

impl Default for JanitorSettings {
    fn default() -> Self {
        JanitorSettings {
            interval_secs: 300,
            batch: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub min_length: usize,
    pub max_length: usize,
    /// Hashes computed at once (each needs `memory_kib`); the rest wait their turn.
    pub max_concurrent_hashes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSettings {
    /// The roles a user may hold.
    pub roles: Vec<String>,
    /// The roles a self-registered user starts with.
    pub default_roles: Vec<String>,
    /// Whether anyone may create an account (the register page and `POST /auth/register`).
    pub allow_registration: bool,
    /// Whether a user must verify the email address before signing in.
    pub require_verified_email: bool,
    /// Lifetime of an email verification link.
    pub verify_email_ttl_secs: u64,
    /// Lifetime of a password reset link.
    pub password_reset_ttl_secs: u64,
    /// Second factors, passkeys and MFA policies.
    pub mfa: MfaSettings,
    /// "Email me a sign-in link" on the login page and `POST /auth/magic-link` (off by default).
    pub magic_link: bool,
    /// Lifetime of a mailed sign-in link.
    pub magic_link_ttl_secs: u64,
    /// Sign-in links asked for one address (whether or not it has an account).
    pub magic_link_per_address: crate::limiter::Policy,
    /// Sign-in links asked from one client IP.
    pub magic_link_per_ip: crate::limiter::Policy,
}

/// Multi-factor sign-in (TOTP, passkeys, recovery codes) and who must use it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaSettings {
    /// Off: no second factor is asked or offered (existing factors are kept, unused).
    pub enabled: bool,
    /// Users holding any of these roles must enroll a factor before they get a session.
    pub required_for_roles: Vec<String>,
    /// Lifetime of a half-finished sign-in (password done, second factor pending).
    pub sign_in_ttl_secs: u64,
    /// Adding or removing a factor needs a sign-in at most this old (else sign in again).
    pub reauth_max_age_secs: u64,
    /// WebAuthn relying-party id; default: the issuer's host.
    pub webauthn_rp_id: Option<String>,
    /// WebAuthn origin the browser reports; default: the issuer's scheme, host and port.
    pub webauthn_origin: Option<String>,
}

impl Default for MfaSettings {
    fn default() -> Self {
        MfaSettings {
            enabled: true,
            required_for_roles: vec!["admin".into()],
            sign_in_ttl_secs: 300,
            reauth_max_age_secs: 600,
            webauthn_rp_id: None,
            webauthn_origin: None,
        }
    }
}

/// Account email: SMTP when `smtp.host` is set, otherwise the dev outbox (one `.eml` file per
/// message under `outbox_dir`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// The sender of account email, e.g. "Example <no-reply@example.com>".
    pub from: String,
    pub outbox_dir: PathBuf,
    pub smtp: SmtpSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// "starttls" (required before credentials are sent) or "none" (a relay on localhost only).
    pub tls: String,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            from: "Portcullis <no-reply@localhost>".into(),
            outbox_dir: PathBuf::from("data/outbox"),
            smtp: SmtpSettings::default(),
        }
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: None,
            port: 587,
            username: None,
            password: None,
            tls: "starttls".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "http://localhost:8080".into(),
            listen: "127.0.0.1:8080".into(),
            master_key: None,
            master_key_file: PathBuf::from("data/master.key"),
            database: DatabaseSettings::default(),
            redis: RedisSettings::default(),
            log: LogSettings::default(),
            tokens: TokenSettings::default(),
            keys: KeySettings::default(),
            password: PasswordSettings::default(),
            accounts: AccountSettings::default(),
            mail: MailSettings::default(),
            oauth: OAuthSettings::default(),
            device: DeviceSettings::default(),
            sessions: SessionSettings::default(),
            branding: BrandingSettings::default(),
            rate_limits: RateLimitSettings::default(),
            http: HttpSettings::default(),
            janitor: JanitorSettings::default(),
            management: ManagementSettings::default(),
            telemetry: TelemetrySettings::default(),
            par: ParSettings::default(),
            registration: RegistrationSettings::default(),
            upstream: Vec::new(),
            events: crate::events::EventSettings::default(),
            dpop: DpopSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://data/portcullis.db".into(),
            max_connections: 10,
            client_cache_secs: 1,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Human,
            level: "info".into(),
            access: true,
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            access_token_ttl_secs: 600,
            id_token_ttl_secs: 600,
            refresh_idle_ttl_secs: 14 * 86_400,
            refresh_absolute_ttl_secs: 30 * 86_400,
            refresh_grace_secs: 0,
            refresh_grace_reuse_count: 1,
        }
    }
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            jwks_max_age_secs: 300,
            refresh_secs: 30,
            rotate_every_secs: 30 * 86_400,
            verify_cache_entries: 10_000,
        }
    }
}

impl Default for PasswordSettings {
    fn default() -> Self {
        PasswordSettings {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
            min_length: 8,
            max_length: 128,
            max_concurrent_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            roles: vec!["admin".into(), "expert".into(), "user".into()],
            default_roles: vec!["user".into()],
            allow_registration: true,
            require_verified_email: true,
            verify_email_ttl_secs: 24 * 3600,
            password_reset_ttl_secs: 30 * 60,
            mfa: MfaSettings::default(),
            magic_link: false,
            magic_link_ttl_secs: 600,
            magic_link_per_address: crate::limiter::Policy {
                limit: 3,
                period_secs: 900,
            },
            magic_link_per_ip: crate::limiter::Policy {
                limit: 10,
                period_secs: 900,
            },
        }
    }
}

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration value for `{key}`: {value:?} — expected {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: String,
    },
    #[error("cannot read configuration: {0}")]
    Load(String),
    #[error("configuration file {0} does not exist (given with --config)")]
    MissingFile(PathBuf),
}

impl Settings {
    /// Defaults, then `file` (or `config/portcullis.toml` when present), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        // `PORTCULLIS_DATABASE__URL` -> `database.url`; test-harness variables are not settings.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
            .split("__");
        let settings: Settings = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(&e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value whose type alone does not say it is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_issuer(&self.issuer)?;
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                &self.listen,
                "an IP address and port such as 127.0.0.1:8080 or [::]:8080",
            ));
        }
        if let Some(key) = &self.master_key {
            use secrecy::ExposeSecret;
            if crate::keys::MasterKey::from_base64(key.expose_secret()).is_err() {
                return Err(invalid(
                    "master_key",
                    "(hidden)",
                    "base64 of exactly 32 random bytes, e.g. from `openssl rand -base64 32`",
                ));
            }
        }
        if self.management.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "management.listen",
                &self.management.listen,
                "an IP address and port such as 127.0.0.1:9090",
            ));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    endpoint,
                    "an http(s) URL of an OTLP/HTTP collector such as http://otel-collector:4318",
                ));
            }
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                &redact_url(db),
                "a sqlite://FILE or postgres://USER@HOST/DB URL",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "0", "at least 1"));
        }
        if let Some(url) = &self.redis.url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "redis.url",
                    &redact_url(url),
                    "a redis://HOST:PORT or rediss://HOST:PORT URL",
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                &self.log.level,
                "a level (error, warn, info, debug, trace) or a tracing filter",
            ));
        }
        for (key, v) in [
            (
                "tokens.access_token_ttl_secs",
                self.tokens.access_token_ttl_secs,
            ),
            ("tokens.id_token_ttl_secs", self.tokens.id_token_ttl_secs),
        ] {
            if !(10..=86_400).contains(&v) {
                return Err(invalid(key, &v.to_string(), "between 10 and 86400 seconds"));
            }
        }
        let t = &self.tokens;
        if t.refresh_idle_ttl_secs < 60 || t.refresh_absolute_ttl_secs < t.refresh_idle_ttl_secs {
            return Err(invalid(
                "tokens.refresh_idle_ttl_secs",
                &format!(
                    "{} (absolute {})",
                    t.refresh_idle_ttl_secs, t.refresh_absolute_ttl_secs
                ),
                "at least 60 seconds and no more than tokens.refresh_absolute_ttl_secs",
            ));
        }
        if t.refresh_grace_secs > 60 {
            return Err(invalid(
                "tokens.refresh_grace_secs",
                &t.refresh_grace_secs.to_string(),
                "0 (off) to 60 seconds; a long window weakens reuse detection",
            ));
        }
        if self.keys.jwks_max_age_secs >= self.longest_token_ttl_secs() {
            return Err(invalid(
                "keys.jwks_max_age_secs",
                &self.keys.jwks_max_age_secs.to_string(),
                "fewer seconds than the longest token lifetime, so caches see rotated keys in time",
            ));
        }
        let every = self.keys.rotate_every_secs;
        if every != 0 && every < 2 * (self.keys.jwks_max_age_secs + self.longest_token_ttl_secs()) {
            return Err(invalid(
                "keys.rotate_every_secs",
                &every.to_string(),
                "0 (no schedule) or at least twice the JWKS cache lifetime plus the longest token lifetime",
            ));
        }
        self.validate_par()?;
        upstream::validate_all(&self.upstream)?;
        self.validate_dpop()?;
        if self.janitor.batch == 0 {
            return Err(invalid("janitor.batch", "0", "at least 1"));
        }
        if !(1..=3600).contains(&self.keys.refresh_secs) {
            return Err(invalid(
                "keys.refresh_secs",
                &self.keys.refresh_secs.to_string(),
                "between 1 and 3600 seconds",
            ));
        }
        let p = &self.password;
        if p.memory_kib < 8 * p.parallelism.max(1) || p.iterations == 0 || p.parallelism == 0 {
            return Err(invalid(
                "password",
                &format!("m={} t={} p={}", p.memory_kib, p.iterations, p.parallelism),
                "argon2id parameters with iterations >= 1, parallelism >= 1, memory_kib >= 8 * parallelism",
            ));
        }
        if p.min_length < 8 || p.max_length < p.min_length || p.max_length > 1024 {
            return Err(invalid(
                "password.min_length",
                &format!("{}..={}", p.min_length, p.max_length),
                "min_length >= 8 and min_length <= max_length <= 1024",
            ));
        }
        if self.accounts.roles.is_empty()
            || self
                .accounts
                .roles
                .iter()
                .any(|r| crate::accounts::Role::parse(r).is_err())
        {
            return Err(invalid(
                "accounts.roles",
                &self.accounts.roles.join(","),
                "a non-empty list of lowercase names (a-z, 0-9, - and _)",
            ));
        }
        if let Some(bad) = self
            .accounts
            .mfa
            .required_for_roles
            .iter()
            .find(|r| !self.accounts.roles.contains(r))
        {
            return Err(invalid(
                "accounts.mfa.required_for_roles",
                bad,
                "roles listed in accounts.roles",
            ));
        }
        let m = &self.accounts.mfa;
        if !(60..=3600).contains(&m.sign_in_ttl_secs) {
            return Err(invalid(
                "accounts.mfa.sign_in_ttl_secs",
                &m.sign_in_ttl_secs.to_string(),
                "60 to 3600 seconds",
            ));
        }
        if !(60..=24 * 3600).contains(&m.reauth_max_age_secs) {
            return Err(invalid(
                "accounts.mfa.reauth_max_age_secs",
                &m.reauth_max_age_secs.to_string(),
                "60 to 86400 seconds",
            ));
        }
        if let Some(origin) = &m.webauthn_origin {
            if url::Url::parse(origin).map_or(true, |u| u.host_str().is_none()) {
                return Err(invalid(
                    "accounts.mfa.webauthn_origin",
                    origin,
                    "an origin such as https://id.example.com",
                ));
            }
        }
        if let Some(bad) = self
            .accounts
            .default_roles
            .iter()
            .find(|r| !self.accounts.roles.contains(r))
        {
            return Err(invalid(
                "accounts.default_roles",
                bad,
                "roles listed in accounts.roles",
            ));
        }
        for (key, secs) in [
            (
                "accounts.verify_email_ttl_secs",
                self.accounts.verify_email_ttl_secs,
            ),
            (
                "accounts.password_reset_ttl_secs",
                self.accounts.password_reset_ttl_secs,
            ),
        ] {
            if !(60..=30 * 24 * 3600).contains(&secs) {
                return Err(invalid(
                    key,
                    &secs.to_string(),
                    "between 60 seconds and 30 days",
                ));
            }
        }
        if !(60..=3600).contains(&self.accounts.magic_link_ttl_secs) {
            return Err(invalid(
                "accounts.magic_link_ttl_secs",
                &self.accounts.magic_link_ttl_secs.to_string(),
                "between 60 seconds and 1 hour (a sign-in link should not live long)",
            ));
        }
        if !matches!(self.mail.smtp.tls.as_str(), "starttls" | "none") {
            return Err(invalid(
                "mail.smtp.tls",
                &self.mail.smtp.tls,
                "\"starttls\" or \"none\" (none only for a relay on localhost)",
            ));
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "mail.from",
                &self.mail.from,
                "a mailbox such as \"Example <no-reply@example.com>\"",
            ));
        }
        if !(5..=600).contains(&self.oauth.code_ttl_secs) {
            return Err(invalid(
                "oauth.code_ttl_secs",
                &self.oauth.code_ttl_secs.to_string(),
                "between 5 and 600 seconds (RFC 6749 §4.1.2)",
            ));
        }
        for (key, alg) in [
            ("oauth.id_token_alg", &self.oauth.id_token_alg),
            ("oauth.access_token_alg", &self.oauth.access_token_alg),
        ] {
            if crate::keys::SigningAlg::parse(alg).is_none() {
                return Err(invalid(key, alg, "one of RS256, PS256, ES256, EdDSA"));
            }
        }
        let s = &self.sessions;
        if s.idle_timeout_secs < 60 || s.absolute_timeout_secs < s.idle_timeout_secs {
            return Err(invalid(
                "sessions.idle_timeout_secs",
                &format!(
                    "{} (absolute {})",
                    s.idle_timeout_secs, s.absolute_timeout_secs
                ),
                "at least 60 seconds, and no more than sessions.absolute_timeout_secs",
            ));
        }
        let colour = &self.branding.primary_color;
        let hex_ok = colour.len() == 7
            && colour.starts_with('#')
            && colour[1..].bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok {
            return Err(invalid(
                "branding.primary_color",
                colour,
                "a hex colour such as #4f46e5",
            ));
        }
        if let Some(logo) = &self.branding.logo_url {
            let ok =
                logo.starts_with("https://") || (logo.starts_with('/') && !logo.starts_with("//"));
            if !ok || logo.contains(['"', '<', '>', ' ']) {
                return Err(invalid(
                    "branding.logo_url",
                    logo,
                    "an https:// URL or a path starting with /",
                ));
            }
        }
        if self.branding.product_name.trim().is_empty() || self.branding.product_name.len() > 60 {
            return Err(invalid(
                "branding.product_name",
                &self.branding.product_name,
                "1 to 60 characters",
            ));
        }
        let r = &self.rate_limits;
        for (key, p) in [
            ("rate_limits.default", r.default),
            ("rate_limits.token", r.token),
            ("rate_limits.introspection", r.introspection),
            ("rate_limits.client_auth_failures", r.client_auth_failures),
            ("rate_limits.login_ip", r.login_ip),
            ("rate_limits.login_account_ip", r.login_account_ip),
            ("rate_limits.login_account", r.login_account),
            (
                "accounts.magic_link_per_address",
                self.accounts.magic_link_per_address,
            ),
            (
                "accounts.magic_link_per_ip",
                self.accounts.magic_link_per_ip,
            ),
        ] {
            if p.limit == 0 || p.period_secs == 0 || p.period_secs > 86_400 {
                return Err(invalid(
                    key,
                    &format!("limit={} period_secs={}", p.limit, p.period_secs),
                    "limit >= 1 and period_secs between 1 and 86400",
                ));
            }
        }
        if !(48..=128).contains(&r.ipv6_prefix) {
            return Err(invalid(
                "rate_limits.ipv6_prefix",
                &r.ipv6_prefix.to_string(),
                "an IPv6 prefix length between 48 and 128 (64, the default, is one subnet)",
            ));
        }
        if r.login_account_ip.limit >= r.login_account.limit {
            return Err(invalid(
                "rate_limits.login_account_ip",
                &r.login_account_ip.limit.to_string(),
                "a limit below rate_limits.login_account's, so one IP alone cannot lock an account",
            ));
        }
        for cidr in &self.http.trusted_proxies {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    "http.trusted_proxies",
                    cidr,
                    "IP addresses or CIDRs such as 10.0.0.0/8",
                ));
            }
        }
        self.device.validate()?;
        self.registration.validate()?;
        self.events.validate(self.redis.url.as_deref())?;
        let h = &self.http;
        if h.max_body_bytes < 1024
            || h.max_uri_bytes < 1024
            || h.max_header_bytes < 1024
            || h.request_timeout_secs == 0
        {
            return Err(invalid(
                "http",
                &format!("{h:?}"),
                "byte limits of at least 1024 and a request timeout of at least 1 second",
            ));
        }
        Ok(())
    }

    /// The `aud` of access tokens.
    pub fn access_token_audience(&self) -> &str {
        self.oauth
            .access_token_audience
            .as_deref()
            .unwrap_or(&self.issuer)
    }

    /// Whether cookies get `Secure` and the `__Host-` prefix.
    pub fn is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// Signed tokens must stay verifiable this long after their key stops signing.
    pub fn longest_token_ttl_secs(&self) -> u64 {
        self.tokens
            .access_token_ttl_secs
            .max(self.tokens.id_token_ttl_secs)
    }

    pub fn is_sqlite(&self) -> bool {
        self.database.url.starts_with("sqlite:")
    }
}

impl Settings {
    fn validate_dpop(&self) -> Result<(), ConfigError> {
        let d = &self.dpop;
        let supported = crate::protocol::dpop::SUPPORTED_ALGS;
        if let Some(bad) = d
            .signing_algs
            .iter()
            .find(|a| !supported.contains(&a.as_str()))
        {
            return Err(invalid(
                "dpop.signing_algs",
                bad,
                "asymmetric algorithms among ES256, ES384, PS256, RS256, EdDSA (RFC 9449 §4.3)",
            ));
        }
        if d.signing_algs.is_empty() {
            return Err(invalid("dpop.signing_algs", "[]", "at least one algorithm"));
        }
        if !(5..=600).contains(&d.proof_max_age_secs) {
            return Err(invalid(
                "dpop.proof_max_age_secs",
                &d.proof_max_age_secs.to_string(),
                "between 5 and 600 seconds",
            ));
        }
        if d.clock_skew_secs > 300 {
            return Err(invalid(
                "dpop.clock_skew_secs",
                &d.clock_skew_secs.to_string(),
                "at most 300 seconds",
            ));
        }
        if !(10..=86400).contains(&d.nonce_window_secs) {
            return Err(invalid(
                "dpop.nonce_window_secs",
                &d.nonce_window_secs.to_string(),
                "between 10 and 86400 seconds",
            ));
        }
        Ok(())
    }

    fn validate_par(&self) -> Result<(), ConfigError> {
        let par = &self.par;
        if !(5..=600).contains(&par.request_uri_ttl_secs) {
            return Err(invalid(
                "par.request_uri_ttl_secs",
                &par.request_uri_ttl_secs.to_string(),
                "between 5 and 600 seconds (RFC 9126 §2.2)",
            ));
        }
        if par.sign_in_ttl_secs < par.request_uri_ttl_secs || par.sign_in_ttl_secs > 3600 {
            return Err(invalid(
                "par.sign_in_ttl_secs",
                &par.sign_in_ttl_secs.to_string(),
                "at least par.request_uri_ttl_secs and at most 3600 seconds",
            ));
        }
        if par.require && !par.enabled {
            return Err(invalid(
                "par.require",
                "true",
                "false while par.enabled is false (no client could send a request)",
            ));
        }
        Ok(())
    }
}

fn invalid(key: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// OIDC Discovery §3 and RFC 8414 §2: the issuer is an https URL with no query or
/// fragment. Plain http is accepted only for loopback hosts (development).
fn validate_issuer(issuer: &str) -> Result<(), ConfigError> {
    const EXPECTED: &str =
        "an absolute https URL without query, fragment or trailing slash (http only for localhost)";
    let url = Url::parse(issuer).map_err(|_| invalid("issuer", issuer, EXPECTED))?;
    let loopback = matches!(
        url.host_str(),
        Some("localhost") | Some("127.0.0.1") | Some("[::1]")
    );
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok
        || url.query().is_some()
        || url.fragment().is_some()
        || issuer.ends_with('/')
        || !url.username().is_empty()
    {
        return Err(invalid("issuer", issuer, EXPECTED));
    }
    Ok(())
}

/// Hides a password in a connection URL before it is shown anywhere.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

fn describe_figment_error(e: &figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let source = err
            .metadata
            .as_ref()
            .map(|m| match &m.source {
                Some(src) => format!(" (from {} {src})", m.name),
                None => format!(" (from {})", m.name),
            })
            .unwrap_or_default();
        if key.is_empty() {
            parts.push(format!("{}{source}", err.kind));
        } else {
            parts.push(format!("key `{key}`: {}{source}", err.kind));
        }
    }
    parts.join("; ")
}
