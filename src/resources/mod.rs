//! Registered APIs (RFC 8707 resources): the operator's use cases — register, list, delete —
//! shared by the CLI and the admin API, each validated by one set of rules and audited.
//! Decides what a valid resource is; never touches HTTP.

use std::sync::Arc;

use crate::clock::Clock;
use crate::protocol::scope::Scope;
use crate::store::{ApiResource, AuditEvent, Store, StoreError};

/// What an operator asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewResource {
    pub identifier: String,
    pub scopes: Vec<String>,
    pub access_token_ttl_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    Identifier(String),
    #[error("a resource needs at least one --scope")]
    NoScope,
    #[error("scope {0:?} is not a valid scope token (RFC 6749 §3.3)")]
    Scope(String),
    #[error("the access token lifetime must be between 10 and 86400 seconds")]
    Lifetime,
    #[error("a resource {0:?} is registered already")]
    Exists(String),
    #[error("no resource {0:?} is registered")]
    NotFound(String),
    /// The provider's own audience (its userinfo, account API and console accept such
    /// tokens) cannot be an API of its own.
    #[error("{0:?} is this server's own audience, not an API; choose the API's own URI")]
    Reserved(String),
    #[error("storage failed: {0}")]
    Store(String),
}

impl ResourceError {
    /// Whether the operator's input is at fault rather than the system.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ResourceError::Store(_))
    }
}

impl From<StoreError> for ResourceError {
    fn from(e: StoreError) -> Self {
        ResourceError::Store(e.to_string())
    }
}

/// Validates everything first, so a refused resource writes nothing.
pub fn prepare(new: &NewResource, now: i64) -> Result<ApiResource, ResourceError> {
    let identifier = crate::protocol::resource::parse_identifier(new.identifier.trim())
        .map_err(ResourceError::Identifier)?;
    let mut scopes: Vec<String> = Vec::new();
    for raw in new
        .scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter(|s| !s.is_empty())
    {
        let one = Scope::parse(raw).map_err(|_| ResourceError::Scope(raw.to_string()))?;
        if one.iter().count() != 1 {
            return Err(ResourceError::Scope(raw.to_string()));
        }
        // A token for an API carries no OpenID Connect or refresh scopes.
        if matches!(raw, "openid" | "offline_access") {
            return Err(ResourceError::Scope(raw.to_string()));
        }
        if !scopes.iter().any(|s| s == raw) {
            scopes.push(raw.to_string());
        }
    }
    if scopes.is_empty() {
        return Err(ResourceError::NoScope);
    }
    let ttl = match new.access_token_ttl_secs {
        None => None,
        Some(t) if (10..=86_400).contains(&t) => Some(t as i64),
        Some(_) => return Err(ResourceError::Lifetime),
    };
    Ok(ApiResource {
        identifier,
        scopes,
        access_token_ttl_secs: ttl,
        created_at: now,
    })
}

pub struct ResourceService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Identifiers no API may take: the provider's own audiences.
    reserved: Vec<String>,
}

impl ResourceService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> ResourceService {
        ResourceService {
            store,
            clock,
            reserved: Vec::new(),
        }
    }

    /// The provider's own audiences (its issuer, `oauth.access_token_audience`), refused as
    /// API identifiers.
    pub fn reserving(mut self, settings: &crate::config::Settings) -> ResourceService {
        self.reserved = vec![
            settings.issuer.clone(),
            settings.access_token_audience().to_string(),
        ];
        self
    }

    pub async fn list(&self) -> Result<Vec<ApiResource>, ResourceError> {
        Ok(self.store.list_resources().await?)
    }

    pub async fn get(&self, identifier: &str) -> Result<ApiResource, ResourceError> {
        self.store
            .get_resource(identifier)
            .await?
            .ok_or_else(|| ResourceError::NotFound(identifier.to_string()))
    }

    #[tracing::instrument(skip(self))]
    pub async fn create(
        &self,
        new: &NewResource,
        actor: &str,
    ) -> Result<ApiResource, ResourceError> {
        let now = self.clock.now();
        let resource = prepare(new, now)?;
        let bare = |s: &str| s.trim_end_matches('/').to_string();
        if self
            .reserved
            .iter()
            .any(|r| bare(r) == bare(&resource.identifier))
        {
            return Err(ResourceError::Reserved(resource.identifier));
        }
        match self.store.create_resource(&resource).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(ResourceError::Exists(resource.identifier)),
            Err(e) => return Err(e.into()),
        }
        self.audit("resource.created", &resource, actor).await?;
        Ok(resource)
    }

    /// Tokens already issued for it stay valid until they expire; new requests naming it are
    /// refused with `invalid_target`.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, identifier: &str, actor: &str) -> Result<(), ResourceError> {
        let resource = self.get(identifier).await?;
        if !self.store.delete_resource(identifier).await? {
            return Err(ResourceError::NotFound(identifier.to_string()));
        }
        self.audit("resource.deleted", &resource, actor).await
    }

    async fn audit(
        &self,
        kind: &str,
        resource: &ApiResource,
        actor: &str,
    ) -> Result<(), ResourceError> {
        let mut event = AuditEvent::new(kind, self.clock.now());
        event.actor = Some(actor.to_string());
        event.detail = serde_json::json!({
            "resource": resource.identifier,
            "scopes": resource.scopes,
        });
        self.store.record_audit(&event).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked_before_anything_is_written() {
        let ok = NewResource {
            identifier: "https://api.example.com".into(),
            scopes: vec!["read".into(), "write read".into()],
            access_token_ttl_secs: Some(300),
        };
        let r = prepare(&ok, 5).unwrap();
        assert_eq!(r.scopes, vec!["read", "write"]);
        let bad = |f: fn(&mut NewResource)| {
            let mut n = ok.clone();
            f(&mut n);
            prepare(&n, 5).is_err()
        };
        assert!(bad(|n| n.identifier = "api".into()));
        assert!(bad(|n| n.identifier = "https://api/#x".into()));
        assert!(bad(|n| n.scopes.clear()));
        assert!(bad(|n| n.scopes = vec!["re\"ad".into()]));
        assert!(bad(|n| n.access_token_ttl_secs = Some(5)));
    }
}
