//! Passkeys (WebAuthn) over webauthn-rs: each ceremony becomes options JSON for the browser and a
//! state string the caller keeps server-side; what the browser posts back is verified against it.
//! Owns no storage and no cookie: the caller stores the state (a row keyed by a random id, used
//! once) so any instance can finish a ceremony another began. Never panics on what a browser sends.
//!
//! Every ceremony requires user verification (PIN or biometrics on the authenticator), so a
//! passkey is a multi-factor credential on its own (WebAuthn Level 3 §6.2.3).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

/// The browser side of these ceremonies, to be served as `/static/webauthn.js`.
pub const BROWSER_SCRIPT: &str = include_str!("../../../templates/static/webauthn.js");

/// How long the browser is given to answer (the `timeout` in the options). The caller should
/// expire a stored ceremony state after this long: the state itself carries no time.
pub const CEREMONY_LIFETIME: Duration = Duration::from_secs(300);

/// A browser's answer is a few kilobytes even with an attestation certificate chain; anything
/// far larger is refused before it is parsed.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The relying party: our WebAuthn identity (RP ID and allowed origin) and its ceremonies.
#[derive(Clone, Debug)]
pub struct Passkeys {
    webauthn: Webauthn,
}

/// A registered passkey, as the caller stores it next to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The credential id, base64url without padding: the lookup key, unique across all users
    /// (WebAuthn §7.1: refuse a credential id that is already registered, to anyone).
    pub credential_id: String,
    /// webauthn-rs's `Passkey`, serialised as JSON: public key, signature counter and flags.
    /// Public key material, not a secret; it changes when [`PasskeyUse::updated`] says so.
    pub data: String,
    /// The authenticator may sync or back up this key (the BE flag, WebAuthn §6.1.3): see
    /// [`PasskeyUse::amr`] for what that means for the `amr` claim.
    pub backup_eligible: bool,
}

/// A passkey that just verified: which one, and what it proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyUse {
    /// The credential id (base64url without padding) that signed.
    pub credential_id: String,
    /// The authenticator verified the user (PIN or biometrics); always true for passkeys.
    pub user_verified: bool,
    /// The key may exist outside this one device (BE flag).
    pub backup_eligible: bool,
    /// The key is backed up or synced right now (BS flag).
    pub backup_state: bool,
    /// The stored passkey with its new signature counter or backup flags, when they changed:
    /// store it in place of the old one, or the next use may be mistaken for a clone.
    pub updated: Option<StoredPasskey>,
}

impl PasskeyUse {
    /// The RFC 8176 §2 `amr` value for this key: a backup-eligible (synced) passkey has a private
    /// key that leaves the hardware, so it is `swk` (software-secured key); a device-bound one is
    /// `hwk` (hardware-secured key). User verification happened in both cases; policy may add
    /// `mfa` since a verified passkey is two factors on its own.
    pub fn amr(&self) -> &'static str {
        if self.backup_eligible {
            "swk"
        } else {
            "hwk"
        }
    }
}

/// Why a ceremony did not start or did not verify. The messages are fit for a user-facing page
/// (a 4xx), except `Configuration` and `Internal` (a 500); the source, where present, is the
/// private story for the log.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The RP ID is not the origin's host or a registrable suffix of it, the origin has no
    /// domain name (an RP ID is a domain, never an IP address: WebAuthn §4 "RP ID"), or it is
    /// neither https nor http://localhost.
    #[error("passkeys are misconfigured: {0}")]
    Configuration(String),
    /// The browser's answer is not JSON, or not a credential of the expected shape.
    #[error("the passkey response is malformed")]
    Malformed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The stored state does not parse, or belongs to another kind of ceremony.
    #[error("this passkey attempt is not valid any more; please start again")]
    UnknownCeremony,
    /// The ceremony was started for another account, or the passkey names another user.
    #[error("this passkey ceremony is for another user")]
    OtherUser,
    /// The account has no passkey to ask for.
    #[error("this account has no passkey")]
    NoPasskeys,
    /// The passkey signed with a credential this account does not have.
    #[error("this passkey is not registered to this account")]
    UnknownCredential,
    /// A discoverable answer without a user handle of ours (WebAuthn §7.2: without one, the
    /// user cannot be identified).
    #[error("this passkey does not say which account it belongs to")]
    NoUserHandle,
    /// Registration of a credential the account already has (the exclude list).
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    /// The authenticator did not verify the user (no PIN or biometrics).
    #[error("the passkey did not verify that it is you (PIN or biometrics)")]
    UserNotVerified,
    /// The signature counter did not move forward (WebAuthn §7.2, signature counter step; §6.1.1):
    /// a cloned authenticator, or a replayed answer.
    #[error("this passkey may have been copied; it was refused")]
    PossiblyCloned,
    /// Any other failed check: challenge, origin, RP ID, signature, flags.
    #[error("the passkey did not verify")]
    NotVerified(#[source] WebauthnError),
    /// A stored passkey or our own state could not be (de)serialised.
    #[error("a stored passkey could not be read")]
    Internal(String),
}

/// What the caller stores between start and finish. The kind and the user travel with the
/// webauthn-rs state so a state can only finish the ceremony, for the user, it was made for.
#[derive(Serialize, Deserialize)]
#[serde(tag = "ceremony", rename_all = "snake_case")]
enum Ceremony {
    Registration {
        user: Uuid,
        state: PasskeyRegistration,
    },
    SecondFactor {
        user: Uuid,
        state: PasskeyAuthentication,
    },
    Discoverable {
        state: DiscoverableAuthentication,
    },
}

impl Passkeys {
    /// The relying party of an issuer: RP ID = the issuer's host, origin = its
    /// `scheme://host[:port]` (any path is dropped).
    pub fn for_issuer(issuer: &Url, rp_name: &str) -> Result<Self, PasskeyError> {
        let host = issuer
            .domain()
            .ok_or_else(|| PasskeyError::Configuration(format!("{issuer} has no domain name")))?;
        Self::new(host, rp_name, issuer)
    }

    /// A relying party with an explicit RP ID (e.g. `example.com` for an issuer on
    /// `id.example.com`, so passkeys also work on sibling hosts) and origin. The origin must be
    /// https, or http on localhost (WebAuthn needs a secure context); only its
    /// `scheme://host[:port]` counts.
    pub fn new(rp_id: &str, rp_name: &str, origin: &Url) -> Result<Self, PasskeyError> {
        let origin = Url::parse(&origin.origin().ascii_serialization())
            .map_err(|_| PasskeyError::Configuration(format!("{origin} has no origin")))?;
        let secure = origin.scheme() == "https"
            || (origin.scheme() == "http" && origin.host_str() == Some("localhost"));
        if !secure {
            return Err(PasskeyError::Configuration(format!(
                "{origin} is neither https nor http://localhost"
            )));
        }
        let misconfigured = |_| {
            PasskeyError::Configuration(format!(
                "RP ID {rp_id:?} is not {origin}'s host or a parent domain of it"
            ))
        };
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .map_err(misconfigured)?
            .rp_name(rp_name)
            .timeout(CEREMONY_LIFETIME)
            .build()
            .map_err(misconfigured)?;
        Ok(Passkeys { webauthn })
    }

    /// Registration of a new passkey for `user_id` (the user handle the authenticator keeps: the
    /// 16 bytes of the UUID). Returns the options for `navigator.credentials.create` — the whole
    /// `CreationChallengeResponse`, `{"publicKey": {...}}` — and the state to store.
    ///
    /// `exclude` is the account's passkeys (WebAuthn §5.4 `excludeCredentials`). A discoverable
    /// credential is requested (`residentKey: "preferred"`) so the passkey also signs in without
    /// a password; an authenticator that cannot store one still registers a second factor.
    pub fn start_registration(
        &self,
        user_id: Uuid,
        email: &str,
        display_name: &str,
        exclude: &[StoredPasskey],
    ) -> Result<(Value, String), PasskeyError> {
        let exclude = exclude
            .iter()
            .map(|p| {
                URL_SAFE_NO_PAD
                    .decode(&p.credential_id)
                    .map_err(|_| PasskeyError::Internal("a stored credential id".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let display_name = if display_name.trim().is_empty() {
            email
        } else {
            display_name
        };
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_id, email, display_name, Some(exclude))
            .map_err(verification)?;
        let mut options = to_value(&options)?;
        prefer_discoverable(&mut options)?;
        let state = to_string(&Ceremony::Registration {
            user: user_id,
            state,
        })?;
        Ok((options, state))
    }

    /// Verifies the browser's answer to [`Self::start_registration`] (the JSON text posted by the
    /// script) for `user_id`. The caller must still refuse a credential id already stored for
    /// anyone (a unique key on it).
    pub fn finish_registration(
        &self,
        user_id: Uuid,
        state: &str,
        response: &str,
    ) -> Result<StoredPasskey, PasskeyError> {
        let Ceremony::Registration { user, state } = ceremony(state)? else {
            return Err(PasskeyError::UnknownCeremony);
        };
        if user != user_id {
            return Err(PasskeyError::OtherUser);
        }
        let response: RegisterPublicKeyCredential = parse_response(response)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(verification)?;
        stored(&passkey)
    }

    /// A second factor for `user_id`, who has already been identified: only `credentials` (the
    /// account's passkeys) may answer. Returns the options for `navigator.credentials.get` —
    /// `{"publicKey": {...}}` — and the state to store.
    pub fn start_authentication(
        &self,
        user_id: Uuid,
        credentials: &[StoredPasskey],
    ) -> Result<(Value, String), PasskeyError> {
        // An empty allow-list would let any discoverable credential answer.
        if credentials.is_empty() {
            return Err(PasskeyError::NoPasskeys);
        }
        let passkeys = credentials
            .iter()
            .map(StoredPasskey::passkey)
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(verification)?;
        let state = to_string(&Ceremony::SecondFactor {
            user: user_id,
            state,
        })?;
        Ok((to_value(&options)?, state))
    }

    /// Verifies the answer to [`Self::start_authentication`] for `user_id` against the same
    /// `credentials`, as loaded now. WebAuthn §7.2: a user handle, when the authenticator sends
    /// one, must map to this same user.
    pub fn finish_authentication(
        &self,
        user_id: Uuid,
        state: &str,
        response: &str,
        credentials: &[StoredPasskey],
    ) -> Result<PasskeyUse, PasskeyError> {
        let Ceremony::SecondFactor { user, state } = ceremony(state)? else {
            return Err(PasskeyError::UnknownCeremony);
        };
        if user != user_id {
            return Err(PasskeyError::OtherUser);
        }
        let response: PublicKeyCredential = parse_response(response)?;
        // Some authenticators send an empty handle for "none".
        if let Some(handle) = response.get_user_unique_id().filter(|h| !h.is_empty()) {
            if handle != user_id.as_bytes() {
                return Err(PasskeyError::OtherUser);
            }
        }
        let result = self
            .webauthn
            .finish_passkey_authentication(&response, &state)
            .map_err(verification)?;
        let stored = credentials
            .iter()
            .find(|c| c.credential_id == URL_SAFE_NO_PAD.encode(result.cred_id()))
            .ok_or(PasskeyError::UnknownCredential)?;
        used(stored, &result)
    }

    /// Passwordless sign-in: any discoverable passkey for this RP may answer, the user is not
    /// known yet. Also the request behind the autofill (conditional mediation) UI. Returns
    /// `{"publicKey": {...}, "mediation": "conditional"}` — the script decides the mediation
    /// itself — and the state to store.
    pub fn start_discoverable(&self) -> Result<(Value, String), PasskeyError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(verification)?;
        let state = to_string(&Ceremony::Discoverable { state })?;
        Ok((to_value(&options)?, state))
    }

    /// Who a discoverable answer claims to be, before anything is verified: the user handle as
    /// our user id, and the credential id (base64url) to load. Neither is proof of anything until
    /// [`Self::finish_discoverable`] succeeds.
    pub fn identify(&self, response: &str) -> Result<(Uuid, String), PasskeyError> {
        self.claimed(&parse_response(response)?)
    }

    /// Verifies the answer to [`Self::start_discoverable`] with the stored `credential` found by
    /// its id and `owner`, the user it is stored for. The user handle in the answer is unsigned,
    /// so it must name `owner`: otherwise anyone's passkey could claim anyone's account.
    pub fn finish_discoverable(
        &self,
        state: &str,
        response: &str,
        owner: Uuid,
        credential: &StoredPasskey,
    ) -> Result<PasskeyUse, PasskeyError> {
        let Ceremony::Discoverable { state } = ceremony(state)? else {
            return Err(PasskeyError::UnknownCeremony);
        };
        let response: PublicKeyCredential = parse_response(response)?;
        let (claimed, credential_id) = self.claimed(&response)?;
        if claimed != owner {
            return Err(PasskeyError::OtherUser);
        }
        if credential_id != credential.credential_id {
            return Err(PasskeyError::UnknownCredential);
        }
        let passkey = credential.passkey()?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&response, state, &passkey)
            .map_err(verification)?;
        used(credential, &result)
    }

    /// The user handle (16 bytes, our user id) and credential id of a discoverable answer.
    fn claimed(&self, response: &PublicKeyCredential) -> Result<(Uuid, String), PasskeyError> {
        let (user, credential_id) = self
            .webauthn
            .identify_discoverable_authentication(response)
            .map_err(|_| PasskeyError::NoUserHandle)?;
        Ok((user, URL_SAFE_NO_PAD.encode(credential_id)))
    }
}

/// `options` as the text of the page's `<script type="application/json" id="webauthn-options">`
/// block: JSON with `<`, `>` and `&` written as `\u003c`, `\u003e`, `\u0026`, so a user name
/// such as `</script>` cannot end the block (HTML §4.12.1.3). Insert it without HTML escaping
/// (askama `|safe`): entity escaping would corrupt the JSON, since script text is not decoded.
pub fn options_for_html(options: &Value) -> String {
    let json = options.to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

impl StoredPasskey {
    fn passkey(&self) -> Result<Passkey, PasskeyError> {
        serde_json::from_str(&self.data)
            .map_err(|_| PasskeyError::Internal(format!("passkey {}", self.credential_id)))
    }
}

/// The stored form of a passkey. The BE flag is read from webauthn-rs's own serialisation
/// (`cred.backup_eligible`), which is its storage format and therefore stable.
fn stored(passkey: &Passkey) -> Result<StoredPasskey, PasskeyError> {
    let value = to_value(passkey)?;
    let backup_eligible = value
        .pointer("/cred/backup_eligible")
        .and_then(Value::as_bool)
        .ok_or_else(|| PasskeyError::Internal("no backup_eligible in a passkey".into()))?;
    Ok(StoredPasskey {
        credential_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
        data: to_string(&value)?,
        backup_eligible,
    })
}

/// What a verified assertion did to the stored passkey. The counter rule (WebAuthn §7.2) is checked again
/// here against the passkey as the caller loaded it now: webauthn-rs compares the counter with
/// the copy taken when the ceremony started, which a concurrent sign-in may have overtaken.
fn used(
    stored_passkey: &StoredPasskey,
    result: &AuthenticationResult,
) -> Result<PasskeyUse, PasskeyError> {
    let stored_counter = serde_json::from_str::<Value>(&stored_passkey.data)
        .ok()
        .and_then(|data| data.pointer("/cred/counter").and_then(Value::as_u64))
        .ok_or_else(|| PasskeyError::Internal("no counter in a passkey".into()))?;
    let counter = u64::from(result.counter());
    if (counter > 0 || stored_counter > 0) && counter <= stored_counter {
        return Err(PasskeyError::PossiblyCloned);
    }
    let mut passkey = stored_passkey.passkey()?;
    let updated = match passkey.update_credential(result) {
        Some(true) => Some(stored(&passkey)?),
        Some(false) => None,
        None => return Err(PasskeyError::UnknownCredential),
    };
    Ok(PasskeyUse {
        credential_id: stored_passkey.credential_id.clone(),
        user_verified: result.user_verified(),
        backup_eligible: result.backup_eligible(),
        backup_state: result.backup_state(),
        updated,
    })
}

/// WebAuthn §5.4.6: `residentKey: "preferred"` asks for a discoverable credential without
/// failing on authenticators that cannot store one; `requireResidentKey` must then be false.
/// webauthn-rs's passkey registration says "discouraged", which would leave most security keys
/// and Windows Hello unable to sign in without a password.
fn prefer_discoverable(options: &mut Value) -> Result<(), PasskeyError> {
    let selection = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| PasskeyError::Internal("no authenticatorSelection".into()))?;
    selection.insert("residentKey".into(), "preferred".into());
    selection.insert("requireResidentKey".into(), false.into());
    Ok(())
}

fn ceremony(state: &str) -> Result<Ceremony, PasskeyError> {
    serde_json::from_str(state).map_err(|_| PasskeyError::UnknownCeremony)
}

fn parse_response<T: DeserializeOwned>(response: &str) -> Result<T, PasskeyError> {
    if response.len() > MAX_RESPONSE_BYTES {
        return Err(PasskeyError::Malformed(
            format!("{} bytes, over {MAX_RESPONSE_BYTES}", response.len()).into(),
        ));
    }
    serde_json::from_str(response).map_err(|e| PasskeyError::Malformed(Box::new(e)))
}

/// webauthn-rs's verdicts, sorted into what a user can act on.
fn verification(error: WebauthnError) -> PasskeyError {
    match error {
        WebauthnError::CredentialExcludedFromRequest => PasskeyError::AlreadyRegistered,
        WebauthnError::CredentialNotFound => PasskeyError::UnknownCredential,
        WebauthnError::UserNotVerified => PasskeyError::UserNotVerified,
        WebauthnError::CredentialPossibleCompromise => PasskeyError::PossiblyCloned,
        WebauthnError::InvalidUsername => PasskeyError::Internal("an empty user name".into()),
        WebauthnError::ParseBase64Failure(_)
        | WebauthnError::ParseCBORFailure(_)
        | WebauthnError::ParseJSONFailure(_)
        | WebauthnError::ParseNOMFailure
        | WebauthnError::ParseInsufficientBytesAvailable => {
            PasskeyError::Malformed(Box::new(error))
        }
        other => PasskeyError::NotVerified(other),
    }
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, PasskeyError> {
    serde_json::to_value(value).map_err(|e| PasskeyError::Internal(e.to_string()))
}

fn to_string<T: Serialize>(value: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(value).map_err(|e| PasskeyError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests;
