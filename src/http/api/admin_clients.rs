//! `/admin/clients`: the operator's client use cases over JSON (admin role; changes need a
//! sign-in with a second factor when the MFA policy covers admins). Shapes requests and
//! answers only: every rule is `ClientService`'s, the same the console and the CLI use.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use secrecy::{ExposeSecret, SecretString};

use super::{admin_guard, admin_write_guard, time, ApiError, ApiTags, BearerAuth, Trace};
use crate::app::AppState;
use crate::clients::CONSOLE_CLIENT_ID;
use crate::clients::{ClientError, ClientRegistration, ClientUpdate, RegistrationError};
use crate::store::{Client, ClientQuery, ClientSort};

pub struct AdminClientsApi;

/// A registered client as operators see it: every registration field, never its secret.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ClientView {
    /// The `client_id`.
    id: String,
    /// Shown to people on the consent page.
    name: String,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    grant_types: Vec<String>,
    /// Space-separated scopes the client may request.
    scope: String,
    /// `client_secret_basic`, `private_key_jwt` or `none` (a public client).
    token_endpoint_auth_method: String,
    /// A public client (no secret, PKCE required).
    public: bool,
    /// The product's own app: no consent page, may use the first-party account API.
    first_party: bool,
    /// The ID token algorithm; `null` is the deployment default.
    #[oai(nullable)]
    id_token_alg: Option<String>,
    /// The access token algorithm; `null` is the deployment default.
    #[oai(nullable)]
    access_token_alg: Option<String>,
    always_issue_refresh_token: bool,
    #[oai(nullable)]
    backchannel_logout_uri: Option<String>,
    backchannel_logout_session_required: bool,
    /// `private_key_jwt`: the client's public JWK Set as JSON text.
    #[oai(nullable)]
    jwks: Option<String>,
    #[oai(nullable)]
    jwks_uri: Option<String>,
    /// Codes only after a second factor.
    require_mfa: bool,
    /// Switched off: every endpoint treats the client as unknown.
    disabled: bool,
    /// Authorization requests only through `/par` (RFC 9126 §6).
    require_par: bool,
    /// Registered by the client itself (RFC 7591): an unverified application.
    dynamic: bool,
    #[oai(nullable)]
    logo_uri: Option<String>,
    #[oai(nullable)]
    client_uri: Option<String>,
    /// `web` or `native`.
    application_type: String,
    /// RFC 8707: the registered APIs the client may ask tokens for.
    resources: Vec<String>,
    /// RFC 9449 §5.2: every token request must carry a DPoP proof.
    dpop_bound_access_tokens: bool,
    /// The console's own client, managed by Portcullis (read-only here).
    built_in: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        ClientView {
            id: c.id.clone(),
            name: c.name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scope: c.scope.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
            public: c.is_public(),
            first_party: c.first_party,
            id_token_alg: c.id_token_signed_response_alg.clone(),
            access_token_alg: c.access_token_signed_response_alg.clone(),
            always_issue_refresh_token: c.always_issue_refresh_token,
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: c.backchannel_logout_session_required,
            jwks: c.jwks.clone(),
            jwks_uri: c.jwks_uri.clone(),
            require_mfa: c.require_mfa,
            disabled: c.disabled,
            require_par: c.require_par,
            dynamic: c.dynamic,
            logo_uri: c.logo_uri.clone(),
            client_uri: c.client_uri.clone(),
            application_type: c.application_type.clone(),
            resources: c.resources.clone(),
            dpop_bound_access_tokens: c.dpop_bound_access_tokens,
            built_in: c.id == CONSOLE_CLIENT_ID,
            created_at: time(c.created_at),
            updated_at: time(c.updated_at),
        }
    }
}

/// A client and, when this answer gave it one, its secret: shown this once, stored only as a
/// hash.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ClientWithSecret {
    #[oai(flatten)]
    client: ClientView,
    /// Present only when a secret was issued by this request.
    #[oai(skip_serializing_if_is_none)]
    client_secret: Option<String>,
}

impl ClientWithSecret {
    fn new(client: &Client, secret: Option<&SecretString>) -> Self {
        ClientWithSecret {
            client: ClientView::from(client),
            client_secret: secret.map(|s| s.expose_secret().to_string()),
        }
    }
}

/// A new secret, shown this once.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct NewSecret {
    client_id: String,
    client_secret: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ClientPage {
    items: Vec<ClientView>,
    page: u32,
    per_page: u32,
    /// Clients matching the filter, on all pages.
    total: u64,
}

/// The fields of `portcullis client create`, with the same defaults and rules.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct NewClient {
    /// 1 to 100 characters; shown on the consent page.
    #[oai(validator(max_length = 200))]
    name: String,
    /// Exact redirect URIs: https, http on loopback, or an app scheme (`com.example.app:/cb`).
    #[oai(default, validator(max_items = 50, max_length = 2000))]
    redirect_uris: Vec<String>,
    #[oai(default, validator(max_items = 50, max_length = 2000))]
    post_logout_redirect_uris: Vec<String>,
    /// Empty means `authorization_code`.
    #[oai(default, validator(max_items = 8, max_length = 64))]
    grant_types: Vec<String>,
    /// Space-separated; by default `openid profile email` (plus `offline_access` with the
    /// `refresh_token` grant).
    #[oai(validator(max_length = 2000))]
    scope: Option<String>,
    /// A public client (SPA, mobile): no secret, PKCE required.
    #[oai(default)]
    public: bool,
    #[oai(default)]
    first_party: bool,
    /// Allow http redirect URIs on hosts other than loopback (test setups only).
    #[oai(default)]
    allow_insecure_redirect: bool,
    /// RS256, PS256, ES256 or EdDSA; the deployment default when left out.
    #[oai(validator(max_length = 16))]
    id_token_alg: Option<String>,
    #[oai(validator(max_length = 16))]
    access_token_alg: Option<String>,
    #[oai(default)]
    always_issue_refresh_token: bool,
    #[oai(validator(max_length = 2000))]
    backchannel_logout_uri: Option<String>,
    #[oai(default)]
    backchannel_logout_session_required: bool,
    /// `private_key_jwt`: the client's public JWK Set as JSON text (no secret is issued).
    #[oai(validator(max_length = 32768))]
    jwks: Option<String>,
    /// `private_key_jwt`: the URL of the client's public JWK Set (no secret is issued).
    #[oai(validator(max_length = 2000))]
    jwks_uri: Option<String>,
    #[oai(default)]
    require_mfa: bool,
    /// Authorization requests only through `/par` (RFC 9126 §6).
    #[oai(default)]
    require_par: bool,
    #[oai(validator(max_length = 2000))]
    logo_uri: Option<String>,
    #[oai(validator(max_length = 2000))]
    client_uri: Option<String>,
    /// `web` (default) or `native`.
    #[oai(validator(max_length = 16))]
    application_type: Option<String>,
    /// RFC 8707: registered resource identifiers the client may ask tokens for.
    #[oai(default, validator(max_items = 50, max_length = 512))]
    resources: Vec<String>,
    /// RFC 9449 §5.2: every token request must carry a DPoP proof.
    #[oai(default)]
    dpop_bound_access_tokens: bool,
}

impl From<NewClient> for ClientRegistration {
    fn from(n: NewClient) -> Self {
        ClientRegistration {
            name: n.name,
            redirect_uris: n.redirect_uris,
            post_logout_redirect_uris: n.post_logout_redirect_uris,
            grant_types: n.grant_types,
            scope: n.scope,
            public: n.public,
            client_secret_post: false,
            first_party: n.first_party,
            allow_insecure_redirect: n.allow_insecure_redirect,
            id_token_alg: n.id_token_alg,
            access_token_alg: n.access_token_alg,
            always_issue_refresh_token: n.always_issue_refresh_token,
            backchannel_logout_uri: n.backchannel_logout_uri,
            backchannel_logout_session_required: n.backchannel_logout_session_required,
            jwks: n.jwks,
            jwks_uri: n.jwks_uri,
            require_mfa: n.require_mfa,
            require_par: n.require_par,
            dynamic: false,
            logo_uri: n.logo_uri,
            client_uri: n.client_uri,
            application_type: n.application_type,
            resources: n.resources,
            dpop_bound_access_tokens: n.dpop_bound_access_tokens,
        }
    }
}

/// Fields left out stay as they are; `null` goes back to the default where there is one. The
/// client that results is validated as a whole, by the rules of `client create`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ClientChange {
    #[oai(validator(max_length = 200))]
    name: Option<String>,
    #[oai(validator(max_items = 50, max_length = 2000))]
    redirect_uris: Option<Vec<String>>,
    #[oai(validator(max_items = 50, max_length = 2000))]
    post_logout_redirect_uris: Option<Vec<String>>,
    #[oai(validator(max_items = 8, max_length = 64))]
    grant_types: Option<Vec<String>>,
    /// Space-separated scopes the client may request.
    #[oai(validator(max_length = 2000))]
    scope: Option<String>,
    /// Switching to confidential issues a secret (in this answer, once); switching to public
    /// drops it.
    public: Option<bool>,
    first_party: Option<bool>,
    /// Left out: allowed if the client already has such a URI.
    allow_insecure_redirect: Option<bool>,
    /// `null`: the deployment default.
    #[oai(validator(max_length = 16))]
    id_token_alg: MaybeUndefined<String>,
    /// `null`: the deployment default.
    #[oai(validator(max_length = 16))]
    access_token_alg: MaybeUndefined<String>,
    always_issue_refresh_token: Option<bool>,
    /// `null`: no back-channel logout.
    #[oai(validator(max_length = 2000))]
    backchannel_logout_uri: MaybeUndefined<String>,
    backchannel_logout_session_required: Option<bool>,
    /// `null` removes the inline keys.
    #[oai(validator(max_length = 32768))]
    jwks: MaybeUndefined<String>,
    /// `null` removes the key URL.
    #[oai(validator(max_length = 2000))]
    jwks_uri: MaybeUndefined<String>,
    require_mfa: Option<bool>,
    /// `true` switches the client off (every endpoint treats it as unknown), `false` on.
    disabled: Option<bool>,
    require_par: Option<bool>,
    /// `null` removes it.
    #[oai(validator(max_length = 2000))]
    logo_uri: MaybeUndefined<String>,
    /// `null` removes it.
    #[oai(validator(max_length = 2000))]
    client_uri: MaybeUndefined<String>,
    /// `web` or `native`.
    #[oai(validator(max_length = 16))]
    application_type: Option<String>,
    /// RFC 8707: replaces the client's resources.
    #[oai(validator(max_items = 50, max_length = 512))]
    resources: Option<Vec<String>>,
    dpop_bound_access_tokens: Option<bool>,
}

fn nullable(v: MaybeUndefined<String>) -> Option<Option<String>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

impl From<ClientChange> for ClientUpdate {
    fn from(c: ClientChange) -> Self {
        ClientUpdate {
            name: c.name,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            grant_types: c.grant_types,
            scope: c.scope,
            public: c.public,
            client_secret_post: None,
            first_party: c.first_party,
            allow_insecure_redirect: c.allow_insecure_redirect,
            id_token_alg: nullable(c.id_token_alg),
            access_token_alg: nullable(c.access_token_alg),
            always_issue_refresh_token: c.always_issue_refresh_token,
            backchannel_logout_uri: nullable(c.backchannel_logout_uri),
            backchannel_logout_session_required: c.backchannel_logout_session_required,
            jwks: nullable(c.jwks),
            jwks_uri: nullable(c.jwks_uri),
            require_mfa: c.require_mfa,
            disabled: c.disabled,
            require_par: c.require_par,
            logo_uri: nullable(c.logo_uri),
            client_uri: nullable(c.client_uri),
            application_type: c.application_type,
            resources: c.resources,
            dpop_bound_access_tokens: c.dpop_bound_access_tokens,
        }
    }
}

/// The order of a client list.
#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum ClientOrderBy {
    Created,
    Name,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<ClientPage>),
}

#[derive(ApiResponse)]
enum ClientResponse {
    #[oai(status = 200)]
    Ok(Json<ClientView>),
}

#[derive(ApiResponse)]
enum CreatedResponse {
    /// Registered; a confidential client's `clientSecret` is shown this once.
    #[oai(status = 201)]
    Created(
        Json<ClientWithSecret>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
enum UpdatedResponse {
    /// Updated; `clientSecret` only when the change made the client confidential.
    #[oai(status = 200)]
    Ok(
        Json<ClientWithSecret>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
enum SecretResponse {
    /// The new secret, shown this once; the old one stopped working.
    #[oai(status = 200)]
    Ok(Json<NewSecret>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted, with its codes, tokens and consents.
    #[oai(status = 204)]
    Done,
}

/// The API's `ErrorResponse` for a client use case's failure.
fn client_error(e: ClientError, trace: &Trace) -> ApiError {
    let message = e.to_string();
    let (status, code) = match &e {
        ClientError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        // RFC 7591 §3.2.2 names these two codes; the message says which field and why.
        ClientError::Invalid(
            RegistrationError::RedirectUri(_) | RegistrationError::NoRedirectUri,
        ) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_redirect_uri"),
        ClientError::Invalid(RegistrationError::Store(_)) | ClientError::Store(_) => {
            tracing::error!(error = %e, "storage failure in a client use case");
            return ApiError::internal(trace);
        }
        ClientError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_metadata"),
        ClientError::NoSecret(_) => (StatusCode::CONFLICT, "no_secret"),
        ClientError::BuiltIn => (StatusCode::CONFLICT, "built_in_client"),
    };
    ApiError::new(status, code, message, trace)
}

fn no_store() -> String {
    "no-store".into()
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminClientsApi {
    /// List clients (admin)
    ///
    /// Search by the start of the name (any case) or an exact client id; filter by state and
    /// kind; sort by creation time or name.
    #[oai(path = "/admin/clients", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The start of the client's name (any case), or its exact client id.
        #[oai(validator(max_length = 100))]
        q: Query<Option<String>>,
        /// Only switched-off (`true`) or only active (`false`) clients.
        disabled: Query<Option<bool>>,
        /// Only first-party (`true`) or only other (`false`) clients.
        #[oai(name = "firstParty")]
        first_party: Query<Option<bool>>,
        /// `created` (default) or `name`.
        sort: Query<Option<ClientOrderBy>>,
        /// `asc` (default) or `desc`.
        order: Query<Option<Order>>,
        /// Page number, from 1.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        /// Clients per page (1 to 100).
        #[oai(
            name = "perPage",
            default = "default_per_page",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        per_page: Query<u32>,
    ) -> Result<ListResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let query = ClientQuery {
            search: q.0.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            disabled: disabled.0,
            first_party: first_party.0,
            sort: match sort.0 {
                Some(ClientOrderBy::Name) => ClientSort::Name,
                _ => ClientSort::Created,
            },
            descending: order.0 == Some(Order::Desc),
            offset: u64::from(page.0 - 1) * u64::from(per_page.0),
            limit: per_page.0,
        };
        let (clients, total) = state
            .client_admin
            .search(&query)
            .await
            .map_err(|e| client_error(e, &trace))?;
        Ok(ListResponse::Ok(Json(ClientPage {
            items: clients.iter().map(ClientView::from).collect(),
            page: page.0,
            per_page: per_page.0,
            total,
        })))
    }

    /// Register a client (admin)
    ///
    /// The fields, defaults and validation of `portcullis client create`; refused input
    /// answers 422 with the same message. A confidential client's secret is in this answer
    /// only.
    #[oai(path = "/admin/clients", method = "post")]
    async fn create(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<NewClient>,
    ) -> Result<CreatedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let registration = ClientRegistration::from(body.0);
        let registered = state
            .client_admin
            .create(&registration, &actor.id.to_string())
            .await
            .map_err(|e| client_error(e, &trace))?;
        Ok(CreatedResponse::Created(
            Json(ClientWithSecret::new(
                &registered.client,
                registered.secret.as_ref(),
            )),
            no_store(),
        ))
    }

    /// One client (admin)
    #[oai(path = "/admin/clients/:id", method = "get")]
    async fn get(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> Result<ClientResponse, ApiError> {
        let trace = Trace::of(req);
        admin_guard(&state, &auth, &trace).await?;
        let client = state
            .client_admin
            .get(&id.0)
            .await
            .map_err(|e| client_error(e, &trace))?;
        Ok(ClientResponse::Ok(Json(ClientView::from(&client))))
    }

    /// Change a client (admin)
    ///
    /// Any registration field, and `disabled`. Every instance stops using its cached copy at
    /// once. The console's built-in client cannot be changed (409 `built_in_client`).
    #[oai(path = "/admin/clients/:id", method = "patch")]
    async fn update(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(max_length = 100))] id: Path<String>,
        body: Json<ClientChange>,
    ) -> Result<UpdatedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let update = ClientUpdate::from(body.0);
        let updated = state
            .client_admin
            .update(&id.0, &update, &actor.id.to_string())
            .await
            .map_err(|e| client_error(e, &trace))?;
        Ok(UpdatedResponse::Ok(
            Json(ClientWithSecret::new(
                &updated.client,
                updated.secret.as_ref(),
            )),
            no_store(),
        ))
    }

    /// Delete a client (admin)
    ///
    /// With its codes, tokens and consents; every instance refuses it at once.
    #[oai(path = "/admin/clients/:id", method = "delete")]
    async fn delete(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> Result<DeletedResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        state
            .client_admin
            .delete(&id.0, &actor.id.to_string())
            .await
            .map_err(|e| client_error(e, &trace))?;
        Ok(DeletedResponse::Done)
    }

    /// Rotate a client's secret (admin)
    ///
    /// A new secret for a confidential client, shown this once; the old one stops working at
    /// once. A client without a secret (public, or `private_key_jwt`) answers 409 `no_secret`.
    #[oai(path = "/admin/clients/:id/secret", method = "post")]
    async fn rotate_secret(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> Result<SecretResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = admin_write_guard(&state, &auth, &trace).await?;
        let secret = state
            .client_admin
            .rotate_secret(&id.0, &actor.id.to_string())
            .await
            .map_err(|e| client_error(e, &trace))?;
        Ok(SecretResponse::Ok(
            Json(NewSecret {
                client_id: id.0,
                client_secret: secret.expose_secret().to_string(),
            }),
            no_store(),
        ))
    }
}

fn default_page() -> u32 {
    1
}

fn default_per_page() -> u32 {
    20
}
