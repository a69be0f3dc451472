//! The catalogue of domain events: every type Portcullis emits and the one JSON envelope they
//! share (schema version 1). Decides what an event says; never what it costs to send it.
//! Minimal personal data, never a secret: no password, token, code, key material or hash.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::Timestamp;

/// The version of the envelope below; bumped only by an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

macro_rules! event_types {
    ($($variant:ident => $name:literal : $doc:literal,)*) => {
        /// Every event type, by its dotted wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType {
            $(#[doc = $doc] $variant,)*
        }

        impl EventType {
            /// The catalogue, in the order the README documents it.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }

            /// What the event means, as documented.
            pub fn describe(self) -> &'static str {
                match self {
                    $(EventType::$variant => $doc,)*
                }
            }

            pub fn parse(name: &str) -> Option<EventType> {
                match name {
                    $($name => Some(EventType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    UserRegistered => "user.registered":
        "An account was created (self-registration, admin API or CLI). data: email, emailVerified.",
    UserEmailVerified => "user.email_verified":
        "The user proved their address by following the mailed link. data: email.",
    UserUpdated => "user.updated":
        "An admin changed the account, or the user changed their address. data: changed (field names).",
    UserDeleted => "user.deleted":
        "The account was deleted; its sessions and tokens are revoked. data: {}.",
    UserSignedIn => "user.signed_in":
        "A sign-in completed and a browser session began. data: amr, sessionId.",
    UserSignInFailed => "user.sign_in_failed":
        "A password sign-in was refused. subject: the account, when one has that address. data: ip.",
    UserLockedOut => "user.locked_out":
        "Sign-ins for an address or IP are throttled after too many failures. data: ip, retryAfterSecs.",
    UserPasswordChanged => "user.password_changed":
        "The user changed their password; other sessions and tokens are revoked. data: {}.",
    UserPasswordReset => "user.password_reset":
        "A password was set through a mailed reset link; sessions and tokens are revoked. data: {}.",
    UserMfaEnrolled => "user.mfa_enrolled":
        "A second factor was confirmed. data: factorId, kind (totp | passkey).",
    UserMfaRemoved => "user.mfa_removed":
        "A second factor was removed by the user, or all of them by an admin. data: factorId or all.",
    SessionEnded => "session.ended":
        "A browser session was signed out or ended by an admin. subject: the user. data: sessionId.",
    TokenRefreshReuseDetected => "token.refresh_reuse_detected":
        "A spent refresh token came back: its whole family was revoked (RFC 9700 §4.14.2). data: familyId.",
    ClientCreated => "client.created":
        "An OAuth client was registered. subject: the client id. data: name, dynamic.",
    ClientUpdated => "client.updated":
        "A client's registration changed, it was switched off or on, or its secret was replaced. data: change.",
    ClientDeleted => "client.deleted":
        "A client was deleted with its codes, tokens and consents. subject: the client id. data: {}.",
    KeyRotated => "key.rotated":
        "A signing key started signing and the previous one retired. subject: the new kid. data: alg, retired.",
    KeyRevoked => "key.revoked":
        "A retired signing key was removed from the JWKS at once (emergency). subject: the kid. data: {}.",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventType::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type {name:?}")))
    }
}

/// One domain event, as stored in the outbox and sent to webhooks and the stream.
///
/// ```json
/// {"version":1,"id":"0193…","type":"user.registered","occurredAt":"2026-12-04T21:00:00Z",
///  "subject":"<user id>","actor":null,"client":null,"data":{"email":"ada@example.com",
///  "emailVerified":false},"traceId":"4bf92f35…"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub version: u32,
    /// UUIDv7: unique and time-ordered; also the `webhook-id` of every delivery, so a receiver
    /// can drop a redelivery it has seen.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339, UTC, seconds.
    #[serde(with = "rfc3339")]
    pub occurred_at: Timestamp,
    /// What the event is about: a user id, client id or key id (the type says which).
    pub subject: Option<String>,
    /// The user who caused it (an admin, or the user themself); null for the system or CLI.
    pub actor: Option<String>,
    /// The OAuth client involved, if any.
    pub client: Option<String>,
    /// Type-specific facts (see the catalogue); a JSON object, never a secret.
    pub data: serde_json::Value,
    /// The W3C trace id of the request that caused it.
    pub trace_id: Option<String>,
}

impl Event {
    pub fn new(kind: EventType, occurred_at: Timestamp) -> Event {
        Event {
            version: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            kind,
            occurred_at,
            subject: None,
            actor: None,
            client: None,
            data: serde_json::json!({}),
            trace_id: None,
        }
    }

    pub fn subject(mut self, subject: impl ToString) -> Event {
        self.subject = Some(subject.to_string());
        self
    }

    pub fn actor(mut self, actor: Option<impl ToString>) -> Event {
        self.actor = actor.map(|a| a.to_string());
        self
    }

    pub fn client(mut self, client: Option<impl ToString>) -> Event {
        self.client = client.map(|c| c.to_string());
        self
    }

    pub fn data(mut self, data: serde_json::Value) -> Event {
        self.data = data;
        self
    }

    pub fn trace(mut self, trace_id: Option<&str>) -> Event {
        self.trace_id = trace_id.map(str::to_string);
        self
    }

    /// The envelope as JSON (what is stored, signed and sent).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &i64, s: S) -> Result<S::Ok, S::Error> {
        let t = DateTime::from_timestamp(*ts, 0).unwrap_or_default();
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.timestamp())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_by_its_wire_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
            assert!(t.as_str().contains('.'), "{t}");
        }
        assert_eq!(EventType::ALL.len(), 18);
        assert_eq!(EventType::parse("user.exploded"), None);
    }

    #[test]
    fn the_envelope_has_the_documented_fields() {
        let e = Event::new(EventType::UserRegistered, 1_795_000_000)
            .subject("u1")
            .trace(Some("abc"));
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["type"], "user.registered");
        assert_eq!(v["occurredAt"], "2026-11-18T11:06:40Z");
        assert_eq!(v["subject"], "u1");
        assert_eq!(v["traceId"], "abc");
        assert!(v["actor"].is_null() && v["client"].is_null());
        assert_eq!(
            Uuid::parse_str(v["id"].as_str().unwrap())
                .unwrap()
                .get_version_num(),
            7
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
