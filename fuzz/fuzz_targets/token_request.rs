//! The token endpoint's input: an optional `Authorization` header and a form body.
//!
//! Layout of the fuzz input:
//! - byte 0, bit 0: whether an `Authorization` header is sent;
//! - with a header, the rest up to the first `\n` is the header value (lossy UTF-8, as a
//!   server would see a header after refusing non-text) and what follows is the body;
//! - without one, the rest is the body (raw bytes).
//!
//! Properties checked besides "no panic":
//! - client credentials read from an `Authorization` header are flagged `used_basic`, and
//!   without a header they never are;
//! - PKCE (RFC 7636): `verify` never accepts an ill-formed verifier, `plain` accepts exactly
//!   the verifier itself, and S256 accepts the challenge computed per §4.2.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use portcullis::protocol::client_auth;
use portcullis::protocol::params::Params;
use portcullis::protocol::pkce::{self, Method};
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = if flags & 1 == 1 {
        let (line, body) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        (Some(String::from_utf8_lossy(line).into_owned()), body)
    } else {
        (None, rest)
    };

    let Ok(params) = Params::parse(body) else {
        return;
    };

    if let Ok(presented) = client_auth::presented(header.as_deref(), &params) {
        assert_eq!(presented.used_basic, header.is_some());
    }

    let challenge = params.get("code_challenge");
    let verifier = params.get("code_verifier");
    if let Some(verifier) = verifier {
        let ok_s256 = pkce::verify(Method::S256, challenge.unwrap_or(""), verifier);
        let ok_plain = pkce::verify(Method::Plain, challenge.unwrap_or(""), verifier);
        if !pkce::well_formed(verifier) {
            assert!(!ok_s256 && !ok_plain, "ill-formed verifier accepted");
        } else {
            assert_eq!(ok_plain, challenge == Some(verifier));
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            assert_eq!(ok_s256, challenge == Some(computed.as_str()));
            assert!(pkce::verify(Method::S256, &computed, verifier));
            assert!(pkce::verify(Method::Plain, verifier, verifier));
        }
    }
});
