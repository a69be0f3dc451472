//! How an operator gets into the console: through Portcullis itself, as the built-in public
//! client `portcullis-console` with the authorization code flow and PKCE (RFC 7636), the code
//! redeemed in-process by the same grant the token endpoint runs. Decides who is an operator on
//! every request; never keeps a password form or a second copy of the token rules.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Request, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::service::is_admin;
use crate::app::AppState;
use crate::clients::service::CONSOLE_CLIENT_ID;
use crate::http::pages::{error_page, html, Brand};
use crate::http::session;
use crate::protocol::error::ErrorCode;
use crate::protocol::params::Params;
use crate::protocol::token::authorization_code;
use crate::random;
use crate::store::User;

/// The console's access token (a JWT), `__Host-` prefixed over https like the session's.
const TOKEN_COOKIE: &str = "portcullis-console";
/// State, PKCE verifier, nonce and return path of a sign-in under way, MACed.
const LOGIN_COOKIE: &str = "portcullis-console-login";
/// How long a console sign-in may take (the login page, a second factor).
const LOGIN_TTL_SECS: u64 = 600;
/// Longest console cookie accepted: a signed access token is well below this.
const TOKEN_MAX: usize = 4096;
const MAC_PURPOSE: &str = "console-login";

/// A signed-in operator: the live admin behind a console token and a live session.
pub struct Operator {
    pub user: User,
    /// The `acr` of the sign-in the token came from.
    pub acr: Option<String>,
    pub csrf: String,
    /// The `Set-Cookie` of a CSRF token made for this request, if the browser had none.
    pub csrf_cookie: Option<String>,
}

impl Operator {
    /// The audit trail's name for this operator.
    pub fn actor(&self) -> String {
        self.user.id.to_string()
    }

    pub fn cookies(&self) -> Vec<String> {
        self.csrf_cookie.iter().cloned().collect()
    }
}

enum Refusal {
    /// No console sign-in, or one that no longer holds: sign in (again).
    SignIn,
    /// Signed in, but not an operator.
    NotAdmin(User),
    Unavailable,
}

/// Checks the console token (signature, claims, deny-list; issued to the console's client),
/// then that the browser's Portcullis session is live and of the same user, who is an admin
/// now: signing out, a revoked session or a removed role lock the console at once.
async fn check(state: &AppState, req: &Request) -> Result<(User, Option<String>), Refusal> {
    let name = session::cookie_name(state, TOKEN_COOKIE);
    let token = session::read_cookie_up_to(req, &name, TOKEN_MAX).ok_or(Refusal::SignIn)?;
    let claims = match crate::http::oidc::check_bearer(state, &token).await {
        Ok(c) => c,
        Err(e) if e.code == ErrorCode::ServerError => return Err(Refusal::Unavailable),
        Err(_) => return Err(Refusal::SignIn),
    };
    if claims.client_id != CONSOLE_CLIENT_ID {
        return Err(Refusal::SignIn);
    }
    let (_, user) = session::current(state, req).await.ok_or(Refusal::SignIn)?;
    if user.id.to_string() != claims.sub {
        return Err(Refusal::SignIn);
    }
    if !is_admin(&user) {
        return Err(Refusal::NotAdmin(user));
    }
    Ok((user, claims.acr))
}

fn operator_of(state: &AppState, req: &Request, user: User, acr: Option<String>) -> Operator {
    let (csrf, csrf_cookie) = session::csrf_token(state, req);
    Operator {
        user,
        acr,
        csrf,
        csrf_cookie,
    }
}

/// The operator of a page view; otherwise the answer: a (silent, for a live first-party
/// session) sign-in that comes back to this page, or the not-an-operator page.
pub async fn viewer(state: &AppState, req: &Request) -> Result<Operator, Response> {
    match check(state, req).await {
        Ok((user, acr)) => Ok(operator_of(state, req, user, acr)),
        Err(Refusal::SignIn) => {
            let here = req
                .original_uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            Err(start(state, &here, false))
        }
        Err(refusal) => Err(refused(state, req, refusal)),
    }
}

/// The operator of a change: a viewer whose sign-in also satisfies the MFA policy for admin
/// writes (`MfaService::allows_admin_write`, the rule of the admin API too).
pub async fn writer(state: &AppState, req: &Request) -> Result<Operator, Response> {
    match check(state, req).await {
        Ok((user, acr)) if state.mfa.allows_admin_write(&user, acr.as_deref()) => {
            Ok(operator_of(state, req, user, acr))
        }
        Ok((user, _)) => Err(mfa_needed(state, &user)),
        // A form cannot be replayed through a sign-in: back to the console, which signs in.
        Err(Refusal::SignIn) => Err(crate::http::pages::redirect(
            crate::protocol::discovery::endpoint(&state.settings.issuer, "/console"),
        )),
        Err(refusal) => Err(refused(state, req, refusal)),
    }
}

fn refused(state: &AppState, req: &Request, refusal: Refusal) -> Response {
    match refusal {
        Refusal::NotAdmin(user) => {
            let page = NotOperatorPage {
                brand: (&state.settings.branding).into(),
                email: user.email,
            };
            html(StatusCode::FORBIDDEN, &page, &[])
        }
        _ => error_page(
            state,
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "Please try again in a moment.",
        ),
    }
}

#[derive(askama::Template)]
#[template(path = "console/not_operator.html")]
struct NotOperatorPage {
    brand: Brand,
    email: String,
}

#[derive(askama::Template)]
#[template(path = "console/mfa_needed.html")]
struct MfaNeededPage {
    brand: Brand,
    email: String,
}

fn mfa_needed(state: &AppState, user: &User) -> Response {
    let page = MfaNeededPage {
        brand: (&state.settings.branding).into(),
        email: user.email.clone(),
    };
    html(StatusCode::FORBIDDEN, &page, &[])
}

/// Only a console page is a place to come back to (no open redirect).
fn safe_return(raw: &str) -> &str {
    let ok = (raw == "/console" || raw.starts_with("/console/") || raw.starts_with("/console?"))
        && !raw.starts_with("/console/callback")
        && !raw.contains(['\r', '\n', '#', '\\'])
        && !raw.contains("//");
    if ok {
        raw
    } else {
        "/console"
    }
}

fn mac(state: &AppState, text: &str) -> String {
    URL_SAFE_NO_PAD.encode(state.keys.master().keyed_hash(MAC_PURPOSE, text.as_bytes()))
}

/// A console sign-in under way, as its cookie holds it.
struct Pending {
    state: String,
    verifier: String,
    nonce: String,
    return_to: String,
}

impl Pending {
    fn encode(&self, app: &AppState) -> String {
        let text = format!(
            "{}.{}.{}.{}",
            self.state,
            self.verifier,
            self.nonce,
            URL_SAFE_NO_PAD.encode(self.return_to.as_bytes())
        );
        let tag = mac(app, &text);
        format!("{text}.{tag}")
    }

    fn decode(app: &AppState, raw: &str) -> Option<Pending> {
        let (text, tag) = raw.rsplit_once('.')?;
        if !bool::from(mac(app, text).as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let mut parts = text.split('.');
        let (state, verifier, nonce, ret) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let return_to = String::from_utf8(URL_SAFE_NO_PAD.decode(ret).ok()?).ok()?;
        Some(Pending {
            state: state.into(),
            verifier: verifier.into(),
            nonce: nonce.into(),
            return_to,
        })
    }
}

fn redirect_uri(state: &AppState) -> String {
    crate::protocol::discovery::endpoint(&state.settings.issuer, "/console/callback")
}

/// Sends the browser to `/authorize` as the console's client (code flow, S256 PKCE, state
/// and nonce), remembering in a short-lived cookie where to come back to. With `mfa`, the
/// sign-in must reach a second factor (`acr_values=mfa`: a step-up for a live session).
fn start(state: &AppState, return_to: &str, mfa: bool) -> Response {
    let pending = Pending {
        state: random::token(16),
        verifier: random::token(32),
        nonce: random::token(16),
        return_to: safe_return(return_to).to_string(),
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    let authorize = crate::protocol::discovery::endpoint(&state.settings.issuer, "/authorize");
    let Ok(mut url) = url::Url::parse(&authorize) else {
        return crate::http::pages::redirect("/".into());
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", CONSOLE_CLIENT_ID)
            .append_pair("redirect_uri", &redirect_uri(state))
            .append_pair("scope", "openid profile email")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if mfa {
            q.append_pair("acr_values", "mfa");
        }
    }
    let cookie = session::set_cookie(
        state,
        LOGIN_COOKIE,
        &pending.encode(state),
        Some(LOGIN_TTL_SECS),
    );
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", url.as_str())
        .header("set-cookie", cookie)
        .header("cache-control", "no-store")
        .finish()
}

/// `GET /console/login[?mfa=1][&return=/console/…]`: starts a console sign-in; with `mfa`,
/// one that must reach a second factor (the link of the "confirm with a second factor" page).
#[handler]
pub fn login(req: &Request, state: Data<&AppState>) -> Response {
    let params = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    start(
        &state,
        params.get("return").unwrap_or("/console"),
        params.contains("mfa"),
    )
}

/// `GET /console/callback`: the authorization response (RFC 6749 §4.1.2). Checks `state`
/// against the cookie, redeems the code in-process with the PKCE verifier, and keeps the
/// access token as the console cookie for as long as it lives.
#[handler]
pub async fn callback(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let failed = |message: &str| {
        error_page(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "Console sign-in failed",
            &format!("{message} Open the console again to start over."),
        )
    };
    let params = match Params::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return failed(&crate::http::sentence(&e.to_string())),
    };
    let Some(pending) =
        session::read_cookie_up_to(req, &session::cookie_name(state, LOGIN_COOKIE), 1024)
            .and_then(|raw| Pending::decode(state, &raw))
    else {
        return failed("This sign-in expired or was started in another browser.");
    };
    // RFC 6749 §10.12: the response must answer the request this browser made.
    let same_state = params
        .get("state")
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
    if !same_state {
        return failed("This sign-in answer does not belong to this browser.");
    }
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").unwrap_or(error);
        return failed(&crate::http::sentence(description));
    }
    let Some(code) = params.get("code") else {
        return failed("The sign-in answer has no code.");
    };
    let client = match state.clients.get(CONSOLE_CLIENT_ID).await {
        Ok(Some(c)) => c,
        Ok(None) | Err(_) => return refused(state, req, Refusal::Unavailable),
    };
    let mut grant = Params::default();
    grant.set("grant_type", Some("authorization_code".into()));
    grant.set("code", Some(code.to_string()));
    grant.set("redirect_uri", Some(redirect_uri(state)));
    grant.set("code_verifier", Some(pending.verifier.clone()));
    let ring = state.keys.ring();
    let ctx = crate::http::tokens::context(state, &ring);
    let tokens = match authorization_code::exchange(&ctx, &client, &grant).await {
        Ok(t) => t,
        Err(e) => return failed(&crate::http::sentence(&e.description)),
    };
    // OIDC Core §3.1.3.7: the ID token must carry the nonce of this request.
    let nonce_ok = tokens
        .id_token
        .as_deref()
        .and_then(|t| ring.verify(t).ok())
        .and_then(|(payload, _, _)| {
            payload
                .claims_set()
                .get("nonce")
                .and_then(|v| v.as_str())
                .map(|n| n == pending.nonce)
        })
        .unwrap_or(false);
    if !nonce_ok {
        return failed("The sign-in answer does not match its request.");
    }
    state.metrics.count(
        "portcullis_tokens_issued_total",
        &[
            ("grant", "authorization_code"),
            ("client_id", CONSOLE_CLIENT_ID),
        ],
    );
    let token_cookie = session::set_cookie(
        state,
        TOKEN_COOKIE,
        &tokens.access_token,
        Some(tokens.expires_in),
    );
    let clear = session::set_cookie(state, LOGIN_COOKIE, "", Some(0));
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(
            "location",
            crate::protocol::discovery::endpoint(
                &state.settings.issuer,
                safe_return(&pending.return_to),
            ),
        )
        .header("set-cookie", token_cookie)
        .header("set-cookie", clear)
        .header("cache-control", "no-store")
        .finish()
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_console_pages_are_places_to_return_to() {
        assert_eq!(safe_return("/console/users?q=ada"), "/console/users?q=ada");
        assert_eq!(safe_return("/console"), "/console");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/console//evil",
            "/consolex",
            "/console/callback?code=x",
            "/console/\r\nx",
            "/authorize",
        ] {
            assert_eq!(safe_return(bad), "/console", "{bad:?}");
        }
    }
}
