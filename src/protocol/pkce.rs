//! Proof Key for Code Exchange (RFC 7636): the verifier grammar is ours, the S256 / plain
//! comparison is oxide-auth's `Pkce`. No HTTP, no SQL.

use std::borrow::Cow;

use oxide_auth::code_grant::extensions::Pkce;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    S256,
    Plain,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::S256 => "S256",
            Method::Plain => "plain",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "S256" => Some(Method::S256),
            "plain" => Some(Method::Plain),
            _ => None,
        }
    }
}

/// RFC 7636 §4.1 / §4.2: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
/// The same grammar serves challenges (an S256 challenge is 43 characters).
pub fn well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: recompute the challenge from the verifier and compare in constant time.
pub fn verify(method: Method, challenge: &str, verifier: &str) -> bool {
    // Ours: oxide-auth does not check the RFC 7636 §4.1 verifier grammar.
    if !well_formed(verifier) {
        return false;
    }
    let mut pkce = Pkce::required();
    // RFC 7636 §4.2: plain is accepted only for a challenge that was sent as plain.
    if method == Method::Plain {
        pkce.allow_plain();
    }
    let Ok(Some(stored)) = pkce.challenge(
        Some(Cow::Borrowed(method.as_str())),
        Some(Cow::Borrowed(challenge)),
    ) else {
        return false;
    };
    pkce.verify(Some(stored), Some(Cow::Borrowed(verifier)))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify(Method::S256, challenge, verifier));
        assert!(!verify(
            Method::S256,
            challenge,
            &verifier.replace('d', "e")
        ));
        assert!(!verify(Method::S256, challenge, "short"));
        assert!(verify(Method::Plain, verifier, verifier));
    }

    #[test]
    fn a_method_never_verifies_with_the_other_methods_rule() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        // An S256 challenge presented back as its own verifier is not a plain match.
        assert!(!verify(Method::S256, challenge, challenge));
        assert!(!verify(Method::Plain, challenge, verifier));
    }

    #[test]
    fn verifiers_outside_the_rfc7636_grammar_are_refused_even_when_plain_matches() {
        let short = "abc";
        assert!(!verify(Method::Plain, short, short));
        let bad_char = format!("{}!", "a".repeat(43));
        assert!(!verify(Method::Plain, &bad_char, &bad_char));
        let long = "a".repeat(129);
        assert!(!verify(Method::Plain, &long, &long));
        let ok = "a".repeat(128);
        assert!(verify(Method::Plain, &ok, &ok));
    }
}
