//! Provider metadata: OpenID Connect Discovery 1.0 §3 and RFC 8414 §2.
//! Lists only what this build implements; nothing is advertised before it works.

use serde::Serialize;

use crate::keys::SigningAlg;
use crate::protocol::claims::{CLAIMS_SUPPORTED, SCOPES_SUPPORTED};

const AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];
const ASSERTION_ALGS: [&str; 5] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

#[derive(Debug, Clone, Serialize)]
pub struct ProviderMetadata {
    /// Discovery §4.3: must be identical to the issuer the document was fetched for.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: String,
    /// RFC 8628 §4, when the device flow is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    pub jwks_uri: String,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    /// OIDC Discovery §3: `1fa`, `mfa`, `phr` (see `accounts::mfa::policy`).
    pub acr_values_supported: Vec<&'static str>,
    pub prompt_values_supported: Vec<&'static str>,
    /// RFC 9207 §3: authorization responses carry `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    /// Discovery §3 defaults this to true, so it must be said explicitly.
    pub request_uri_parameter_supported: bool,
    /// OIDC Back-Channel Logout §2.1.
    pub backchannel_logout_supported: bool,
    pub backchannel_logout_session_supported: bool,
    /// RFC 9126 §5; present only when PAR is enabled (RFC 8414: nothing before it works).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_pushed_authorization_requests: Option<bool>,
    /// RFC 8414 §2 / RFC 7591 §3: only while registration is switched on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// RFC 9449 §5.1: the algorithms DPoP proofs may use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
}

impl ProviderMetadata {
    pub fn new(issuer: &str, allow_plain_pkce: bool) -> ProviderMetadata {
        let mut pkce = vec!["S256"];
        if allow_plain_pkce {
            pkce.push("plain");
        }
        ProviderMetadata {
            issuer: issuer.to_string(),
            authorization_endpoint: endpoint(issuer, "/authorize"),
            token_endpoint: endpoint(issuer, "/token"),
            userinfo_endpoint: endpoint(issuer, "/userinfo"),
            revocation_endpoint: endpoint(issuer, "/revoke"),
            introspection_endpoint: endpoint(issuer, "/introspect"),
            end_session_endpoint: endpoint(issuer, "/end_session"),
            device_authorization_endpoint: None,
            jwks_uri: endpoint(issuer, "/jwks.json"),
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query", "form_post"],
            grant_types_supported: vec![
                "authorization_code",
                "refresh_token",
                "client_credentials",
                crate::clients::GRANT_TOKEN_EXCHANGE,
            ],
            code_challenge_methods_supported: pkce,
            token_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS.to_vec(),
            // Resource servers are clients too; `none` cannot introspect or revoke.
            revocation_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            revocation_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS.to_vec(),
            introspection_endpoint_auth_methods_supported: AUTH_METHODS[..3].to_vec(),
            introspection_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS.to_vec(),
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: SigningAlg::ALL
                .iter()
                .map(|a| a.as_str())
                .collect(),
            scopes_supported: SCOPES_SUPPORTED.to_vec(),
            claims_supported: CLAIMS_SUPPORTED.to_vec(),
            acr_values_supported: crate::accounts::mfa::policy::ACR_VALUES_SUPPORTED.to_vec(),
            prompt_values_supported: vec!["none", "login", "consent", "select_account"],
            authorization_response_iss_parameter_supported: true,
            claims_parameter_supported: true,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            backchannel_logout_supported: true,
            backchannel_logout_session_supported: true,
            pushed_authorization_request_endpoint: None,
            require_pushed_authorization_requests: None,
            registration_endpoint: None,
            dpop_signing_alg_values_supported: Vec::new(),
        }
    }

    /// RFC 9449 §5.1.
    pub fn with_dpop(mut self, dpop: &crate::config::DpopSettings) -> ProviderMetadata {
        self.dpop_signing_alg_values_supported = dpop.signing_algs.clone();
        self
    }

    /// Adds the RFC 9126 §5 metadata when PAR is enabled. `request_uri_parameter_supported`
    /// stays false: it speaks of request objects by reference (RFC 9101), not of PAR's URIs.
    pub fn with_par(mut self, par: &crate::config::ParSettings) -> ProviderMetadata {
        if par.enabled {
            self.pushed_authorization_request_endpoint =
                Some(endpoint(&self.issuer, crate::http::par::PATH));
            self.require_pushed_authorization_requests = Some(par.require);
        }
        self
    }
}

impl ProviderMetadata {
    /// RFC 8628 §4: the device authorization endpoint, and its grant type, when enabled.
    pub fn with_device_flow(mut self, enabled: bool) -> ProviderMetadata {
        if enabled {
            self.device_authorization_endpoint =
                Some(endpoint(&self.issuer, "/device_authorization"));
            self.grant_types_supported
                .push(crate::clients::GRANT_DEVICE_CODE);
        }
        self
    }

    /// Advertises the dynamic client registration endpoint (when `registration.mode` is not
    /// `off`).
    pub fn with_registration(mut self, enabled: bool) -> ProviderMetadata {
        self.registration_endpoint =
            enabled.then(|| endpoint(&self.issuer, crate::clients::dynamic::REGISTRATION_PATH));
        self
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
        let m = ProviderMetadata::new("https://id.example.com/tenant", false);
        assert_eq!(m.issuer, "https://id.example.com/tenant");
        assert_eq!(m.jwks_uri, "https://id.example.com/tenant/jwks.json");
    }

    #[test]
    fn par_is_advertised_only_when_enabled() {
        let mut par = crate::config::ParSettings::default();
        let m = ProviderMetadata::new("https://id.example.com", false).with_par(&par);
        assert_eq!(
            m.pushed_authorization_request_endpoint.as_deref(),
            Some("https://id.example.com/par")
        );
        assert_eq!(m.require_pushed_authorization_requests, Some(false));
        par.enabled = false;
        let json = serde_json::to_value(
            ProviderMetadata::new("https://id.example.com", false).with_par(&par),
        )
        .unwrap();
        assert!(json.get("pushed_authorization_request_endpoint").is_none());
        assert!(json.get("require_pushed_authorization_requests").is_none());
    }

    #[test]
    fn the_device_flow_is_listed_only_when_enabled() {
        let off = ProviderMetadata::new("https://id.example.com", false).with_device_flow(false);
        let json = serde_json::to_value(&off).unwrap();
        assert!(json.get("device_authorization_endpoint").is_none());
        assert!(!off
            .grant_types_supported
            .contains(&crate::clients::GRANT_DEVICE_CODE));
        let on = ProviderMetadata::new("https://id.example.com", false).with_device_flow(true);
        assert_eq!(
            on.device_authorization_endpoint.as_deref(),
            Some("https://id.example.com/device_authorization")
        );
        assert!(on
            .grant_types_supported
            .contains(&crate::clients::GRANT_DEVICE_CODE));
    }
}
