//! The first-party JSON account API (poem-openapi): `/auth/*`, `/users`, and the admin API
//! under `/admin/` (clients, sessions, consents, signing keys, the audit trail).
//! The OpenAPI 3 document is served at `/openapi.json` and Swagger UI at `/docs`. Every error,
//! including malformed input the framework rejects, answers `ErrorResponse`.

mod admin;
mod admin_clients;
mod admin_keys;
mod admin_resources;
mod admin_sessions;
mod admin_webhooks;
mod auth;
mod magic_link;
mod mfa;
mod passkeys;
mod users;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApiService, SecurityScheme, Tags};
use uuid::Uuid;

use crate::accounts::service::{AccountError, RequestMeta};
use crate::app::AppState;
use crate::http::middleware::request_id::{RequestId, TraceId};
use crate::store::{Timestamp, User};

#[derive(Tags)]
enum ApiTags {
    /// Sign-in, tokens and self-service for the product's own apps (first-party only).
    Auth,
    /// User administration (admin role), and each user's own profile.
    Users,
    /// Operators' API (admin role): clients, sessions, consents, signing keys and the audit
    /// trail. Changes need a sign-in with a second factor when the MFA policy covers admins.
    Admin,
}

/// Every error of this API.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// What went wrong and how to fix it, for people.
    pub message: String,
    /// A stable, machine-readable reason, e.g. `weak_password` or `invalid_credentials`.
    pub code: String,
    /// The request's trace id, to find the request in the server's logs and traces.
    pub trace_id: String,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a missing or mistyped field, a bad parameter.
    #[oai(status = 400)]
    BadRequest(Json<ErrorResponse>),
    /// No valid credentials (access token, password or refresh token).
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorResponse>,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// Authenticated, but not allowed (e.g. the admin role is needed).
    #[oai(status = 403)]
    Forbidden(Json<ErrorResponse>),
    /// No such resource (or this server has it turned off).
    #[oai(status = 404)]
    NotFound(Json<ErrorResponse>),
    /// The request conflicts with the current state (e.g. removing the last required factor).
    #[oai(status = 409)]
    Conflict(Json<ErrorResponse>),
    /// The request body is larger than the server takes (`http.max_body_bytes`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorResponse>),
    /// The input is well-formed but breaks a rule (weak password, bad email, unknown role).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorResponse>),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorResponse>,
        #[oai(header = "Retry-After")] Option<String>,
    ),
    /// The server failed; the trace id finds the details in its logs.
    #[oai(status = 500)]
    Internal(Json<ErrorResponse>),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>, trace: &Trace) -> Self {
        let body = Json(ErrorResponse {
            message: message.into(),
            code: code.to_string(),
            trace_id: trace.0.clone(),
        });
        match status.as_u16() {
            401 => ApiError::Unauthorized(body, Some("Bearer realm=\"portcullis\"".into())),
            403 => ApiError::Forbidden(body),
            404 => ApiError::NotFound(body),
            409 => ApiError::Conflict(body),
            413 => ApiError::PayloadTooLarge(body),
            422 => ApiError::Unprocessable(body),
            429 => ApiError::TooManyRequests(body, None),
            500..=599 => ApiError::Internal(body),
            _ => ApiError::BadRequest(body),
        }
    }

    /// A 500 that says nothing of the cause (the log has it, under the trace id).
    pub fn internal(trace: &Trace) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong; try again in a moment",
            trace,
        )
    }

    pub fn from_account(e: AccountError, trace: &Trace) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            AccountError::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, *code),
            AccountError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            AccountError::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            AccountError::InvalidToken => (StatusCode::BAD_REQUEST, "invalid_token"),
            AccountError::Throttled { decision, .. } => {
                let body = Json(ErrorResponse {
                    message,
                    code: "rate_limited".into(),
                    trace_id: trace.0.clone(),
                });
                return ApiError::TooManyRequests(
                    body,
                    Some(decision.retry_after_secs.to_string()),
                );
            }
            AccountError::RegistrationClosed => (StatusCode::FORBIDDEN, "registration_closed"),
            AccountError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            AccountError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AccountError::ReauthRequired(_) => (StatusCode::FORBIDDEN, "reauthentication_required"),
            AccountError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        if status == StatusCode::UNAUTHORIZED {
            // A wrong password is not a missing bearer token: no challenge.
            return ApiError::Unauthorized(
                Json(ErrorResponse {
                    message,
                    code: code.into(),
                    trace_id: trace.0.clone(),
                }),
                None,
            );
        }
        ApiError::new(status, code, message, trace)
    }
}

/// The request's trace id, for `traceId`.
#[derive(Debug, Clone)]
pub struct Trace(pub String);

/// Whether `path` belongs to this API (its errors are `ErrorResponse`, whoever answers).
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/auth/")
        || path == "/users"
        || path.starts_with("/users/")
        || path.starts_with("/admin/")
}

/// An `ErrorResponse` with any status, for answers given before the API runs (request limits,
/// timeouts).
pub fn error_response(status: StatusCode, code: &str, message: &str, trace: &Trace) -> Response {
    let body = serde_json::json!({
        "message": message,
        "code": code,
        "traceId": trace.0,
    });
    crate::http::json_response(status, &body, "no-store")
}

impl Trace {
    /// The request's trace id (the OpenTelemetry one when traces are exported), else its
    /// request id.
    pub fn of(req: &Request) -> Trace {
        Trace(trace_id_of(req).unwrap_or_default())
    }
}

fn trace_id_of(req: &Request) -> Option<String> {
    req.extensions()
        .get::<TraceId>()
        .map(|t| t.0.clone())
        .or_else(|| req.extensions().get::<RequestId>().map(|r| r.0.clone()))
}

/// The caller's IP, user agent and request id, for the account service.
pub fn meta_of(req: &Request) -> RequestMeta {
    RequestMeta {
        ip: crate::http::middleware::rate_limit::client_ip(req),
        user_agent: req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        trace_id: trace_id_of(req),
    }
}

/// An access token issued by this server (RFC 6750 bearer).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
pub struct BearerAuth(Bearer);

/// The user a bearer token speaks for, if the token is valid and the user still active.
pub async fn caller(state: &AppState, auth: &BearerAuth, trace: &Trace) -> Result<User, ApiError> {
    Ok(caller_signed_in(state, auth, trace).await?.0)
}

/// [`caller`], with the `auth_time` of the sign-in the token comes from and the client it
/// was issued to.
pub async fn caller_signed_in(
    state: &AppState,
    auth: &BearerAuth,
    trace: &Trace,
) -> Result<(User, Option<i64>, String), ApiError> {
    let (user, claims) = caller_claims(state, auth, trace).await?;
    Ok((user, claims.auth_time, claims.client_id))
}

/// The bearer's user and the token's claims (for its `acr`, `auth_time` and client).
pub async fn caller_claims(
    state: &AppState,
    auth: &BearerAuth,
    trace: &Trace,
) -> Result<(User, crate::protocol::tokens::AccessClaims), ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", m, trace);
    let claims = crate::http::oidc::check_bearer(state, &auth.0.token)
        .await
        .map_err(|e| {
            if e.code.http_status() >= 500 {
                ApiError::internal(trace)
            } else {
                unauthorized(&e.description)
            }
        })?;
    let Ok(id) = Uuid::parse_str(&claims.sub) else {
        return Err(unauthorized(
            "the access token was issued to a client, not a user",
        ));
    };
    let user = state
        .store
        .get_user(id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storage failure while authenticating a bearer token");
            ApiError::internal(trace)
        })?
        .filter(|u| !u.disabled && u.deleted_at.is_none())
        .ok_or_else(|| unauthorized("the access token's user no longer exists or is disabled"))?;
    Ok((user, claims))
}

/// The guard of every admin route that changes something: [`admin_guard`], and when the MFA
/// policy covers the admin (`accounts.mfa.required_for_roles`, by default `["admin"]`), a
/// token whose sign-in used a second factor (`acr` `mfa` or `phr`). Otherwise a 401 with the
/// step-up challenge of RFC 9470 §3 (`insufficient_user_authentication`, `acr_values`).
pub async fn admin_write_guard(
    state: &AppState,
    auth: &BearerAuth,
    trace: &Trace,
) -> Result<User, ApiError> {
    let (user, claims) = caller_claims(state, auth, trace).await?;
    ensure_admin_write(state, &user, &claims, trace).await?;
    Ok(user)
}

/// [`admin_write_guard`]'s rule for a caller already authenticated (a route where only some
/// changes are an admin's, such as `PATCH /users/{id}`).
pub async fn ensure_admin_write(
    state: &AppState,
    user: &User,
    claims: &crate::protocol::tokens::AccessClaims,
    trace: &Trace,
) -> Result<(), ApiError> {
    ensure_admin(state, user, claims, trace).await?;
    if !state.mfa.allows_admin_write(user, claims.acr.as_deref()) {
        let message = "changes need a sign-in with a second factor: sign in again with your \
                       authenticator app or passkey (acr_values=mfa), then retry with the new \
                       access token";
        return Err(ApiError::Unauthorized(
            Json(ErrorResponse {
                message: message.into(),
                code: "insufficient_user_authentication".into(),
                trace_id: trace.0.clone(),
            }),
            Some(
                "Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", \
                 error_description=\"a second factor is required\", acr_values=\"mfa\""
                    .into(),
            ),
        ));
    }
    Ok(())
}

/// The one guard of every admin-only route: a valid bearer token of a live user who holds
/// the admin role now (read from the store, so a demotion takes effect at once).
pub async fn admin_guard(
    state: &AppState,
    auth: &BearerAuth,
    trace: &Trace,
) -> Result<User, ApiError> {
    let (user, claims) = caller_claims(state, auth, trace).await?;
    ensure_admin(state, &user, &claims, trace).await?;
    Ok(user)
}

/// An admin speaking through a token of a first-party app (the product's own, or the
/// console): a relying party an admin signed in to must not hold admin powers.
async fn ensure_admin(
    state: &AppState,
    user: &User,
    claims: &crate::protocol::tokens::AccessClaims,
    trace: &Trace,
) -> Result<(), ApiError> {
    if !crate::accounts::service::is_admin(user) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs the admin role",
            trace,
        ));
    }
    ensure_first_party(state, claims, trace).await
}

/// The token was issued to a first-party app: a relying party's access token may read the
/// user's claims at userinfo, but not manage accounts through this API.
async fn ensure_first_party(
    state: &AppState,
    claims: &crate::protocol::tokens::AccessClaims,
    trace: &Trace,
) -> Result<(), ApiError> {
    let forbidden = |m: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", m, trace);
    let first_party = state
        .clients
        .get(&claims.client_id)
        .await
        .map_err(|_| ApiError::internal(trace))?
        .is_some_and(|c| c.first_party);
    if !first_party {
        return Err(forbidden(
            "administration needs a token of a first-party app (POST /auth/login, or the \
             console); a relying party's access token is not accepted",
        ));
    }
    Ok(())
}

/// A user as the API shows it to the user themself and to admins.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    #[oai(nullable)]
    pub name: Option<String>,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn time(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            email_verified: u.email_verified,
            roles: u.roles.clone(),
            disabled: u.disabled,
            created_at: time(u.created_at),
            updated_at: time(u.updated_at),
        }
    }
}

/// Turns everything the framework rejects (bad JSON, missing fields, a missing bearer token,
/// unknown paths) into `ErrorResponse`; our own errors pass through untouched.
async fn json_errors<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let trace = Trace::of(&req);
    match next.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) if err.is_from_response() => Ok(err.into_response()),
        Err(err) => {
            let status = err.status();
            let (status, code, message) = match status.as_u16() {
                401 => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "send an access token: Authorization: Bearer <token>".to_string(),
                ),
                404 => (
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such API path".to_string(),
                ),
                405 => (
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "this API path does not take that method".to_string(),
                ),
                413 => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body is too large".to_string(),
                ),
                s if s >= 500 => {
                    tracing::error!(error = %err, "account API failure");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "something went wrong; try again in a moment".to_string(),
                    )
                }
                _ => (StatusCode::BAD_REQUEST, "invalid_request", err.to_string()),
            };
            let mut resp = ApiError::new(status, code, message, &trace).into_response();
            resp.headers_mut().insert(
                "cache-control",
                poem::http::HeaderValue::from_static("no-store"),
            );
            Ok(resp)
        }
    }
}

/// Every group of operations of the API.
type Apis = (
    auth::AuthApi,
    magic_link::MagicLinkApi,
    mfa::MfaApi,
    passkeys::PasskeyApi,
    users::UsersApi,
    admin::AdminApi,
    admin_clients::AdminClientsApi,
    admin_sessions::AdminSessionsApi,
    admin_keys::AdminKeysApi,
    admin_webhooks::AdminWebhooksApi,
    admin_resources::AdminResourcesApi,
);

/// The API service (for its spec and Swagger UI) and its endpoint with error shaping.
pub fn service(issuer: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            auth::AuthApi,
            magic_link::MagicLinkApi,
            mfa::MfaApi,
            passkeys::PasskeyApi,
            users::UsersApi,
            admin::AdminApi,
            admin_clients::AdminClientsApi,
            admin_sessions::AdminSessionsApi,
            admin_keys::AdminKeysApi,
            admin_webhooks::AdminWebhooksApi,
            admin_resources::AdminResourcesApi,
        ),
        "Portcullis account API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "First-party account API: registration, password sign-in, refresh, password reset, \
         email verification, second factors (authenticator apps, passkeys, recovery codes), user \
         administration, and the operators' API under `/admin/` (clients, sessions, consents, \
         signing keys, the audit trail, webhooks and events; admin role, and changes need a sign-in with a second \
         factor when the MFA policy covers admins). `/auth/login` and \
         `/auth/refresh` issue tokens to the one client registered with `--first-party`; \
         third-party applications must use the OpenID Connect authorization code flow.",
    )
    .server(issuer.to_string())
}

pub fn endpoint(
    api: OpenApiService<Apis, ()>,
) -> Arc<poem::endpoint::BoxEndpoint<'static, Response>> {
    use poem::IntoEndpoint;
    Arc::new(
        api.into_endpoint()
            .around(json_errors)
            .map_to_response()
            .boxed(),
    )
}
