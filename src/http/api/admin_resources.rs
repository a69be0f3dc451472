//! `/admin/resources`: the registered APIs (RFC 8707 resources) — the same `ResourceService`
//! as `portcullis resource`.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{admin_guard, admin_write_guard, time, ApiError, ApiTags, BearerAuth, Trace};
use crate::app::AppState;
use crate::resources::{NewResource, ResourceError};
use crate::store::ApiResource;

pub struct AdminResourcesApi;

/// An API access tokens can be issued for.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ResourceView {
    /// The resource identifier (RFC 8707 §2): the `aud` of its access tokens.
    identifier: String,
    /// The scopes that belong to it: a token for it carries only these.
    scopes: Vec<String>,
    /// Its access-token lifetime; `null`: the deployment default.
    #[oai(nullable)]
    access_token_lifetime_secs: Option<i64>,
    created_at: DateTime<Utc>,
}

impl From<&ApiResource> for ResourceView {
    fn from(r: &ApiResource) -> Self {
        ResourceView {
            identifier: r.identifier.clone(),
            scopes: r.scopes.clone(),
            access_token_lifetime_secs: r.access_token_ttl_secs,
            created_at: time(r.created_at),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct NewResourceBody {
    /// An absolute URI without fragment, e.g. `https://api.example.com`.
    #[oai(validator(max_length = 512))]
    identifier: String,
    #[oai(validator(max_items = 100, max_length = 200))]
    scopes: Vec<String>,
    /// 10 to 86400 seconds.
    access_token_lifetime_secs: Option<u64>,
}

#[derive(Debug, Object)]
struct ResourceList {
    items: Vec<ResourceView>,
}

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<ResourceList>),
}

#[derive(ApiResponse)]
enum CreatedResponse {
    #[oai(status = 201)]
    Created(Json<ResourceView>),
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted: token requests naming it are refused with `invalid_target`.
    #[oai(status = 204)]
    Done,
}

fn resource_error(e: ResourceError, trace: &Trace) -> ApiError {
    let (status, code) = match &e {
        ResourceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ResourceError::Exists(_) => (StatusCode::CONFLICT, "resource_exists"),
        ResourceError::Store(_) => {
            tracing::error!(error = %e, "storage failure in a resource use case");
            return ApiError::internal(trace);
        }
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_resource"),
    };
    ApiError::new(status, code, e.to_string(), trace)
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminResourcesApi {
    /// Registered APIs (admin)
    #[oai(path = "/admin/resources", method = "get")]
    async fn list(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<ListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let all = state
            .resources
            .list()
            .await
            .map_err(|e| resource_error(e, &trace))?;
        Ok(ListResponse::Ok(Json(ResourceList {
            items: all.iter().map(ResourceView::from).collect(),
        })))
    }

    /// Register an API (admin)
    ///
    /// As `portcullis resource create`; allow clients to ask for it with their `resources`.
    #[oai(path = "/admin/resources", method = "post")]
    async fn create(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<NewResourceBody>,
    ) -> Result<CreatedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let new = NewResource {
            identifier: body.0.identifier,
            scopes: body.0.scopes,
            access_token_ttl_secs: body.0.access_token_lifetime_secs,
        };
        let created = state
            .resources
            .create(&new, &actor.id.to_string())
            .await
            .map_err(|e| resource_error(e, &trace))?;
        Ok(CreatedResponse::Created(Json(ResourceView::from(&created))))
    }

    /// Delete an API (admin)
    #[oai(path = "/admin/resources", method = "delete")]
    async fn delete(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The resource identifier.
        #[oai(validator(max_length = 512))]
        identifier: Query<String>,
    ) -> Result<DeletedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        state
            .resources
            .delete(&identifier.0, &actor.id.to_string())
            .await
            .map_err(|e| resource_error(e, &trace))?;
        Ok(DeletedResponse::Done)
    }
}
