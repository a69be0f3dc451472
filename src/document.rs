//! Documents served as they are to every caller (discovery metadata, the JWKS): serialized
//! once when they change, with a strong entity tag, so a request only copies a pointer.
//! Knows nothing of HTTP beyond the entity-tag grammar of RFC 9110 §8.8.3.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A JSON document serialized once, and its entity tag.
#[derive(Debug, Clone)]
pub struct JsonDocument {
    body: Bytes,
    etag: String,
}

impl JsonDocument {
    pub fn new(value: &impl serde::Serialize) -> Result<JsonDocument, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        // RFC 9110 §8.8.3: a strong tag changes whenever the representation does, so a digest
        // of the bytes is one that every instance computes alike for the same document.
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]));
        Ok(JsonDocument {
            body: Bytes::from(body),
            etag,
        })
    }

    /// The serialized document; cloning it shares the bytes.
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// The strong entity tag, quoted as it goes on the wire.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// RFC 9110 §13.1.2: `If-None-Match` is `*` or a list of entity tags compared weakly
    /// (a `W/` prefix is ignored); a match means the caller's copy is current (304).
    pub fn matches_if_none_match(&self, header: &str) -> bool {
        header
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == self.etag.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_bytes_and_if_none_match_compares_weakly() {
        let a = JsonDocument::new(&serde_json::json!({"keys": [1]})).unwrap();
        let b = JsonDocument::new(&serde_json::json!({"keys": [2]})).unwrap();
        assert_ne!(a.etag(), b.etag());
        assert_eq!(
            a.etag(),
            JsonDocument::new(&serde_json::json!({"keys": [1]}))
                .unwrap()
                .etag()
        );
        assert!(a.etag().starts_with('"') && a.etag().ends_with('"'));
        assert_eq!(&a.body()[..], br#"{"keys":[1]}"#);
        assert!(a.matches_if_none_match(a.etag()));
        assert!(a.matches_if_none_match(&format!("W/{}", a.etag())));
        assert!(a.matches_if_none_match(&format!("\"x\", {}", a.etag())));
        assert!(a.matches_if_none_match("*"));
        assert!(!a.matches_if_none_match(b.etag()));
        assert!(!a.matches_if_none_match(""));
    }
}
