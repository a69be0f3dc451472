//! Hosted account pages: register, forgot password, reset password, verify email. Each form
//! carries a CSRF token and calls the same account service as the JSON API.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use crate::accounts::service::AccountError;
use crate::accounts::Registration;
use crate::app::AppState;
use crate::http::api::meta_of;
use crate::http::middleware::rate_limit::too_many_page;
use crate::http::pages::{error_page, html, Brand, MessagePage};
use crate::http::{checked_form, session};
use crate::protocol::params::Params;

pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub autocomplete: &'static str,
    pub value: String,
    pub required: bool,
    pub hint: Option<String>,
}

impl Field {
    fn new(
        name: &'static str,
        label: &'static str,
        kind: &'static str,
        autocomplete: &'static str,
    ) -> Field {
        Field {
            name,
            label,
            kind,
            autocomplete,
            value: String::new(),
            required: true,
            hint: None,
        }
    }

    fn value(mut self, value: &str) -> Field {
        self.value = value.to_string();
        self
    }

    fn optional(mut self) -> Field {
        self.required = false;
        self
    }

    fn hint(mut self, hint: String) -> Field {
        self.hint = Some(hint);
        self
    }
}

#[derive(Template)]
#[template(path = "account_form.html")]
pub struct AccountForm {
    pub brand: Brand,
    pub csrf: String,
    pub title: String,
    pub intro: Option<String>,
    pub error: Option<String>,
    pub action: &'static str,
    pub hidden: Vec<(String, String)>,
    pub fields: Vec<Field>,
    pub button: &'static str,
    pub links: Vec<(&'static str, &'static str)>,
    pub min_password: usize,
    pub max_password: usize,
}

struct FormSpec {
    title: &'static str,
    intro: Option<String>,
    action: &'static str,
    hidden: Vec<(String, String)>,
    fields: Vec<Field>,
    button: &'static str,
    links: Vec<(&'static str, &'static str)>,
}

fn form_page(
    state: &AppState,
    req: &Request,
    status: StatusCode,
    spec: FormSpec,
    error: Option<String>,
) -> Response {
    let (csrf, cookie) = session::csrf_token(state, req);
    let page = AccountForm {
        brand: (&state.settings.branding).into(),
        csrf,
        title: spec.title.to_string(),
        intro: spec.intro,
        error,
        action: spec.action,
        hidden: spec.hidden,
        fields: spec.fields,
        button: spec.button,
        links: spec.links,
        min_password: state.settings.password.min_length,
        max_password: state.settings.password.max_length,
    };
    html(status, &page, &cookie.into_iter().collect::<Vec<_>>())
}

fn message(state: &AppState, title: &str, text: String) -> Response {
    let page = MessagePage {
        brand: (&state.settings.branding).into(),
        title: title.into(),
        message: text,
    };
    html(StatusCode::OK, &page, &[])
}

/// The status and text a failed form shows again, or the whole answer for throttling and
/// internal failures.
#[allow(clippy::result_large_err)] // a cold path; the response is built once
pub(crate) fn form_error(
    state: &AppState,
    req: &Request,
    e: AccountError,
) -> Result<(StatusCode, String), Response> {
    match e {
        AccountError::Throttled {
            name,
            policy,
            decision,
        } => Err(too_many_page(state, req, name, policy, &decision)),
        AccountError::Internal => Err(error_page(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        )),
        AccountError::Invalid { message, .. } => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::http::sentence(&message),
        )),
        other => Ok((
            StatusCode::BAD_REQUEST,
            crate::http::sentence(&other.to_string()),
        )),
    }
}

fn password_hint(state: &AppState) -> String {
    format!(
        "At least {} characters. Not a common password, not your email address.",
        state.settings.password.min_length
    )
}

// ---------------------------------------------------------------------------------------------

fn register_spec(state: &AppState, email: &str, name: &str) -> FormSpec {
    FormSpec {
        title: "Create your account",
        intro: None,
        action: "/register",
        hidden: vec![],
        fields: vec![
            Field::new("email", "Email", "email", "email").value(email),
            Field::new("name", "Name", "text", "name")
                .value(name)
                .optional(),
            Field::new("password", "Password", "password", "new-password")
                .hint(password_hint(state)),
        ],
        button: "Create account",
        links: vec![("/login", "Already have an account? Sign in")],
    }
}

fn registration_closed(state: &AppState, req: &Request) -> Response {
    error_page(
        state,
        req,
        StatusCode::NOT_FOUND,
        "Registration is closed",
        "New accounts are created by an administrator on this server.",
    )
}

#[handler]
pub fn register_form(req: &Request, state: Data<&AppState>) -> Response {
    if !state.settings.accounts.allow_registration {
        return registration_closed(&state, req);
    }
    form_page(
        &state,
        req,
        StatusCode::OK,
        register_spec(&state, "", ""),
        None,
    )
}

#[handler]
pub async fn register_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    if !state.settings.accounts.allow_registration {
        return registration_closed(state, req);
    }
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let email = form.get("email").unwrap_or("").trim().to_string();
    let name = form.get("name").unwrap_or("").to_string();
    let input = Registration {
        email: &email,
        password: form.get("password").unwrap_or("").to_string(),
        name: Some(&name),
    };
    match state.accounts.register(&meta_of(req), input).await {
        Ok(_) => message(
            state,
            "Check your email",
            format!("We sent a link to {email}. Follow it to confirm your address, then sign in."),
        ),
        Err(e) => match form_error(state, req, e) {
            Ok((status, text)) => form_page(
                state,
                req,
                status,
                register_spec(state, &email, &name),
                Some(text),
            ),
            Err(resp) => resp,
        },
    }
}

// ---------------------------------------------------------------------------------------------

fn forgot_spec(email: &str) -> FormSpec {
    FormSpec {
        title: "Reset your password",
        intro: Some(
            "Enter your email address and we will send you a link to choose a new password.".into(),
        ),
        action: "/forgot-password",
        hidden: vec![],
        fields: vec![Field::new("email", "Email", "email", "email").value(email)],
        button: "Send reset link",
        links: vec![("/login", "Back to sign in")],
    }
}

#[handler]
pub fn forgot_form(req: &Request, state: Data<&AppState>) -> Response {
    form_page(&state, req, StatusCode::OK, forgot_spec(""), None)
}

#[handler]
pub async fn forgot_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let email = form.get("email").unwrap_or("").trim().to_string();
    if let Err(e) = state
        .accounts
        .request_password_reset(&meta_of(req), &email)
        .await
    {
        if let Err(resp) = form_error(state, req, e) {
            return resp;
        }
    }
    // The same words whether or not the address has an account.
    message(
        state,
        "Check your email",
        format!("If {email} has an account, a link to reset its password is on its way. It works once and expires soon."),
    )
}

// ---------------------------------------------------------------------------------------------

fn reset_spec(state: &AppState, token: &str, email: &str) -> FormSpec {
    FormSpec {
        title: "Choose a new password",
        intro: Some(format!("For {email}. You will be signed out everywhere.")),
        action: "/reset-password",
        hidden: vec![("token".into(), token.to_string())],
        fields: vec![
            Field::new("password", "New password", "password", "new-password")
                .hint(password_hint(state)),
        ],
        button: "Set new password",
        links: vec![],
    }
}

fn dead_link(state: &AppState, req: &Request, what: &str, again: &str) -> Response {
    error_page(
        state,
        req,
        StatusCode::BAD_REQUEST,
        "This link does not work",
        &format!("The {what} link is invalid, expired or already used. {again}"),
    )
}

#[handler]
pub async fn reset_form(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let token = query.get("token").unwrap_or("");
    match state.accounts.reset_link_user(token).await {
        Ok(user) => form_page(
            state,
            req,
            StatusCode::OK,
            reset_spec(state, token, &user.email),
            None,
        ),
        Err(AccountError::Internal) => error_page(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        ),
        Err(_) => dead_link(
            state,
            req,
            "password reset",
            "Ask for a new one on the “Forgot your password?” page.",
        ),
    }
}

#[handler]
pub async fn reset_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let token = form.get("token").unwrap_or("").to_string();
    let password = form.get("password").unwrap_or("").to_string();
    match state.accounts.confirm_password_reset(&meta_of(req), &token, password).await {
        Ok(_) => message(
            state,
            "Password changed",
            "Your new password is set and you were signed out everywhere. Sign in again with the new password.".into(),
        ),
        Err(AccountError::InvalidToken) => {
            dead_link(state, req, "password reset", "Ask for a new one on the “Forgot your password?” page.")
        }
        Err(e) => match form_error(state, req, e) {
            Ok((status, text)) => {
                let email = state.accounts.reset_link_user(&token).await.map(|u| u.email).unwrap_or_default();
                form_page(state, req, status, reset_spec(state, &token, &email), Some(text))
            }
            Err(resp) => resp,
        },
    }
}

// ---------------------------------------------------------------------------------------------

/// `GET /verify-email?token=…` asks for a click before spending the link (mail scanners fetch
/// links; only a person submits the form). Without a token: the form to get a new link.
#[handler]
pub fn verify_form(req: &Request, state: Data<&AppState>) -> Response {
    let query = Params::parse(req.uri().query().unwrap_or("").as_bytes()).unwrap_or_default();
    let spec = match query.get("token") {
        Some(token) => FormSpec {
            title: "Confirm your email address",
            intro: Some("One click and your address is confirmed.".into()),
            action: "/verify-email",
            hidden: vec![("token".into(), token.to_string())],
            fields: vec![],
            button: "Confirm email address",
            links: vec![],
        },
        None => resend_spec(""),
    };
    form_page(&state, req, StatusCode::OK, spec, None)
}

fn resend_spec(email: &str) -> FormSpec {
    FormSpec {
        title: "Get a new verification link",
        intro: Some("Enter your email address and we will send a new link to confirm it.".into()),
        action: "/verify-email",
        hidden: vec![],
        fields: vec![Field::new("email", "Email", "email", "email").value(email)],
        button: "Send link",
        links: vec![("/login", "Back to sign in")],
    }
}

#[handler]
pub async fn verify_submit(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let form = match checked_form(state, req, body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let meta = meta_of(req);
    if let Some(token) = form.get("token") {
        return match state.accounts.verify_email(&meta, token).await {
            Ok(_) => message(
                state,
                "Email address confirmed",
                "Thank you. Your address is confirmed and you can sign in now.".into(),
            ),
            Err(AccountError::InvalidToken) => dead_link(
                state,
                req,
                "verification",
                "Ask for a new one on the sign-in page.",
            ),
            Err(e) => form_error(state, req, e).err().unwrap_or_else(|| {
                dead_link(
                    state,
                    req,
                    "verification",
                    "Ask for a new one on the sign-in page.",
                )
            }),
        };
    }
    let email = form.get("email").unwrap_or("").trim().to_string();
    match state.accounts.resend_verification(&meta, &email).await {
        Ok(()) => message(
            state,
            "Check your email",
            format!("If {email} has an unconfirmed account, a new link is on its way."),
        ),
        Err(e) => match form_error(state, req, e) {
            Ok((status, text)) => form_page(state, req, status, resend_spec(&email), Some(text)),
            Err(resp) => resp,
        },
    }
}
