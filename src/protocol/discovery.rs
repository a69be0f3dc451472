//! Provider metadata: OpenID Connect Discovery 1.0 §3 and RFC 8414 §2.
//! Lists only what this build implements; nothing is advertised before it works.

use serde::Serialize;

use crate::keys::SigningAlg;

#[derive(Debug, Clone, Serialize)]
pub struct ProviderMetadata {
    /// Discovery §4.3: must be identical to the issuer the document was fetched for.
    pub issuer: String,
    pub jwks_uri: String,
    /// RFC 8414 §2 makes this REQUIRED; empty until an authorization endpoint exists.
    pub response_types_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
}

impl ProviderMetadata {
    pub fn new(issuer: &str) -> ProviderMetadata {
        ProviderMetadata {
            issuer: issuer.to_string(),
            jwks_uri: endpoint(issuer, "/jwks.json"),
            response_types_supported: vec![],
            grant_types_supported: vec![],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: SigningAlg::ALL
                .iter()
                .map(|a| a.as_str())
                .collect(),
        }
    }
}

/// The absolute URL of one of our endpoints. The issuer has no trailing slash (checked
/// at start-up), and may carry a path when Portcullis is served under a prefix.
pub fn endpoint(issuer: &str, path: &str) -> String {
    format!("{issuer}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_exact_issuer() {
        let m = ProviderMetadata::new("https://id.example.com/tenant");
        assert_eq!(m.issuer, "https://id.example.com/tenant");
        assert_eq!(m.jwks_uri, "https://id.example.com/tenant/jwks.json");
    }
}
