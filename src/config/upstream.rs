//! `[[upstream]]`: the identity providers people may sign in through ("Sign in with …").
//! Shapes and checks the entries; the flows are in `federation/`.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

/// What protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// OpenID Connect: discovery, ID tokens, JWKS.
    #[default]
    Oidc,
    /// Plain OAuth 2.0 with a user-info API and a claim mapping.
    Oauth2,
    /// GitHub: `oauth2` with its URLs filled in and the verified primary address.
    Github,
}

/// One upstream provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// URL-safe identifier: `/upstream/{id}/start`, and the provider of linked identities
    /// (changing it unlinks everyone).
    pub id: String,
    /// The button label: "Sign in with {name}".
    pub name: String,
    #[serde(default)]
    pub kind: UpstreamKind,
    /// `oidc`: the issuer; its `/.well-known/openid-configuration` is read.
    #[serde(default)]
    pub issuer: Option<String>,
    pub client_id: String,
    /// The client secret, or `client_secret_env` naming an environment variable holding it.
    /// Neither: a public client (PKCE alone).
    #[serde(default, skip_serializing)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes asked for; default `["openid", "email", "profile"]` (`oidc`), none (`oauth2`),
    /// `["read:user", "user:email"]` (`github`).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// A verified address from this provider may link to an existing account of that address.
    #[serde(default)]
    pub trust_email: bool,
    /// First-time users get a new account (otherwise sign-up through it is closed).
    #[serde(default)]
    pub auto_create: bool,
    /// Believe the provider's `amr` (OIDC): its values appear in our tokens, and its `mfa`
    /// counts as our second factor. Off: a sign-in there is one factor, `amr` `["fed"]`.
    #[serde(default)]
    pub trust_amr: bool,
    #[serde(default)]
    pub icon_url: Option<String>,
    /// `oauth2` (and overrides for `github`): the endpoints.
    #[serde(default)]
    pub authorization_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// `github`: where the addresses are listed (default `https://api.github.com/user/emails`).
    #[serde(default)]
    pub emails_url: Option<String>,
    /// `oauth2`: which member of the user-info JSON holds each claim — `sub` (required),
    /// `email`, `email_verified`, `name`. A dotted path reaches into objects.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

pub const GITHUB_AUTHORIZATION_URL: &str = "https://github.com/login/oauth/authorize";
pub const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
pub const GITHUB_USERINFO_URL: &str = "https://api.github.com/user";
pub const GITHUB_EMAILS_URL: &str = "https://api.github.com/user/emails";

/// The claims an `oauth2` mapping may name.
const MAPPED_CLAIMS: [&str; 4] = ["sub", "email", "email_verified", "name"];

impl UpstreamSettings {
    /// The scopes to ask for, with the kind's default.
    pub fn effective_scopes(&self) -> Vec<String> {
        match (&self.scopes, self.kind) {
            (Some(s), _) => s.clone(),
            (None, UpstreamKind::Oidc) => vec!["openid".into(), "email".into(), "profile".into()],
            (None, UpstreamKind::Github) => vec!["read:user".into(), "user:email".into()],
            (None, UpstreamKind::Oauth2) => vec![],
        }
    }

    fn url_or(&self, given: &Option<String>, github: &str) -> Option<String> {
        given
            .clone()
            .or_else(|| (self.kind == UpstreamKind::Github).then(|| github.to_string()))
    }

    pub fn authorization_endpoint(&self) -> Option<String> {
        self.url_or(&self.authorization_url, GITHUB_AUTHORIZATION_URL)
    }
    pub fn token_endpoint(&self) -> Option<String> {
        self.url_or(&self.token_url, GITHUB_TOKEN_URL)
    }
    pub fn userinfo_endpoint(&self) -> Option<String> {
        self.url_or(&self.userinfo_url, GITHUB_USERINFO_URL)
    }
    pub fn emails_endpoint(&self) -> Option<String> {
        self.url_or(&self.emails_url, GITHUB_EMAILS_URL)
    }

    /// The member of the user-info JSON that holds `claim`, with GitHub's own names.
    pub fn claim_path(&self, claim: &str) -> Option<String> {
        if let Some(path) = self.claims.get(claim) {
            return Some(path.clone());
        }
        match (self.kind, claim) {
            (UpstreamKind::Github, "sub") => Some("id".into()),
            (UpstreamKind::Github, "name") => Some("name".into()),
            _ => None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let at = |what: &str| format!("{what} (in the [[upstream]] entry with id {:?})", self.id);
        let bad = |key: &'static str, value: &str, expected: String| ConfigError::Invalid {
            key,
            value: value.to_string(),
            expected,
        };
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "upstream.id",
                &self.id,
                "1 to 64 letters, digits, '-' or '_' (it is part of /upstream/{id}/callback)"
                    .into(),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(bad(
                "upstream.name",
                &self.name,
                at("a button label such as \"GitHub\""),
            ));
        }
        if self.client_id.is_empty() {
            return Err(bad(
                "upstream.client_id",
                "",
                at("the client id this server was registered with at the provider"),
            ));
        }
        if self.client_secret.is_some() && self.client_secret_env.is_some() {
            return Err(bad(
                "upstream.client_secret_env",
                self.client_secret_env.as_deref().unwrap_or(""),
                at("either client_secret or client_secret_env, not both"),
            ));
        }
        let http_url = |key: &'static str, value: &Option<String>| -> Result<(), ConfigError> {
            match value {
                Some(v) if !is_http_url(v) => Err(bad(
                    key,
                    v,
                    at("an absolute https URL (http only for localhost)"),
                )),
                _ => Ok(()),
            }
        };
        http_url("upstream.authorization_url", &self.authorization_url)?;
        http_url("upstream.token_url", &self.token_url)?;
        http_url("upstream.userinfo_url", &self.userinfo_url)?;
        http_url("upstream.emails_url", &self.emails_url)?;
        http_url("upstream.icon_url", &self.icon_url)?;
        if let Some(claim) = self
            .claims
            .keys()
            .find(|k| !MAPPED_CLAIMS.contains(&k.as_str()))
        {
            return Err(bad(
                "upstream.claims",
                claim,
                at("claim names among sub, email, email_verified, name"),
            ));
        }
        match self.kind {
            UpstreamKind::Oidc => {
                let issuer = self.issuer.as_deref().unwrap_or("");
                if !is_http_url(issuer) {
                    return Err(bad(
                        "upstream.issuer",
                        issuer,
                        at("the provider's issuer URL, e.g. https://accounts.google.com"),
                    ));
                }
                if !self.effective_scopes().iter().any(|s| s == "openid") {
                    return Err(bad(
                        "upstream.scopes",
                        &self.effective_scopes().join(" "),
                        at("a list including \"openid\" (kind = \"oidc\")"),
                    ));
                }
            }
            UpstreamKind::Oauth2 => {
                for (key, value) in [
                    ("upstream.authorization_url", &self.authorization_url),
                    ("upstream.token_url", &self.token_url),
                    ("upstream.userinfo_url", &self.userinfo_url),
                ] {
                    if value.is_none() {
                        return Err(bad(key, "", at("an https URL (kind = \"oauth2\")")));
                    }
                }
                if !self.claims.contains_key("sub") {
                    return Err(bad(
                        "upstream.claims",
                        "",
                        at("a table naming at least `sub`, e.g. claims = { sub = \"id\", email = \"email\" }"),
                    ));
                }
            }
            UpstreamKind::Github => {}
        }
        Ok(())
    }
}

/// An https URL, or plain http to a loopback host (development and tests): a provider's
/// endpoints carry secrets and the keys that sign in anyone.
pub fn is_http_url(value: &str) -> bool {
    Url::parse(value).is_ok_and(|u| match u.scheme() {
        "https" => u.has_host(),
        "http" => matches!(
            u.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        ),
        _ => false,
    })
}

/// Checks every entry, and that ids are unique.
pub(super) fn validate_all(upstreams: &[UpstreamSettings]) -> Result<(), ConfigError> {
    for (i, u) in upstreams.iter().enumerate() {
        u.validate()?;
        if upstreams[..i].iter().any(|o| o.id == u.id) {
            return Err(ConfigError::Invalid {
                key: "upstream.id",
                value: u.id.clone(),
                expected: "an id used by one [[upstream]] entry only".into(),
            });
        }
    }
    Ok(())
}
