//! `/users`: administration (admin role) and each user's own profile.

use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::{
    admin_guard, admin_write_guard, caller_claims, ensure_admin_write, meta_of, ApiError, ApiTags,
    BearerAuth, Trace, UserView,
};
use crate::accounts::UserPatch;
use crate::app::AppState;
use crate::store::UserQuery;

pub struct UsersApi;

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct UserPage {
    items: Vec<UserView>,
    page: u32,
    per_page: u32,
    /// Users matching the filter, on all pages.
    total: u64,
}

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<UserPage>),
}

#[derive(ApiResponse)]
enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserView>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted: signed out everywhere, hidden from the API; the address stays reserved.
    #[oai(status = 204)]
    Done,
}

/// Fields left out stay as they are. Users may change their own `name`; the other fields,
/// and anyone else's name, need the admin role (and a sign-in with a second factor when the
/// MFA policy covers admins).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct UserUpdate {
    /// `null` clears the name.
    #[oai(validator(max_length = 200))]
    name: MaybeUndefined<String>,
    #[oai(validator(max_items = 32))]
    roles: Option<Vec<String>>,
    /// Disabling signs the user out everywhere.
    disabled: Option<bool>,
    email_verified: Option<bool>,
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// List users (admin)
    ///
    /// Live users, oldest first; filter by part of the email address and by role.
    #[oai(path = "/users", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Page number, from 1.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        /// Users per page (1 to 100).
        #[oai(
            name = "perPage",
            default = "default_per_page",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        per_page: Query<u32>,
        /// Part of the email address, any case.
        #[oai(validator(max_length = 254))]
        email: Query<Option<String>>,
        #[oai(validator(max_length = 32))] role: Query<Option<String>>,
    ) -> Result<ListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let query = UserQuery {
            email_contains: email.0.filter(|e| !e.is_empty()),
            role: role.0.filter(|r| !r.is_empty()),
            offset: u64::from(page.0 - 1) * u64::from(per_page.0),
            limit: per_page.0,
            ..UserQuery::default()
        };
        let (users, total) = state.store.search_users(&query).await.map_err(|e| {
            tracing::error!(error = %e, "storage failure listing users");
            ApiError::internal(&trace)
        })?;
        Ok(ListResponse::Ok(Json(UserPage {
            items: users.iter().map(UserView::from).collect(),
            page: page.0,
            per_page: per_page.0,
            total,
        })))
    }

    /// One user (admin, or the user themself)
    #[oai(path = "/users/:id", method = "get")]
    async fn get(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<UserResponse, ApiError> {
        let trace = Trace::of(req);
        let (actor, claims) = caller_claims(&state, &auth, &trace).await?;
        if id.0 != actor.id {
            super::ensure_admin(&state, &actor, &claims, &trace).await?;
        }
        let user = state
            .accounts
            .visible_user(&actor, id.0)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(UserResponse::Ok(Json(UserView::from(&user))))
    }

    /// Update a user (admin; users may change their own name)
    ///
    /// `roles` replaces the user's roles (each one of `accounts.roles`); `disabled: true`
    /// signs the user out everywhere and refuses their sign-ins until switched back.
    #[oai(path = "/users/:id", method = "patch")]
    async fn update(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<UserUpdate>,
    ) -> Result<UserResponse, ApiError> {
        let trace = Trace::of(req);
        let (actor, claims) = caller_claims(&state, &auth, &trace).await?;
        let Json(body) = body;
        let admin_change = id.0 != actor.id
            || body.roles.is_some()
            || body.disabled.is_some()
            || body.email_verified.is_some();
        if admin_change {
            ensure_admin_write(&state, &actor, &claims, &trace).await?;
        } else {
            super::ensure_first_party(&state, &claims, &trace).await?;
        }
        let patch = UserPatch {
            name: match body.name {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(Some(v)),
            },
            roles: body.roles,
            disabled: body.disabled,
            email_verified: body.email_verified,
        };
        let user = state
            .accounts
            .update_user(&meta_of(req), &actor, id.0, patch)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(UserResponse::Ok(Json(UserView::from(&user))))
    }

    /// Delete a user (admin)
    ///
    /// A soft delete: the record stays (so the address cannot be registered by someone
    /// else), every session and token of the user is revoked, and the user disappears from
    /// this API.
    #[oai(path = "/users/:id", method = "delete")]
    async fn delete(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        state
            .accounts
            .delete_user(&meta_of(req), &actor, id.0)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(Deleted::Done)
    }
}

fn default_page() -> u32 {
    1
}

fn default_per_page() -> u32 {
    20
}
