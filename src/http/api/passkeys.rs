//! Passkeys in the first-party API: a passkey as the second step of `POST /auth/login`
//! (`/auth/login/mfa/passkey/options`, then `/auth/login/mfa/passkey`), and adding one to my
//! account (`/auth/mfa/passkey`, then `/auth/mfa/passkey/confirm`). The client runs
//! `navigator.credentials.get()`/`.create()` with `publicKey` and sends back the credential as
//! the JSON text `/static/webauthn.js` would post. The same MFA service as the hosted pages.

use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::{first_party_client, no_store, tokens_for_signed_in, LoginResponse};
use super::mfa::{mfa_error, recent_caller};
use super::{meta_of, ApiError, ApiTags, BearerAuth, Trace};
use crate::accounts::mfa::{MfaError, PasskeyCeremony};
use crate::app::AppState;

pub struct PasskeyApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct SignInOptionsRequest {
    /// From the `401 mfa_required` answer of `POST /auth/login`.
    #[oai(validator(max_length = 128))]
    mfa_token: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct SignInRequest {
    #[oai(validator(max_length = 128))]
    mfa_token: String,
    /// The `ceremony` of the options answer.
    #[oai(validator(max_length = 128))]
    ceremony: String,
    /// The `PublicKeyCredential` as JSON text, binary fields in base64url.
    #[oai(validator(max_length = 16384))]
    credential: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct RegistrationRequest {
    /// What to call the passkey (at most 64 characters); default "Passkey".
    #[oai(validator(max_length = 256))]
    name: Option<String>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct RegistrationConfirmRequest {
    #[oai(validator(max_length = 128))]
    ceremony: String,
    #[oai(validator(max_length = 16384))]
    credential: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct CeremonyOptions {
    /// Names this ceremony's state on the server; send it back with the credential. Valid
    /// once, for five minutes.
    ceremony: String,
    /// The options of `navigator.credentials.get()` or `.create()`, binary fields in
    /// base64url.
    public_key: serde_json::Value,
}

#[derive(ApiResponse)]
enum OptionsResult {
    #[oai(status = 200)]
    Ok(
        Json<CeremonyOptions>,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
enum SignInResult {
    #[oai(status = 200)]
    Ok(Json<LoginResponse>, #[oai(header = "Cache-Control")] String),
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct Registered {
    /// At the account's first factor: ten recovery codes, shown this once; else empty.
    recovery_codes: Vec<String>,
}

#[derive(ApiResponse)]
enum RegisteredResult {
    #[oai(status = 200)]
    Ok(Json<Registered>, #[oai(header = "Cache-Control")] String),
}

fn options(started: PasskeyCeremony) -> OptionsResult {
    let public_key = started
        .options
        .get("publicKey")
        .cloned()
        .unwrap_or_default();
    OptionsResult::Ok(
        Json(CeremonyOptions {
            ceremony: started.ceremony,
            public_key,
        }),
        no_store(),
    )
}

#[OpenApi(tag = "ApiTags::Auth")]
impl PasskeyApi {
    /// Start a passkey second factor
    ///
    /// For the sign-in that `POST /auth/login` answered with `401 mfa_required` and a
    /// `methods` list holding `passkey`: the request options for the account's passkeys.
    #[oai(path = "/auth/login/mfa/passkey/options", method = "post")]
    async fn sign_in_options(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<SignInOptionsRequest>,
    ) -> Result<OptionsResult, ApiError> {
        let trace = Trace::of(req);
        let err = |e| mfa_error(e, &trace);
        let pending = state.mfa.pending(&body.mfa_token).await.map_err(err)?;
        match state.mfa.passkey_options_for(&pending).await.map_err(err)? {
            Some(started) => Ok(options(started)),
            None => Err(err(MfaError::Invalid {
                code: "no_passkey",
                message: "this account has no passkey that can be used here".into(),
            })),
        }
    }

    /// Finish a sign-in with a passkey
    ///
    /// The passkey's answer to the options of `POST /auth/login/mfa/passkey/options`. Attempts
    /// are limited per account; the ceremony is valid once.
    #[oai(path = "/auth/login/mfa/passkey", method = "post")]
    async fn sign_in(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<SignInRequest>,
    ) -> Result<SignInResult, ApiError> {
        let trace = Trace::of(req);
        let client = first_party_client(&state, &trace).await?;
        let meta = meta_of(req);
        let done = state
            .mfa
            .complete_with_passkey(&meta, &body.mfa_token, &body.ceremony, &body.credential)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        let tokens = tokens_for_signed_in(&state, &trace, &meta, &client, done).await?;
        Ok(SignInResult::Ok(Json(tokens), no_store()))
    }

    /// Start adding a passkey
    ///
    /// The creation options for a new passkey of the bearer's user, whose sign-in must be
    /// recent (`accounts.mfa.reauth_max_age_secs`). Finish with `POST /auth/mfa/passkey/confirm`.
    #[oai(path = "/auth/mfa/passkey", method = "post")]
    async fn registration(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<RegistrationRequest>,
    ) -> Result<OptionsResult, ApiError> {
        let trace = Trace::of(req);
        let user = recent_caller(&state, &auth, &trace).await?;
        let started = state
            .mfa
            .start_passkey_registration(&user, body.name.as_deref().unwrap_or(""))
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(options(started))
    }

    /// Turn on the passkey being added
    ///
    /// The authenticator's answer to `POST /auth/mfa/passkey`. The account's first factor
    /// comes with ten recovery codes, shown this once.
    #[oai(path = "/auth/mfa/passkey/confirm", method = "post")]
    async fn registration_confirm(
        &self,
        req: &Request,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<RegistrationConfirmRequest>,
    ) -> Result<RegisteredResult, ApiError> {
        let trace = Trace::of(req);
        let user = recent_caller(&state, &auth, &trace).await?;
        let codes = state
            .mfa
            .finish_passkey_registration(&meta_of(req), &user, &body.ceremony, &body.credential)
            .await
            .map_err(|e| mfa_error(e, &trace))?;
        Ok(RegisteredResult::Ok(
            Json(Registered {
                recovery_codes: codes.unwrap_or_default(),
            }),
            no_store(),
        ))
    }
}
