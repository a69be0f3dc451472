//! Upstream OpenID Connect providers, with the `openidconnect` crate as the relying party:
//! discovery (cached, refreshed hourly), the authorization URL (code flow, PKCE S256, `state`,
//! `nonce`, `prompt`/`max_age` passed on), the code exchange, ID-token validation against the
//! upstream JWKS (signature, `iss`, `aud`, `exp`, `nonce`; OIDC Core §3.1.3.7) with one JWKS
//! refresh when the token names an unknown key, and userinfo when the ID token lacks claims.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreIdTokenClaims,
    CoreJsonWebKeySet, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use tokio::sync::RwLock;

use super::{FederationError, FederationService, Hints, Provider, UpstreamProfile};
use crate::config::upstream_url_ok;
use crate::store::Timestamp;

/// How long discovery metadata (and its JWKS) is used before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// At most one key-set fetch per provider this often, whatever ID tokens name.
const JWKS_COOLDOWN: Duration = Duration::from_secs(30);

/// Each provider's metadata, with the JWKS in it, and when it was read; and when its keys
/// were last fetched again for an unknown `kid`.
#[derive(Default)]
pub struct MetadataCache {
    entries: RwLock<HashMap<String, (CoreProviderMetadata, Instant)>>,
    key_fetches: RwLock<HashMap<String, Instant>>,
}

/// What the relying party demanded of the sign-in, and when the flow started: the upstream's
/// `auth_time` must show it (OIDC Core §3.1.3.7 items 11 and 13).
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub hints: Hints,
    pub started_at: Timestamp,
    pub now: Timestamp,
    pub skew: i64,
}

impl Freshness {
    fn check(&self, auth_time: Option<i64>) -> Result<(), FederationError> {
        if !self.hints.demanded || !self.hints.any() {
            return Ok(());
        }
        let Some(at) = auth_time else {
            return Err(FederationError::NotFresh);
        };
        if self.hints.prompt_login && at < self.started_at - self.skew {
            return Err(FederationError::NotFresh);
        }
        if let Some(max_age) = self.hints.max_age {
            if self.now - at > max_age + self.skew {
                return Err(FederationError::NotFresh);
            }
        }
        Ok(())
    }
}

fn unreachable(e: impl std::fmt::Display) -> FederationError {
    FederationError::Unreachable(e.to_string())
}

impl MetadataCache {
    async fn get(
        &self,
        service: &FederationService,
        provider: &Provider,
    ) -> Result<CoreProviderMetadata, FederationError> {
        if let Some((metadata, at)) = self.entries.read().await.get(provider.id()) {
            if at.elapsed() < METADATA_TTL {
                return Ok(metadata.clone());
            }
        }
        self.refresh(service, provider).await
    }

    /// Reads discovery again (which also fetches the JWKS).
    async fn refresh(
        &self,
        service: &FederationService,
        provider: &Provider,
    ) -> Result<CoreProviderMetadata, FederationError> {
        let issuer = IssuerUrl::new(provider.config.issuer.clone().unwrap_or_default())
            .map_err(|e| FederationError::BadResponse(format!("issuer: {e}")))?;
        // The crate checks that the document names this very issuer (Discovery §4.3).
        let metadata = Box::pin(CoreProviderMetadata::discover_async(issuer, &service.http))
            .await
            .map_err(|e| match e {
                openidconnect::DiscoveryError::Request(e) => unreachable(e),
                other => FederationError::BadResponse(format!("discovery: {other}")),
            })?;
        // The endpoints it names carry codes, tokens and the keys: https (or loopback) only.
        let endpoints = [
            Some(metadata.authorization_endpoint().as_str()),
            metadata.token_endpoint().map(|u| u.as_str()),
            metadata.userinfo_endpoint().map(|u| u.as_str()),
            Some(metadata.jwks_uri().as_str()),
        ];
        if let Some(bad) = endpoints
            .into_iter()
            .flatten()
            .find(|u| !upstream_url_ok(u))
        {
            return Err(FederationError::BadResponse(format!(
                "discovery names a plain-http endpoint {bad:?}"
            )));
        }
        self.entries.write().await.insert(
            provider.id().to_string(),
            (metadata.clone(), Instant::now()),
        );
        Ok(metadata)
    }

    /// A new JWKS for a provider whose ID token named a key we do not have (key rotation,
    /// OIDC Core §10.1.1).
    async fn refresh_keys(
        &self,
        service: &FederationService,
        provider: &Provider,
        metadata: CoreProviderMetadata,
    ) -> Result<CoreProviderMetadata, FederationError> {
        {
            let mut fetches = self.key_fetches.write().await;
            if fetches
                .get(provider.id())
                .is_some_and(|at| at.elapsed() < JWKS_COOLDOWN)
            {
                return Ok(metadata);
            }
            fetches.insert(provider.id().to_string(), Instant::now());
        }
        let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &service.http)
            .await
            .map_err(|e| unreachable(format!("jwks: {e}")))?;
        let metadata = metadata.set_jwks(jwks);
        self.entries.write().await.insert(
            provider.id().to_string(),
            (metadata.clone(), Instant::now()),
        );
        Ok(metadata)
    }
}

fn client_of(
    provider: &Provider,
    metadata: CoreProviderMetadata,
    redirect_uri: &str,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    FederationError,
> {
    let secret = provider.secret();
    // client_secret_basic unless the provider supports only client_secret_post.
    let post_only = metadata
        .token_endpoint_auth_methods_supported()
        .is_some_and(|m| {
            m.contains(&CoreClientAuthMethod::ClientSecretPost)
                && !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
        });
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| FederationError::BadResponse(format!("redirect URI: {e}")))?;
    let mut client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.config.client_id.clone()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(redirect);
    if post_only {
        client = client.set_auth_type(AuthType::RequestBody);
    }
    Ok(client)
}

pub(super) async fn authorization_url(
    service: &FederationService,
    provider: &Provider,
    redirect_uri: &str,
    state: &str,
    pkce_verifier: &str,
    nonce: &str,
    hints: Hints,
) -> Result<String, FederationError> {
    let metadata = service.oidc.get(service, provider).await?;
    let client = client_of(provider, metadata, redirect_uri)?;
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier.into()));
    let (state, nonce) = (state.to_string(), nonce.to_string());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .set_pkce_challenge(challenge);
    for scope in provider.config.effective_scopes() {
        if scope != "openid" {
            request = request.add_scope(Scope::new(scope));
        }
    }
    // OIDC Core §3.1.2.1: the relying party's demand for a fresh sign-in goes upstream too.
    if hints.prompt_login {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    if let Some(max_age) = hints.max_age {
        request = request.set_max_age(Duration::from_secs(max_age.max(0) as u64));
    }
    let (url, _, _) = request.url();
    Ok(url.to_string())
}

#[allow(clippy::too_many_arguments)] // the parts of one code exchange
pub(super) async fn exchange(
    service: &FederationService,
    provider: &Provider,
    redirect_uri: &str,
    code: &str,
    pkce_verifier: &str,
    nonce: &str,
    iss: Option<&str>,
    fresh: Freshness,
) -> Result<UpstreamProfile, FederationError> {
    let metadata = service.oidc.get(service, provider).await?;
    // RFC 9207 §2.4: an `iss` in the response must be the provider's (mix-up defence).
    if let Some(iss) = iss {
        if iss != metadata.issuer().as_str() {
            return Err(FederationError::BadResponse(format!(
                "the response's iss {iss:?} is not the provider's issuer"
            )));
        }
    }
    let client = client_of(provider, metadata.clone(), redirect_uri)?;
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| FederationError::BadResponse(format!("token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()));
    let tokens = Box::pin(request.request_async(&service.http))
        .await
        .map_err(|e| match e {
            RequestTokenError::Request(e) => unreachable(format!("token endpoint: {e}")),
            RequestTokenError::ServerResponse(r) => {
                FederationError::BadResponse(format!("token endpoint said {}", r.error()))
            }
            other => FederationError::BadResponse(format!("token endpoint: {other}")),
        })?;
    let id_token = tokens.id_token().ok_or_else(|| {
        FederationError::InvalidIdToken("no id_token in the token response".into())
    })?;
    let nonce = Nonce::new(nonce.to_string());
    let claims: CoreIdTokenClaims = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Ok(claims) => claims.clone(),
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            let metadata = service
                .oidc
                .refresh_keys(service, provider, metadata)
                .await?;
            let client = client_of(provider, metadata, redirect_uri)?;
            let verifier = client.id_token_verifier();
            let claims = id_token
                .claims(&verifier, &nonce)
                .map_err(|e| FederationError::InvalidIdToken(e.to_string()))?
                .clone();
            claims
        }
        Err(e) => return Err(FederationError::InvalidIdToken(e.to_string())),
    };
    fresh.check(claims.auth_time().map(|t| t.timestamp()))?;
    let mut profile = UpstreamProfile {
        subject: claims.subject().to_string(),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string()),
        amr: claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default(),
    };
    // OIDC Core §5.3.2: userinfo fills in what the ID token left out; its `sub` must match.
    if profile.email.is_none() || profile.name.is_none() {
        if let Ok(request) = client.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        ) {
            match request.request_async(&service.http).await {
                Ok(info) => {
                    let info: CoreUserInfoClaims = info;
                    if profile.email.is_none() {
                        profile.email = info.email().map(|e| e.to_string());
                        profile.email_verified = info.email_verified().unwrap_or(false);
                    }
                    if profile.name.is_none() {
                        profile.name = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream userinfo failed; going on with the ID token's claims")
                }
            }
        }
    }
    Ok(profile)
}
