//! RFC 7523 client assertions (`private_key_jwt`): the JWT a client sends as
//! `client_assertion`, read before the client is known and then verified against its keys.
//!
//! The key set is one public EC P-256 key (kid `fuzz-1`, ES256). Its private half was thrown
//! away after signing `seeds/client_assertion/valid_es256.jwt`, which verifies at the fixed
//! `NOW` below, so the fuzzer starts from an input that reaches the claim checks.
//!
//! Properties checked besides "no panic":
//! - an assertion that verifies names the client both in the claims `verify` read and in
//!   what `claimed_client` reads unverified (they decode the same payload);
//! - its `exp` lies in `(NOW, NOW + MAX_ASSERTION_LIFETIME]`;
//! - a header `verify` accepted is one `josekit::jwt::decode_header` accepts.

#![no_main]

use std::sync::OnceLock;

use josekit::jwk::Jwk;
use libfuzzer_sys::fuzz_target;
use portcullis::protocol::assertion;

const CLIENT_ID: &str = "c1";
const AUDIENCES: &[&str] = &["https://id.example.com/token"];
const NOW: i64 = 1_800_000_000;

/// Public only: `parse_jwks` refuses private members anyway.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"fuzz-1","use":"sig","alg":"ES256","x":"cvtnM_qoWKfMrT-OMRQjjExHwDkhziZw5hex5QcLhac","y":"ZDWXUk8gPPt8yQ3GJezBaDebTVncf8rLo26QlKIH0U0"}]}"#;

fn keys() -> &'static [Jwk] {
    static KEYS: OnceLock<Vec<Jwk>> = OnceLock::new();
    KEYS.get_or_init(|| match assertion::parse_jwks(JWKS) {
        Ok(keys) => keys,
        Err(e) => panic!("the fixed JWKS does not parse: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);

    let claimed = assertion::claimed_client(&s);
    let header_ok = josekit::jwt::decode_header(&*s).is_ok();

    if let Ok(verified) = assertion::verify(&s, CLIENT_ID, keys(), AUDIENCES, NOW) {
        assert!(header_ok, "verify accepted a header decode_header refuses");
        assert_eq!(
            claimed.as_deref(),
            Some(CLIENT_ID),
            "verified assertion, but claimed_client disagrees"
        );
        assert!(verified.exp > NOW);
        assert!(verified.exp - NOW <= assertion::MAX_ASSERTION_LIFETIME);
    }
});
