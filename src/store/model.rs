//! The stored aggregates, named after the domain. Secrets appear here only as hashes or
//! ciphertext.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Timestamp;

/// A registered OAuth client (RFC 6749 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// SHA-256 of the client secret, hex; `None` for public clients.
    #[serde(skip)]
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Space-separated scopes the client may request (RFC 6749 §3.3).
    pub scope: String,
    pub token_endpoint_auth_method: String,
    pub first_party: bool,
    /// OIDC Registration §2: the ID token algorithm; `None` means the deployment default.
    pub id_token_signed_response_alg: Option<String>,
    /// The access token algorithm; `None` means the deployment default.
    pub access_token_signed_response_alg: Option<String>,
    /// Issue refresh tokens even when `offline_access` was not requested.
    pub always_issue_refresh_token: bool,
    /// OIDC Back-Channel Logout §2.2.
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    /// RFC 7523 `private_key_jwt`: the client's public keys, inline (a JWK Set as JSON)...
    pub jwks: Option<String>,
    /// ...or where to fetch them.
    pub jwks_uri: Option<String>,
    /// Codes are issued only after a second factor (`client create --require-mfa`).
    pub require_mfa: bool,
    /// Switched off by an operator: every endpoint treats it as unknown until switched on.
    pub disabled: bool,
    /// RFC 9126 §6 `require_pushed_authorization_requests`: `/authorize` accepts only a
    /// `request_uri` from `/par` for this client (`client create --require-par`).
    pub require_par: bool,
    /// Registered by the client itself (RFC 7591), not by an operator: shown as an
    /// unverified application on the consent page, and never first-party.
    pub dynamic: bool,
    /// RFC 7591 §2 `logo_uri` and `client_uri`, shown on the consent page.
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    /// OIDC Dynamic Client Registration §2 `application_type`: `web` (default) or `native`.
    pub application_type: String,
    /// RFC 8707: the resource identifiers (registered APIs) this client may ask tokens for.
    pub resources: Vec<String>,
    /// RFC 9449 §5.2 `dpop_bound_access_tokens`: every token request must carry a DPoP proof.
    pub dpop_bound_access_tokens: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Client {
    /// A client with no means of authentication (RFC 6749 §2.1): `token_endpoint_auth_method`
    /// `none`, PKCE required.
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == "none"
    }
}

#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    /// An argon2id PHC string.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

impl User {
    /// The key that makes emails unique whatever their case.
    pub fn email_key(email: &str) -> String {
        email.trim().to_lowercase()
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("roles", &self.roles)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

/// Signing keys move `next -> active -> retired`: the next key is published before it signs,
/// the retired one stays published until every token it signed has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    Active,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

impl FromStr for KeyState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "next" => Ok(KeyState::Next),
            "active" => Ok(KeyState::Active),
            "retired" => Ok(KeyState::Retired),
            other => Err(format!("unknown key state {other:?}")),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    /// The public JWK as JSON, with `kid`, `use` and `alg`.
    pub public_jwk: String,
    /// The PKCS#8 private key, sealed with AES-256-GCM under the master key.
    pub private_key: Vec<u8>,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("private_key", &"[ENCRYPTED]")
            .finish_non_exhaustive()
    }
}

/// Something that happened and that an operator may have to answer for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: Timestamp,
    /// Dotted name such as `client.created` or `key.rotated`.
    pub kind: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The trace id of the request that caused it.
    pub trace_id: Option<String>,
    /// A JSON object; never a secret.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(kind: &str, at: Timestamp) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            at,
            kind: kind.to_string(),
            actor: None,
            subject: None,
            client_id: None,
            ip: None,
            user_agent: None,
            trace_id: None,
            detail: serde_json::json!({}),
        }
    }
}

/// A signed-in browser. The cookie holds a random id; the store keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub id_hash: String,
    /// The public session identifier put in ID tokens (`sid`); not a secret.
    pub sid: String,
    pub user_id: Uuid,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// The absolute end of the session, whatever its activity.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// An authorization code's grant (RFC 6749 §4.1.2). Stored under the code's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: Uuid,
    pub session_id_hash: Option<String>,
    pub redirect_uri: String,
    /// RFC 6749 §4.1.3: the token request must repeat `redirect_uri` if the request had it.
    pub redirect_uri_given: bool,
    pub response_mode: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    /// The `jti` of the access token issued when the code was redeemed.
    pub access_token_jti: Option<String>,
    /// RFC 8707 §2: the resources the authorization request named.
    pub resources: Vec<String>,
    /// RFC 9449 §10: the code is redeemed only with a DPoP proof of this key.
    pub dpop_jkt: Option<String>,
}

/// What a refresh needs, read at once: the token, its user (if the row still exists) and the
/// public `sid` of the browser session it is bound to (if that session is still live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    pub token: RefreshToken,
    pub user: Option<User>,
    pub sid: Option<String>,
}

/// One refresh token of a family (every token descended from one grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub id: Uuid,
    pub token_hash: String,
    pub family_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub generation: i64,
    pub client_id: String,
    pub user_id: Uuid,
    pub scope: String,
    pub session_id_hash: Option<String>,
    pub auth_code_hash: Option<String>,
    pub user_agent: Option<String>,
    /// When the original grant authenticated the user (kept for ID tokens on refresh).
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    /// Idle expiry: each rotation moves it, never past `family_expires_at`.
    pub expires_at: Timestamp,
    pub family_expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub access_token_jti: Option<String>,
    /// The successor's value sealed under the master key, during the grace window only.
    pub successor_sealed: Option<Vec<u8>>,
    pub reuse_count: i64,
    /// How the user signed in (RFC 8176 values) and the resulting `acr`: refreshes keep them.
    pub amr: Vec<String>,
    pub acr: Option<String>,
    /// RFC 8707 §2.2: the resources granted at authorization; any of them may be asked for.
    pub resources: Vec<String>,
    /// RFC 9449 §5: the JWK thumbprint a public client's refresh tokens are bound to.
    pub dpop_jkt: Option<String>,
}

/// What a single-use account token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    PasswordReset,
    /// Makes the token's `email` (a new address) the user's.
    EmailChange,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::EmailChange => "email_change",
        }
    }
}

/// An applied email change: the account and its previous and new address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChange {
    pub user_id: Uuid,
    pub from: String,
    pub to: String,
}

/// A mailed link's token: only its SHA-256 hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub token_hash: String,
    pub purpose: TokenPurpose,
    pub user_id: Uuid,
    /// The address the link was sent to.
    pub email: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// A page of the user list, newest last; deleted users are never listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Part of the email address, any case.
    pub email_contains: Option<String>,
    /// The start of the email address or of the name, any case (an index range scan).
    pub search: Option<String>,
    pub role: Option<String>,
    pub sort: UserSort,
    /// Newest, or last in the alphabet, first.
    pub descending: bool,
    pub offset: u64,
    pub limit: u32,
}

/// The orders a user list comes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserSort {
    #[default]
    Created,
    Email,
    Name,
}

/// A page of registered clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientQuery {
    /// The start of the client's name (any case), or its exact client id.
    pub search: Option<String>,
    /// Only switched-off (true) or only active (false) clients.
    pub disabled: Option<bool>,
    pub first_party: Option<bool>,
    pub sort: ClientSort,
    pub descending: bool,
    pub offset: u64,
    pub limit: u32,
}

/// The orders a client list comes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientSort {
    #[default]
    Created,
    Name,
}

/// What a user allowed a client, as the account pages and the admin API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The last token issued to the client for the user (a code or a refresh), if any is
    /// still on record.
    pub last_used_at: Option<Timestamp>,
}

/// What [`crate::store::AdminStore::revoke_consent`] took away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedConsent {
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    /// The access tokens to deny.
    pub jtis: Vec<String>,
}

/// Counts for the console's dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminCounts {
    pub users: u64,
    pub clients: u64,
    /// Browser sessions that are neither revoked nor past their absolute end.
    pub live_sessions: u64,
}

/// A page of audit events, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The user the events are about (or caused by).
    pub user: Option<String>,
    pub kind: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub offset: u64,
    pub limit: u32,
}

/// What kind of second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FactorKind {
    /// An authenticator app (RFC 6238).
    Totp,
    /// A WebAuthn credential: a passkey or a security key.
    Passkey,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Passkey => "passkey",
        }
    }
}

impl FromStr for FactorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "totp" => Ok(FactorKind::Totp),
            "passkey" => Ok(FactorKind::Passkey),
            other => Err(format!("factor kind {other:?}")),
        }
    }
}

/// A user's second factor. The TOTP key is only ever stored sealed under the master key; a
/// passkey's credential is public key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaFactor {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: FactorKind,
    pub name: String,
    pub secret_sealed: Option<Vec<u8>>,
    /// TOTP: the last accepted time step (each code is accepted once).
    pub last_step: Option<i64>,
    /// Passkeys: the credential id, base64url.
    pub credential_id: Option<String>,
    /// Passkeys: the stored credential (JSON).
    pub credential: Option<String>,
    /// `None` while a TOTP enrollment waits for its first code; such a factor signs nobody in.
    pub confirmed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A short-lived, single-use server-side record keyed by the hash of a random id: a
/// half-finished sign-in waiting for its second factor, or a WebAuthn ceremony's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    pub id_hash: String,
    /// `sign_in`, `passkey_register`, `passkey_login`...
    pub purpose: String,
    pub user_id: Option<Uuid>,
    /// JSON, never a secret in clear (ceremony state holds challenges, not keys).
    pub data: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// A text no row can hold: databases refuse NUL in text (PostgreSQL rejects the query), so a
/// filter with one matches nothing and is answered without asking the database.
fn unmatchable(texts: &[&Option<String>]) -> bool {
    texts
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
}

impl UserQuery {
    pub fn matches_nothing(&self) -> bool {
        unmatchable(&[&self.email_contains, &self.search, &self.role])
    }
}

impl ClientQuery {
    pub fn matches_nothing(&self) -> bool {
        unmatchable(&[&self.search])
    }
}

impl AuditQuery {
    pub fn matches_nothing(&self) -> bool {
        unmatchable(&[&self.user, &self.kind])
    }
}
