//! `/auth/*`: registration, password sign-in and token refresh for the first-party client,
//! sign-out, the current user, password reset and change, email verification.

use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{caller, meta_of, time, ApiError, ApiTags, BearerAuth, Trace, UserView};
use crate::accounts::Registration;
use crate::app::AppState;
use crate::protocol::error::ErrorCode;
use crate::protocol::params::Params;
use crate::protocol::scope::Scope;
use crate::protocol::token::refresh_token::{self, FirstToken};
use crate::protocol::token::{new_jti, TokenContext};
use crate::protocol::tokens::Grant;
use crate::random;
use crate::store::Client;

pub struct AuthApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct RegisterRequest {
    #[oai(validator(max_length = 254))]
    email: String,
    /// 8 to 128 characters (configurable); not a common password, not the email address.
    #[oai(validator(max_length = 1024))]
    password: String,
    #[oai(validator(max_length = 200))]
    name: Option<String>,
}

/// What registration shows: never whether the address was already taken.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct UserPublic {
    id: uuid::Uuid,
    email: String,
    #[oai(nullable)]
    name: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(ApiResponse)]
enum RegisterResponse {
    /// Created; a verification link was mailed (when the address was already registered,
    /// the owner was mailed instead and this answer looks the same).
    #[oai(status = 201)]
    Created(Json<UserPublic>),
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct LoginRequest {
    #[oai(validator(max_length = 254))]
    email: String,
    #[oai(validator(max_length = 1024))]
    password: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub(super) struct LoginResponse {
    /// A JWT access token (RFC 9068) for the first-party client.
    pub access_token: String,
    /// Single use: every refresh rotates it; reusing a spent one revokes the whole family.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: String,
    /// Recovery codes, shown once: only when this sign-in enrolled the account's first factor.
    #[oai(skip_serializing_if_is_none)]
    pub recovery_codes: Option<Vec<String>>,
}

/// The password was right, and a second factor is needed (or must be enrolled first).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub(super) struct MfaRequiredResponse {
    pub message: String,
    /// `mfa_required`, or `mfa_enrollment_required` when the account has no factor yet
    /// (start one with `POST /auth/mfa/totp` and this `mfaToken`).
    pub code: String,
    pub trace_id: String,
    /// Names the half-finished sign-in for `POST /auth/login/mfa`; short-lived, single use.
    pub mfa_token: String,
    /// What completes it: `totp`, `passkey`, `recovery_code`.
    pub methods: Vec<String>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct RefreshRequest {
    #[oai(validator(max_length = 512))]
    refresh_token: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct RefreshResponse {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
    token_type: String,
}

#[derive(ApiResponse)]
pub(super) enum LoginResult {
    #[oai(status = 200)]
    Ok(Json<LoginResponse>, #[oai(header = "Cache-Control")] String),
    /// The password was right; a second factor is needed.
    #[oai(status = 401)]
    MfaRequired(
        Json<MfaRequiredResponse>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
enum RefreshResult {
    #[oai(status = 200)]
    Ok(
        Json<RefreshResponse>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum Accepted {
    /// Accepted; if the address has an account, a mail is on its way. The answer is the
    /// same either way.
    #[oai(status = 202)]
    Accepted,
}

#[derive(ApiResponse)]
enum MeResponse {
    #[oai(status = 200)]
    Ok(Json<UserView>),
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct EmailRequest {
    #[oai(validator(max_length = 254))]
    email: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ResetConfirmRequest {
    /// The token from the reset link.
    #[oai(validator(max_length = 256))]
    token: String,
    #[oai(validator(max_length = 1024))]
    password: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct TokenRequest {
    /// The token from the verification link.
    #[oai(validator(max_length = 256))]
    token: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ChangePasswordRequest {
    #[oai(validator(max_length = 1024))]
    current_password: String,
    #[oai(validator(max_length = 1024))]
    new_password: String,
}

/// The one client marked first-party, or a 404 that says how to register one.
pub(super) async fn first_party_client(
    state: &AppState,
    trace: &Trace,
) -> Result<Client, ApiError> {
    let client = state.clients.first_party().await.map_err(|e| {
        tracing::error!(error = %e, "storage failure while finding the first-party client");
        ApiError::internal(trace)
    })?;
    client.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "first_party_client_missing",
            "no first-party client is registered, so this server issues no tokens here; \
             register the product's own app with `portcullis client create --name app \
             --first-party --grant refresh_token ...` (third-party apps must use the OpenID \
             Connect authorization code flow instead)",
            trace,
        )
    })
}

pub(super) fn token_context<'a>(
    state: &'a AppState,
    ring: &'a crate::keys::KeyRing,
) -> TokenContext<'a> {
    TokenContext {
        store: &*state.store,
        ring,
        master: state.keys.master(),
        deny: &state.deny,
        clients: &state.clients,
        metrics: &state.metrics,
        settings: &state.settings,
        now: state.clock.now(),
        dpop_jkt: None,
    }
}

pub(super) fn no_store() -> String {
    "no-store".into()
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account
    ///
    /// Mails a verification link. Answers 201 whether or not the address was taken (the
    /// owner of a taken address gets a mail instead), so this cannot reveal who has an account.
    #[oai(path = "/auth/register", method = "post")]
    async fn register(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        let trace = Trace::of(req);
        let Json(body) = body;
        let user = state
            .accounts
            .register(
                &meta_of(req),
                Registration {
                    email: &body.email,
                    password: body.password,
                    name: body.name.as_deref(),
                },
            )
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(RegisterResponse::Created(Json(UserPublic {
            id: user.id,
            email: user.email,
            name: user.name,
            created_at: time(user.created_at),
        })))
    }

    /// Sign in with email and password (first-party client)
    ///
    /// Issues an access token and a refresh token to the client registered with
    /// `--first-party`. Every failure reads the same (`invalid_credentials`).
    #[oai(path = "/auth/login", method = "post")]
    async fn login(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<LoginRequest>,
    ) -> Result<LoginResult, ApiError> {
        let trace = Trace::of(req);
        let client = first_party_client(&state, &trace).await?;
        let meta = meta_of(req);
        let user = state
            .accounts
            .sign_in(&meta, &body.email, &body.password)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        // A first-party client marked `--require-mfa` asks for the second factor too.
        let required = client.require_mfa.then_some(crate::accounts::mfa::Acr::Mfa);
        match state.mfa.after_password(&user, required, "").await {
            Ok(crate::accounts::mfa::AfterPassword::Done { amr, acr }) => {
                let tokens =
                    issue_tokens(&state, &trace, &meta, &client, &user, &amr, acr, None).await?;
                Ok(LoginResult::Ok(Json(tokens), no_store()))
            }
            Ok(crate::accounts::mfa::AfterPassword::Pending(p)) => {
                let (code, message) = if p.enroll {
                    (
                        "mfa_enrollment_required",
                        "this account must add a second factor: POST /auth/mfa/totp with the                          mfaToken, then POST /auth/login/mfa with the app's first code",
                    )
                } else {
                    (
                        "mfa_required",
                        "a second factor is needed: POST /auth/login/mfa with the mfaToken and                          a code from the authenticator app (or a recovery code)",
                    )
                };
                Ok(LoginResult::MfaRequired(
                    Json(MfaRequiredResponse {
                        message: message.into(),
                        code: code.into(),
                        trace_id: trace.0.clone(),
                        mfa_token: p.token,
                        methods: p.methods.names(),
                    }),
                    no_store(),
                ))
            }
            Err(e) => Err(super::mfa::mfa_error(e, &trace)),
        }
    }

    /// Rotate a refresh token
    ///
    /// The same rotation as the token endpoint: the presented token is spent, a new one is
    /// returned, and presenting a spent token revokes its whole family.
    #[oai(path = "/auth/refresh", method = "post")]
    async fn refresh(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<RefreshRequest>,
    ) -> Result<RefreshResult, ApiError> {
        let trace = Trace::of(req);
        let client = first_party_client(&state, &trace).await?;
        let ring = state.keys.ring();
        let ctx = token_context(&state, &ring);
        let mut params = Params::default();
        params.set("refresh_token", Some(body.0.refresh_token));
        let tokens = refresh_token::exchange(&ctx, &client, &params)
            .await
            .map_err(|e| match e.code {
                ErrorCode::ServerError => ApiError::internal(&trace),
                _ => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_refresh_token",
                    "the refresh token is invalid, expired or revoked; sign in again",
                    &trace,
                ),
            })?;
        state.metrics.count(
            "portcullis_tokens_issued_total",
            &[
                ("grant", "refresh_token"),
                ("client_id", client.id.as_str()),
            ],
        );
        Ok(RefreshResult::Ok(
            Json(RefreshResponse {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token.unwrap_or_default(),
                expires_in: tokens.expires_in,
                token_type: "Bearer".into(),
            }),
            no_store(),
        ))
    }

    /// Sign out: revoke the refresh token's family
    ///
    /// Revokes every refresh token of the family and the access tokens issued with them.
    /// Answers 204 for unknown tokens too (as RFC 7009 §2.2 does).
    #[oai(path = "/auth/logout", method = "post")]
    async fn logout(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<RefreshRequest>,
    ) -> Result<NoContent, ApiError> {
        let trace = Trace::of(req);
        let client = first_party_client(&state, &trace).await?;
        let hash = random::hash_secret(&body.0.refresh_token);
        let stored = state.store.get_refresh_token(&hash).await.map_err(|e| {
            tracing::error!(error = %e, "storage failure at /auth/logout");
            ApiError::internal(&trace)
        })?;
        if let Some(token) = stored.filter(|t| t.client_id == client.id && t.revoked_at.is_none()) {
            let ring = state.keys.ring();
            let ctx = token_context(&state, &ring);
            refresh_token::revoke_family(&ctx, &token, "logout").await;
        }
        Ok(NoContent::Done)
    }

    /// The current user
    #[oai(path = "/auth/me", method = "get")]
    async fn me(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<MeResponse, ApiError> {
        let trace = Trace::of(req);
        let user = caller(&state, &auth, &trace).await?;
        Ok(MeResponse::Ok(Json(UserView::from(&user))))
    }

    /// Change the password (signed in)
    ///
    /// Needs the current password. Signs the user out everywhere: every session and refresh
    /// token is revoked, including the one in use.
    #[oai(path = "/auth/change-password", method = "post")]
    async fn change_password(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> Result<NoContent, ApiError> {
        let trace = Trace::of(req);
        let user = caller(&state, &auth, &trace).await?;
        let Json(body) = body;
        state
            .accounts
            .change_password(
                &meta_of(req),
                &user,
                &body.current_password,
                body.new_password,
            )
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(NoContent::Done)
    }

    /// Ask for a password reset link
    ///
    /// Always 202: whether the address has an account is not revealed.
    #[oai(path = "/auth/password-reset/request", method = "post")]
    async fn reset_request(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<EmailRequest>,
    ) -> Result<Accepted, ApiError> {
        let trace = Trace::of(req);
        state
            .accounts
            .request_password_reset(&meta_of(req), &body.0.email)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(Accepted::Accepted)
    }

    /// Set a new password with a reset link's token
    ///
    /// The token works once. Signs the user out everywhere.
    #[oai(path = "/auth/password-reset/confirm", method = "post")]
    async fn reset_confirm(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<ResetConfirmRequest>,
    ) -> Result<NoContent, ApiError> {
        let trace = Trace::of(req);
        let Json(body) = body;
        state
            .accounts
            .confirm_password_reset(&meta_of(req), &body.token, body.password)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(NoContent::Done)
    }

    /// Verify an email address with a verification link's token
    #[oai(path = "/auth/verify-email", method = "post")]
    async fn verify_email(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<TokenRequest>,
    ) -> Result<NoContent, ApiError> {
        let trace = Trace::of(req);
        state
            .accounts
            .verify_email(&meta_of(req), &body.0.token)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(NoContent::Done)
    }

    /// Mail a new verification link
    ///
    /// Always 202 for a well-formed address: whether it has an account is not revealed.
    #[oai(path = "/auth/verify-email/resend", method = "post")]
    async fn verify_resend(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<EmailRequest>,
    ) -> Result<Accepted, ApiError> {
        let trace = Trace::of(req);
        state
            .accounts
            .resend_verification(&meta_of(req), &body.0.email)
            .await
            .map_err(|e| ApiError::from_account(e, &trace))?;
        Ok(Accepted::Accepted)
    }
}

/// Tokens for the first-party client after a completed sign-in (password, and second factor
/// when one applied): a new refresh family and an access token saying how the user signed in.
#[allow(clippy::too_many_arguments)] // the facts of one completed sign-in
pub(super) async fn issue_tokens(
    state: &AppState,
    trace: &Trace,
    meta: &crate::accounts::service::RequestMeta,
    client: &Client,
    user: &crate::store::User,
    amr: &[String],
    acr: crate::accounts::mfa::Acr,
    recovery_codes: Option<Vec<String>>,
) -> Result<LoginResponse, ApiError> {
    let ring = state.keys.ring();
    let ctx = token_context(state, &ring);
    let scope = Scope::parse(&client.scope).unwrap_or_default();
    let jti = new_jti();
    let internal = |_| ApiError::internal(trace);
    // No browser session here: the sign-in event is written with the refresh family.
    let signed_in = state
        .accounts
        .event(crate::events::EventType::UserSignedIn, meta)
        .subject(user.id)
        .actor(Some(user.id))
        .client(Some(&client.id))
        .data(serde_json::json!({"amr": amr, "via": "api"}));
    let refresh = refresh_token::issue_first(
        &ctx,
        &FirstToken {
            client_id: &client.id,
            user_id: user.id,
            scope: &scope,
            session_id_hash: None,
            auth_code_hash: None,
            auth_time: ctx.now,
            amr,
            acr: Some(acr.as_str()),
            access_token_jti: &jti,
            events: std::slice::from_ref(&signed_in),
            resources: &[],
            dpop_jkt: None,
        },
    )
    .await
    .map_err(internal)?;
    let grant = Grant {
        issuer: &state.settings.issuer,
        client_id: &client.id,
        user: Some(user),
        scope: &scope,
        auth_time: ctx.now,
        amr,
        acr: Some(acr.as_str()),
        nonce: None,
        sid: None,
        now: ctx.now,
        resource: None,
        act: None,
    };
    let tokens = ctx
        .mint(client, &grant, &jti, Some(refresh))
        .map_err(internal)?;
    let mut event = state.accounts.audit_event("login.succeeded", meta);
    event.subject = Some(user.id.to_string());
    event.client_id = Some(client.id.clone());
    event.detail = serde_json::json!({"via": "api", "amr": amr, "acr": acr.as_str()});
    let _ = state.store.record_audit(&event).await;
    state.metrics.count(
        "portcullis_tokens_issued_total",
        &[("grant", "password_api"), ("client_id", client.id.as_str())],
    );
    Ok(LoginResponse {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token.unwrap_or_default(),
        expires_in: tokens.expires_in,
        token_type: "Bearer".into(),
        recovery_codes,
    })
}

/// [`issue_tokens`] for a sign-in whose second step just passed.
pub(super) async fn tokens_for_signed_in(
    state: &AppState,
    trace: &Trace,
    meta: &crate::accounts::service::RequestMeta,
    client: &Client,
    done: crate::accounts::mfa::SignedIn,
) -> Result<LoginResponse, ApiError> {
    issue_tokens(
        state,
        trace,
        meta,
        client,
        &done.user,
        &done.amr,
        done.acr,
        done.recovery_codes,
    )
    .await
}
