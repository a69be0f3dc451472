//! Webhook signatures as the Standard Webhooks specification defines them, so receivers can
//! check them with its libraries: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the key whose
//! base64 follows `whsec_`. Pure: no I/O; the secret never reaches a log.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a webhook secret as shown to operators once.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook's signing key: 32 random bytes.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

impl WebhookSecret {
    pub fn generate() -> WebhookSecret {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        WebhookSecret(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> WebhookSecret {
        WebhookSecret(bytes)
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Option<WebhookSecret> {
        let raw = text.strip_prefix(SECRET_PREFIX)?;
        STANDARD
            .decode(raw)
            .ok()
            .filter(|b| !b.is_empty())
            .map(WebhookSecret)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`: what the operator gives the receiver.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// HMAC-SHA256 of `id.timestamp.body`; HMAC takes keys of any length (RFC 2104 §2), so
    /// the error branch is never taken.
    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The `webhook-signature` header value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.tag(id, timestamp, body)))
    }

    /// Whether one of the space-separated signatures of `header` is a valid `v1` signature
    /// of this message (constant-time comparison). For receivers and tests; the server only
    /// signs.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.tag(id, timestamp, body);
        header.split(' ').any(|sig| {
            sig.strip_prefix("v1,")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .is_some_and(|tag| !expected.is_empty() && bool::from(tag.ct_eq(&expected)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_message_and_key() {
        let key = WebhookSecret::generate();
        let sig = key.sign("msg_1", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1,"));
        assert!(key.verify("msg_1", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!key.verify("msg_2", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!key.verify("msg_1", 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!key.verify("msg_1", 1_700_000_000, b"{\"a\":2}", &sig));
        assert!(!WebhookSecret::generate().verify("msg_1", 1_700_000_000, b"{\"a\":1}", &sig));
        let parsed = WebhookSecret::parse(&key.expose()).unwrap();
        assert!(parsed.verify(
            "msg_1",
            1_700_000_000,
            b"{\"a\":1}",
            &format!("v1,bad {sig}")
        ));
    }

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // The specification's published example (key, id, timestamp, payload, signature).
        let key = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
