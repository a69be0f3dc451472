//! `POST /auth/magic-link`: ask for a sign-in link by email, through the same service method
//! as the login page's form. Always 202 with the same body, so whether an address has an
//! account is never revealed; 404 when `accounts.magic_link` is off.

use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{meta_of, ApiError, ApiTags, Trace};
use crate::accounts::magic_link::MagicLinkError;
use crate::app::AppState;
use crate::http::pages::magic_link::nonce_cookie;
use crate::http::pages::safe_return_to;

pub struct MagicLinkApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct MagicLinkRequest {
    #[oai(validator(max_length = 254))]
    email: String,
    /// The authorization request (`/authorize?...`) to continue after the sign-in.
    #[oai(validator(max_length = 4096))]
    return_to: Option<String>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
struct MagicLinkAccepted {
    /// The same words whether or not the address has an account.
    message: String,
    /// Seconds the link stays valid, if one was sent.
    expires_in: u64,
}

#[derive(ApiResponse)]
enum MagicLinkResponse {
    /// Accepted; if the address has an account (and no limit was reached), a link is on its
    /// way. The link works only in the browser that got this answer's cookie.
    #[oai(status = 202)]
    Accepted(
        Json<MagicLinkAccepted>,
        #[oai(header = "Set-Cookie")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

fn from_magic_link(e: MagicLinkError, trace: &Trace) -> ApiError {
    match e {
        MagicLinkError::Disabled => ApiError::new(
            StatusCode::NOT_FOUND,
            "magic_link_disabled",
            e.to_string(),
            trace,
        ),
        MagicLinkError::InvalidEmail(message) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
            message,
            trace,
        ),
        _ => ApiError::internal(trace),
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl MagicLinkApi {
    /// Email me a sign-in link
    ///
    /// Mails a single-use sign-in link (valid `accounts.magic_link_ttl_secs`, 10 minutes by
    /// default) when the address has an account. Always 202 with the same body: whether the
    /// address has an account, or a limit was reached (then nothing is sent), is not revealed.
    /// The link signs in only in the browser that got this answer's cookie. 404 when the
    /// server does not offer sign-in links (`accounts.magic_link = false`).
    #[oai(path = "/auth/magic-link", method = "post")]
    async fn magic_link(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<MagicLinkRequest>,
    ) -> Result<MagicLinkResponse, ApiError> {
        let state = *state;
        let trace = Trace::of(req);
        if !state.accounts.magic_links_enabled() {
            return Err(from_magic_link(MagicLinkError::Disabled, &trace));
        }
        let Json(body) = body;
        let return_to = match body.return_to.as_deref().filter(|r| !r.is_empty()) {
            None => "",
            Some(raw) => safe_return_to(Some(raw)).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_return_to",
                    "returnTo must be an authorization request of this server (/authorize?...) \
                     or one of its account pages",
                    &trace,
                )
            })?,
        };
        let (nonce, cookie) = nonce_cookie(state, req);
        state
            .accounts
            .request_magic_link(&meta_of(req), &body.email, &nonce, return_to)
            .await
            .map_err(|e| from_magic_link(e, &trace))?;
        let ttl = state.settings.accounts.magic_link_ttl_secs;
        Ok(MagicLinkResponse::Accepted(
            Json(MagicLinkAccepted {
                message: "if the address has an account, a sign-in link is on its way; open it \
                          in this browser"
                    .into(),
                expires_in: ttl,
            }),
            cookie,
            "no-store".into(),
        ))
    }
}
