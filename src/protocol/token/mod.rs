//! The token endpoint's grants, one file each, and the minting they share.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod refresh_token;
pub mod token_exchange;

use serde::Serialize;

use crate::config::Settings;
use crate::denylist::DenyList;
use crate::keys::{KeyRing, MasterKey, SigningAlg};
use crate::protocol::error::OAuthError;
use crate::protocol::params::Params;
use crate::protocol::tokens::{access_token_claims, id_token_claims, Grant};
use crate::random;
use crate::store::{ApiResource, Client, Store, Timestamp};

/// RFC 6749 §5.1 (and OIDC Core §3.1.3.3 for `id_token`).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 8693 §2.2.1: what a token exchange issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    pub scope: String,
}

/// What a grant needs from the running server.
pub struct TokenContext<'a> {
    pub store: &'a dyn Store,
    pub ring: &'a KeyRing,
    pub master: &'a MasterKey,
    pub deny: &'a DenyList,
    /// Registered clients (switched-off ones are unknown), for tokens issued to them.
    pub clients: &'a crate::clients::ClientDirectory,
    pub metrics: &'a crate::metrics::Metrics,
    pub settings: &'a Settings,
    pub now: Timestamp,
    /// RFC 9449 §5: the JWK thumbprint of the request's verified DPoP proof, if it had one.
    pub dpop_jkt: Option<&'a str>,
}

impl TokenContext<'_> {
    fn alg(&self, chosen: &Option<String>, default: &str) -> SigningAlg {
        chosen
            .as_deref()
            .and_then(SigningAlg::parse)
            .or_else(|| SigningAlg::parse(default))
            .unwrap_or(SigningAlg::Es256)
    }

    /// Signs the access token (with `jti`) and, for OpenID requests of a user, the ID token.
    pub fn mint(
        &self,
        client: &Client,
        grant: &Grant,
        jti: &str,
        refresh: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let sign_failed = |e: crate::keys::KeyError| {
            tracing::error!(error = %e, "token signing failed");
            OAuthError::server_error()
        };
        let s = self.settings;
        let at_alg = self.alg(
            &client.access_token_signed_response_alg,
            &s.oauth.access_token_alg,
        );
        // RFC 8707 §2.2: a token for one API has it as audience and only its scopes. An API
        // may shorten the lifetime, never lengthen it: revocations deny a token for
        // `tokens.access_token_ttl_secs`, and a longer-lived one would outlive its denial.
        let (audience, ttl, at_scope) = match grant.resource {
            Some(r) => (
                r.identifier.as_str(),
                r.access_token_ttl_secs
                    .map(|t| (t.max(1) as u64).min(s.tokens.access_token_ttl_secs))
                    .unwrap_or(s.tokens.access_token_ttl_secs),
                crate::protocol::resource::narrow(grant.scope, r),
            ),
            None => (
                s.access_token_audience(),
                s.tokens.access_token_ttl_secs,
                grant.scope.clone(),
            ),
        };
        let at_grant = Grant {
            scope: &at_scope,
            ..grant.clone()
        };
        let mut claims = access_token_claims(&at_grant, audience, ttl as i64, jti);
        // RFC 9449 §6.1 and RFC 7800 §3.1: the key the token is bound to.
        if let Some(jkt) = self.dpop_jkt {
            let _ = claims.set_claim("cnf", Some(serde_json::json!({ "jkt": jkt })));
        }
        // RFC 8693 §4.1: who is acting for the subject.
        if let Some(act) = grant.act {
            let _ = claims.set_claim("act", Some(act.clone()));
        }
        // RFC 9068 §2.1: typ "at+jwt" tells access tokens apart from ID tokens.
        let access_token = self
            .ring
            .sign(at_alg, "at+jwt", &claims)
            .map_err(sign_failed)?;
        let id_token = match grant.user {
            Some(user) if grant.scope.contains("openid") => {
                let alg = self.alg(&client.id_token_signed_response_alg, &s.oauth.id_token_alg);
                let ttl = s.tokens.id_token_ttl_secs as i64;
                let claims = id_token_claims(grant, user, ttl, alg, &access_token);
                Some(self.ring.sign(alg, "JWT", &claims).map_err(sign_failed)?)
            }
            _ => None,
        };
        Ok(TokenResponse {
            access_token,
            // RFC 9449 §5: a bound token's type is DPoP.
            token_type: if self.dpop_jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: ttl,
            id_token,
            refresh_token: refresh,
            issued_token_type: None,
            // RFC 6749 §5.1: the scope of the access token.
            scope: at_scope.to_string(),
        })
    }

    /// RFC 8707 §2.2: the registered API a token request names, if it names one.
    pub async fn target(
        &self,
        client: &Client,
        params: &Params,
        granted: &[String],
    ) -> Result<Option<ApiResource>, OAuthError> {
        let Some(id) = crate::protocol::resource::token_target(params, client, granted)? else {
            return Ok(None);
        };
        match self.store.get_resource(&id).await.map_err(storage_failed)? {
            Some(r) => Ok(Some(r)),
            None => Err(OAuthError::new(
                crate::protocol::error::ErrorCode::InvalidTarget,
                format!("the resource {id:?} is not registered"),
            )),
        }
    }
}

/// A fresh access token id.
pub fn new_jti() -> String {
    random::token(16)
}

/// Maps a storage failure to the protocol's generic server error, logging the detail.
pub fn storage_failed(e: crate::store::StoreError) -> OAuthError {
    tracing::error!(error = %e, "storage failure at the token endpoint");
    OAuthError::server_error()
}
