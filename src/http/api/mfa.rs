//! `/auth/login/mfa` and `/auth/mfa/*`: the second step of an API sign-in and a user's own
//! factors; `DELETE /users/{id}/mfa` for admins. The same MFA service as the hosted pages.

use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::{first_party_client, no_store, tokens_for_signed_in, LoginResponse};
use super::{caller_signed_in, meta_of, time, ApiError, ApiTags, BearerAuth, Trace};
use crate::accounts::mfa::MfaError;
use crate::app::AppState;

pub struct MfaApi;

/// The account API's `ErrorResponse` for an MFA failure.
pub(super) fn mfa_error(e: MfaError, trace: &Trace) -> ApiError {
    let message = e.to_string();
    let status = match &e {
        MfaError::Disabled => StatusCode::FORBIDDEN,
        MfaError::PasskeysUnavailable => StatusCode::NOT_FOUND,
        MfaError::InvalidCode | MfaError::SignInExpired => StatusCode::UNAUTHORIZED,
        MfaError::Throttled { decision, .. } => {
            let body = Json(super::ErrorResponse {
                message,
                code: "rate_limited".into(),
                trace_id: trace.0.clone(),
            });
            return ApiError::TooManyRequests(body, Some(decision.retry_after_secs.to_string()));
        }
        MfaError::NoEnrollment | MfaError::LastFactor | MfaError::NoFactor => StatusCode::CONFLICT,
        MfaError::NotFound => StatusCode::NOT_FOUND,
        MfaError::ReauthRequired(_) | MfaError::NeedsPasskey | MfaError::Locked => {
            StatusCode::FORBIDDEN
        }
        MfaError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        MfaError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::UNAUTHORIZED {
        // A wrong code is not a missing bearer token: no challenge header.
        return ApiError::Unauthorized(
            Json(super::ErrorResponse {
                message,
                code: e.code().into(),
                trace_id: trace.0.clone(),
            }),
            None,
        );
    }
    if status == StatusCode::CONFLICT {
        return ApiError::Conflict(Json(super::ErrorResponse {
            message,
            code: e.code().into(),
            trace_id: trace.0.clone(),
        }));
    }
    ApiError::new(status, e.code(), message, trace)
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct LoginMfaRequest {
    /// From the `401 mfa_required` answer of `POST /auth/login`.
    #[oai(validator(max_length = 128))]
    mfa_token: String,
    /// A code from the authenticator app (6 digits) or a recovery code.
    #[oai(validator(max_length = 64))]
    code: String,
}

#[derive(ApiResponse)]
enum LoginMfaResult {
    #[oai(status = 200)]
    Ok(Json<LoginResponse>, #[oai(header = "Cache-Control")] String),
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct FactorView {
    id: uuid::Uuid,
    /// `totp` or `passkey`.
    kind: String,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
    #[oai(nullable)]
    last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct FactorList {
    factors: Vec<FactorView>,
    /// Unused recovery codes left.
    recovery_codes_left: u64,
    /// Whether a role of this user requires a second factor.
    required: bool,
}

#[derive(ApiResponse)]
enum FactorListResult {
    #[oai(status = 200)]
    Ok(Json<FactorList>),
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct TotpStartRequest {
    /// For an account that must enroll before its first session: the `mfaToken` of
    /// `POST /auth/login`'s `mfa_enrollment_required`. Without it, the bearer token's user.
    #[oai(validator(max_length = 128))]
    mfa_token: Option<String>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct TotpStartResponse {
    /// The key, base32, for typing into the app; shown this once.
    secret: String,
    /// `otpauth://totp/...`, for a QR code.
    otpauth_uri: String,
}

#[derive(ApiResponse)]
enum TotpStartResult {
    #[oai(status = 201)]
    Created(
        Json<TotpStartResponse>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CodeRequest {
    #[oai(validator(max_length = 64))]
    code: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct RecoveryCodes {
    /// Shown once; each signs in once in place of the second factor. Empty when the account
    /// already had a factor (its codes are unchanged).
    recovery_codes: Vec<String>,
}

#[derive(ApiResponse)]
enum RecoveryCodesResult {
    #[oai(status = 200)]
    Ok(Json<RecoveryCodes>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum NoContent {
    #[oai(status = 204)]
    Done,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct ResetResult {
    /// How many factors were removed.
    removed: u64,
}

#[derive(ApiResponse)]
enum ResetResponse {
    #[oai(status = 200)]
    Ok(Json<ResetResult>),
}

/// The bearer's user, for a token of the product's own (first-party) app: a relying party's
/// access token must not manage the user's second factors.
async fn own_app_caller(
    state: &AppState,
    auth: &BearerAuth,
    trace: &Trace,
) -> Result<(crate::store::User, Option<i64>), ApiError> {
    let (user, auth_time, client_id) = caller_signed_in(state, auth, trace).await?;
    let first_party = state
        .clients
        .get(&client_id)
        .await
        .map_err(|_| ApiError::internal(trace))?
        .is_some_and(|c| c.first_party && c.id != crate::clients::CONSOLE_CLIENT_ID);
    if !first_party {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "second factors are managed with a token of the first-party app (POST /auth/login) \
             or on the hosted page /account/security",
            trace,
        ));
    }
    Ok((user, auth_time))
}

/// The bearer's user, whose sign-in must be recent enough to change factors.
pub(super) async fn recent_caller(
    state: &AppState,
    auth: &BearerAuth,
    trace: &Trace,
) -> Result<crate::store::User, ApiError> {
    let (user, auth_time) = own_app_caller(state, auth, trace).await?;
    state
        .mfa
        .ensure_recent(auth_time.unwrap_or(0))
        .map_err(|e| mfa_error(e, trace))?;
    Ok(user)
}

#[OpenApi(tag = "ApiTags::Auth")]
impl MfaApi {
    /// Finish a sign-in with a second factor
    ///
    /// Completes the sign-in that `POST /auth/login` answered with `401 mfa_required`, with a
    /// code from the authenticator app or a recovery code. For `mfa_enrollment_required`,
    /// the code is the first one of the app just added (`POST /auth/mfa/totp` with the
    /// `mfaToken`), and the answer carries the new recovery codes, shown once. Attempts are
    /// limited per account.
    #[oai(path = "/auth/login/mfa", method = "post")]
    async fn login_mfa(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<LoginMfaRequest>,
    ) -> Result<LoginMfaResult, ApiError> {
        let trace = Trace::of(req);
        let client = first_party_client(&state, &trace).await?;
        let meta = meta_of(req);
        let done = state
            .mfa
            .complete_with_code(&meta, &body.mfa_token, &body.code)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        let tokens = tokens_for_signed_in(&state, &trace, &meta, &client, done).await?;
        Ok(LoginMfaResult::Ok(Json(tokens), no_store()))
    }

    /// List my second factors
    #[oai(path = "/auth/mfa", method = "get")]
    async fn list(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<FactorListResult, ApiError> {
        let trace = Trace::of(req);
        let (user, _) = own_app_caller(&state, &auth, &trace).await?;
        let err = |e| mfa_error(e, &trace);
        let factors = state.mfa.summaries(user.id).await.map_err(err)?;
        let left = state.mfa.recovery_codes_left(user.id).await.map_err(err)?;
        Ok(FactorListResult::Ok(Json(FactorList {
            factors: factors
                .into_iter()
                .map(|f| FactorView {
                    id: f.id,
                    kind: f.kind.as_str().into(),
                    name: f.name,
                    created_at: time(f.created_at),
                    last_used_at: f.last_used_at.map(time),
                })
                .collect(),
            recovery_codes_left: left,
            required: state.mfa.required_for(&user),
        })))
    }

    /// Start adding an authenticator app
    ///
    /// Answers the key (once) and its `otpauth://` URI; `POST /auth/mfa/totp/confirm` with
    /// the app's first code turns it on. The body is `{}` with a bearer token (in the
    /// `Authorization` header), whose sign-in must be recent
    /// (`accounts.mfa.reauth_max_age_secs`); or send the `mfaToken` of a sign-in that must
    /// enroll first, and finish with `POST /auth/login/mfa`.
    #[oai(path = "/auth/mfa/totp", method = "post")]
    async fn totp_start(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<TotpStartRequest>,
    ) -> Result<TotpStartResult, ApiError> {
        let trace = Trace::of(req);
        let Json(body) = body;
        // Either credential will do, so the bearer token is read here rather than declared.
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| {
                BearerAuth(poem_openapi::auth::Bearer {
                    token: token.trim().to_string(),
                })
            });
        let user = match (body.mfa_token.as_deref(), &auth) {
            (Some(token), _) => {
                let pending = state
                    .mfa
                    .pending(token)
                    .await
                    .map_err(|e| mfa_error(e, &trace))?;
                if !pending.enroll {
                    return Err(mfa_error(MfaError::SignInExpired, &trace));
                }
                pending.user
            }
            (None, Some(auth)) => recent_caller(&state, auth, &trace).await?,
            (None, None) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "send a bearer access token, or the mfaToken of a pending sign-in",
                    &trace,
                ))
            }
        };
        let e = state
            .mfa
            .begin_totp(&user)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(TotpStartResult::Created(
            Json(TotpStartResponse {
                secret: e.secret,
                otpauth_uri: e.otpauth_uri,
            }),
            no_store(),
        ))
    }

    /// Turn on the authenticator app being added
    ///
    /// With the app's current code. The account's first factor comes with ten recovery
    /// codes, shown this once.
    #[oai(path = "/auth/mfa/totp/confirm", method = "post")]
    async fn totp_confirm(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CodeRequest>,
    ) -> Result<RecoveryCodesResult, ApiError> {
        let trace = Trace::of(req);
        let user = recent_caller(&state, &auth, &trace).await?;
        let codes = state
            .mfa
            .confirm_totp(&meta_of(req), &user, &body.code)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(RecoveryCodesResult::Ok(
            Json(RecoveryCodes {
                recovery_codes: codes.unwrap_or_default(),
            }),
            no_store(),
        ))
    }

    /// Remove one of my second factors
    ///
    /// Refused for the last factor of a user whose role requires one. Needs a recent sign-in.
    #[oai(path = "/auth/mfa/:id", method = "delete")]
    async fn remove(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<uuid::Uuid>,
    ) -> Result<NoContent, ApiError> {
        let trace = Trace::of(req);
        let user = recent_caller(&state, &auth, &trace).await?;
        state
            .mfa
            .remove_factor(&meta_of(req), &user, id.0)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(NoContent::Done)
    }

    /// Make new recovery codes
    ///
    /// The old set stops working at once. Needs a factor and a recent sign-in.
    #[oai(path = "/auth/mfa/recovery-codes", method = "post")]
    async fn regenerate(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<RecoveryCodesResult, ApiError> {
        let trace = Trace::of(req);
        let user = recent_caller(&state, &auth, &trace).await?;
        let codes = state
            .mfa
            .regenerate_recovery_codes(&meta_of(req), &user)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(RecoveryCodesResult::Ok(
            Json(RecoveryCodes {
                recovery_codes: codes,
            }),
            no_store(),
        ))
    }

    /// Reset a user's second factors (admin)
    ///
    /// Removes every factor and recovery code of the user (a lost phone). Audited with the
    /// acting admin; the user is mailed.
    #[oai(path = "/users/:id/mfa", method = "delete", tag = "ApiTags::Users")]
    async fn reset(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<uuid::Uuid>,
    ) -> Result<ResetResponse, ApiError> {
        let trace = Trace::of(req);
        let actor = super::admin_write_guard(&state, &auth, &trace).await?;
        let user = state
            .accounts
            .visible_user(&actor, id.0)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        let removed = state
            .mfa
            .reset(&meta_of(req), Some(&actor), &user)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(ResetResponse::Ok(Json(ResetResult { removed })))
    }
}
