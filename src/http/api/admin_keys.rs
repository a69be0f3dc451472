//! `/admin/keys`: the signing keys as operators see them (never a private part), rotation and
//! emergency revocation — `KeyManager`'s, as `portcullis keys` uses them — announced to the
//! other instances through Redis as scheduled rotations are.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{admin_guard, admin_write_guard, time, ApiError, ApiTags, BearerAuth, Trace};
use crate::app::AppState;
use crate::keys::KeySummary;

pub struct AdminKeysApi;

/// A signing key's public facts.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct KeyView {
    /// The key id, as in the JWKS and in tokens' `kid` header.
    kid: String,
    /// RS256, PS256, ES256 or EdDSA.
    alg: String,
    /// `next` (published, not yet signing), `active` (signing) or `retired` (published until
    /// the tokens it signed expire).
    state: String,
    /// Whether the JWKS publishes it.
    published: bool,
    created_at: DateTime<Utc>,
    #[oai(nullable)]
    activated_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    retired_at: Option<DateTime<Utc>>,
}

impl From<&KeySummary> for KeyView {
    fn from(k: &KeySummary) -> Self {
        KeyView {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            state: k.state.as_str().to_string(),
            published: k.published,
            created_at: time(k.created_at),
            activated_at: k.activated_at.map(time),
            retired_at: k.retired_at.map(time),
        }
    }
}

#[derive(Debug, Object)]
struct KeyList {
    items: Vec<KeyView>,
}

/// An algorithm's key that signs now.
#[derive(Debug, Object)]
struct ActiveKey {
    alg: String,
    kid: String,
}

#[derive(Debug, Object)]
struct Rotated {
    /// For each algorithm, the key that signs from now on.
    active: Vec<ActiveKey>,
}

#[derive(ApiResponse)]
enum KeyListResponse {
    #[oai(status = 200)]
    Ok(Json<KeyList>),
}

#[derive(ApiResponse)]
enum RotatedResponse {
    /// Each algorithm's next key became active and its active key retired.
    #[oai(status = 200)]
    Ok(Json<Rotated>),
}

#[derive(ApiResponse)]
enum RevokedResponse {
    /// The key left the JWKS; tokens it signed no longer verify here.
    #[oai(status = 204)]
    Done,
}

fn keys_failed(e: crate::keys::KeyError, trace: &Trace) -> ApiError {
    tracing::error!(error = %e, "signing key operation failed");
    ApiError::internal(trace)
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminKeysApi {
    /// Signing keys (admin)
    ///
    /// Every key of every algorithm with its state; private parts are never shown.
    #[oai(path = "/admin/keys", method = "get")]
    async fn list(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<KeyListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let ring = state.keys.ring();
        Ok(KeyListResponse::Ok(Json(KeyList {
            items: ring.summary().iter().map(KeyView::from).collect(),
        })))
    }

    /// Rotate the signing keys (admin)
    ///
    /// For every algorithm the next key (already published) starts signing, the active key
    /// retires and a new next key is made, as `portcullis keys rotate` does. Other instances
    /// are told through Redis at once.
    #[oai(path = "/admin/keys/rotate", method = "post")]
    async fn rotate(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<RotatedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let promoted = state
            .keys
            .rotate_by(Some(&actor.id.to_string()))
            .await
            .map_err(|e| keys_failed(e, &trace))?;
        crate::app::announce_keys_changed(&state).await;
        Ok(RotatedResponse::Ok(Json(Rotated {
            active: promoted
                .into_iter()
                .map(|(alg, kid)| ActiveKey {
                    alg: alg.as_str().to_string(),
                    kid,
                })
                .collect(),
        })))
    }

    /// Revoke a signing key (admin)
    ///
    /// Emergency removal of a compromised key: if it signs (or is next), its algorithm
    /// rotates first; then the key leaves the JWKS and every token it signed stops verifying
    /// here (verifiers elsewhere when their JWKS cache expires).
    #[oai(path = "/admin/keys/:kid/revoke", method = "post")]
    async fn revoke(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(max_length = 128))] kid: Path<String>,
    ) -> Result<RevokedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let removed = state
            .keys
            .revoke_by(&kid.0, Some(&actor.id.to_string()))
            .await
            .map_err(|e| keys_failed(e, &trace))?;
        if !removed {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no signing key with this kid (see GET /admin/keys)",
                &trace,
            ));
        }
        crate::app::announce_keys_changed(&state).await;
        Ok(RevokedResponse::Done)
    }
}
