//! `/console/clients`: list and search, register, edit, rotate the secret (shown once),
//! switch off and on, delete after a confirmation. Every change goes through
//! `ClientService` (the admin API's and the CLI's rules, audit and cache invalidation); the
//! messages of a refused form are the registration rules' own.

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};

use super::auth::{viewer, Operator};
use super::{
    change_form, done, outage, page, page_number, path_segment, problem, query, segment, when,
    Chrome, ConfirmPage, Pager, PAGE_SIZE,
};
use crate::app::AppState;
use crate::clients::service::{ClientError, ClientUpdate, CONSOLE_CLIENT_ID};
use crate::clients::{
    ClientRegistration, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
};
use crate::http::sentence;
use crate::protocol::params::Params;
use crate::store::{Client, ClientQuery, ClientSort};

pub struct ClientRow {
    pub id: String,
    pub link: String,
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    /// Registered by the client itself (RFC 7591).
    pub dynamic: bool,
    pub disabled: bool,
    pub grants: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/clients.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    status: String,
    clients: Vec<ClientRow>,
    pager: Pager,
}

/// The fields of the create and edit forms, as typed (to show them again with an error).
#[derive(Default)]
pub struct ClientForm {
    pub name: String,
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub grant_code: bool,
    pub grant_refresh: bool,
    pub grant_client_credentials: bool,
    pub grant_device: bool,
    pub require_par: bool,
    pub scope: String,
    pub public: bool,
    pub first_party: bool,
    pub require_mfa: bool,
    pub always_issue_refresh_token: bool,
    pub allow_insecure_redirect: bool,
    pub backchannel_logout_uri: String,
    pub jwks_uri: String,
}

fn lines(raw: &str) -> Vec<String> {
    raw.split(['\n', '\r', ' '])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn optional(raw: &str) -> Option<String> {
    Some(raw.trim().to_string()).filter(|s| !s.is_empty())
}

impl ClientForm {
    fn parse(form: &Params) -> ClientForm {
        let text = |name: &str| form.get(name).unwrap_or("").to_string();
        let on = |name: &str| form.get(name).is_some();
        ClientForm {
            name: text("name"),
            redirect_uris: text("redirect_uris"),
            post_logout_redirect_uris: text("post_logout_redirect_uris"),
            grant_code: on("grant_authorization_code"),
            grant_refresh: on("grant_refresh_token"),
            grant_client_credentials: on("grant_client_credentials"),
            grant_device: on("grant_device_code"),
            require_par: on("require_par"),
            scope: text("scope"),
            public: form.get("kind") == Some("public"),
            first_party: on("first_party"),
            require_mfa: on("require_mfa"),
            always_issue_refresh_token: on("always_issue_refresh_token"),
            allow_insecure_redirect: on("allow_insecure_redirect"),
            backchannel_logout_uri: text("backchannel_logout_uri"),
            jwks_uri: text("jwks_uri"),
        }
    }

    fn of(client: &Client) -> ClientForm {
        let has = |g: &str| client.grant_types.iter().any(|x| x == g);
        ClientForm {
            name: client.name.clone(),
            redirect_uris: client.redirect_uris.join("\n"),
            post_logout_redirect_uris: client.post_logout_redirect_uris.join("\n"),
            grant_code: has(GRANT_AUTHORIZATION_CODE),
            grant_refresh: has(GRANT_REFRESH_TOKEN),
            grant_client_credentials: has(GRANT_CLIENT_CREDENTIALS),
            grant_device: has(GRANT_DEVICE_CODE),
            require_par: client.require_par,
            scope: client.scope.clone(),
            public: client.is_public(),
            first_party: client.first_party,
            require_mfa: client.require_mfa,
            always_issue_refresh_token: client.always_issue_refresh_token,
            allow_insecure_redirect: false,
            backchannel_logout_uri: client.backchannel_logout_uri.clone().unwrap_or_default(),
            jwks_uri: client.jwks_uri.clone().unwrap_or_default(),
        }
    }

    fn grants(&self) -> Vec<String> {
        [
            (self.grant_code, GRANT_AUTHORIZATION_CODE),
            (self.grant_refresh, GRANT_REFRESH_TOKEN),
            (self.grant_client_credentials, GRANT_CLIENT_CREDENTIALS),
            (self.grant_device, GRANT_DEVICE_CODE),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, g)| g.to_string())
        .collect()
    }

    fn registration(&self) -> ClientRegistration {
        ClientRegistration {
            name: self.name.clone(),
            redirect_uris: lines(&self.redirect_uris),
            post_logout_redirect_uris: lines(&self.post_logout_redirect_uris),
            grant_types: self.grants(),
            scope: optional(&self.scope),
            public: self.public,
            first_party: self.first_party,
            allow_insecure_redirect: self.allow_insecure_redirect,
            always_issue_refresh_token: self.always_issue_refresh_token,
            backchannel_logout_uri: optional(&self.backchannel_logout_uri),
            jwks_uri: optional(&self.jwks_uri),
            require_mfa: self.require_mfa,
            require_par: self.require_par,
            ..ClientRegistration::default()
        }
    }

    /// Every field of the form, so the edit is validated as a whole; the inline JWKS and the
    /// signing algorithms (not on the form) stay as they are.
    fn update(&self) -> ClientUpdate {
        let reg = self.registration();
        ClientUpdate {
            name: Some(reg.name),
            redirect_uris: Some(reg.redirect_uris),
            post_logout_redirect_uris: Some(reg.post_logout_redirect_uris),
            grant_types: Some(reg.grant_types),
            scope: Some(reg.scope.unwrap_or_default()),
            public: Some(reg.public),
            first_party: Some(reg.first_party),
            allow_insecure_redirect: Some(reg.allow_insecure_redirect),
            always_issue_refresh_token: Some(reg.always_issue_refresh_token),
            backchannel_logout_uri: Some(reg.backchannel_logout_uri),
            jwks_uri: Some(reg.jwks_uri),
            require_mfa: Some(reg.require_mfa),
            require_par: Some(reg.require_par),
            ..ClientUpdate::default()
        }
    }
}

#[derive(Template)]
#[template(path = "console/client_new.html")]
struct NewPage {
    chrome: Chrome,
    form: ClientForm,
}

#[derive(Template)]
#[template(path = "console/client.html")]
struct ClientPage {
    chrome: Chrome,
    id: String,
    link: String,
    built_in: bool,
    disabled: bool,
    /// Registered by the client itself (RFC 7591).
    dynamic: bool,
    confidential: bool,
    auth_method: String,
    created: String,
    updated: String,
    form: ClientForm,
}

#[derive(Template)]
#[template(path = "console/secret.html")]
struct SecretPage {
    chrome: Chrome,
    title: String,
    id: String,
    link: String,
    secret: String,
}

/// `GET /console/clients?q=&status=&page=`: a name prefix or an exact client id.
#[handler]
pub async fn list(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let params = query(req);
    let q = params.get("q").unwrap_or("").trim().to_string();
    let status = params.get("status").unwrap_or("").to_string();
    let page_no = page_number(&params);
    let search = ClientQuery {
        search: (!q.is_empty()).then(|| q.clone()),
        disabled: match status.as_str() {
            "active" => Some(false),
            "disabled" => Some(true),
            _ => None,
        },
        sort: ClientSort::Name,
        offset: (page_no - 1) * u64::from(PAGE_SIZE),
        limit: PAGE_SIZE,
        ..ClientQuery::default()
    };
    let (clients, total) = match state.client_admin.search(&search).await {
        Ok(found) => found,
        Err(e) => return outage(state, &op, "clients", &e),
    };
    let shown = (page_no - 1) * u64::from(PAGE_SIZE) + clients.len() as u64;
    let pager = Pager::new(
        "/console/clients",
        &[("q", &q), ("status", &status)],
        page_no,
        clients.len(),
        Some(total),
        shown < total,
    );
    let notice = (query(req).get("done") == Some("deleted")).then(|| "Client deleted.".to_string());
    let body = ListPage {
        chrome: Chrome::new(state, &op, "clients").with_notice(notice),
        q,
        status,
        clients: clients
            .iter()
            .map(|c| ClientRow {
                id: c.id.clone(),
                link: format!("/console/clients/{}", path_segment(&c.id)),
                name: c.name.clone(),
                public: c.is_public(),
                first_party: c.first_party,
                dynamic: c.dynamic,
                disabled: c.disabled,
                grants: c.grant_types.join(", "),
                created: when(c.created_at),
            })
            .collect(),
        pager,
    };
    page(StatusCode::OK, &op, &body)
}

#[handler]
pub async fn new_form(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let form = ClientForm {
        grant_code: true,
        scope: crate::clients::DEFAULT_SCOPE.into(),
        ..ClientForm::default()
    };
    let body = NewPage {
        chrome: Chrome::new(state, &op, "clients"),
        form,
    };
    page(StatusCode::OK, &op, &body)
}

/// `POST /console/clients`: registers a client; a confidential one's secret is shown once.
#[handler]
pub async fn create(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, form) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let form = ClientForm::parse(&form);
    match state
        .client_admin
        .create(&form.registration(), &op.actor())
        .await
    {
        Ok(registered) => match registered.secret {
            Some(secret) => {
                secret_page(state, &op, &registered.client, "Client registered", &secret)
            }
            None => done(
                state,
                &format!(
                    "/console/clients/{}?done=created",
                    path_segment(&registered.client.id)
                ),
            ),
        },
        Err(e) if e.is_bad_input() => {
            let body = NewPage {
                chrome: Chrome::new(state, &op, "clients")
                    .with_error(Some(sentence(&e.to_string()))),
                form,
            };
            page(StatusCode::BAD_REQUEST, &op, &body)
        }
        Err(e) => outage(state, &op, "clients", &e),
    }
}

fn secret_page(
    state: &AppState,
    op: &Operator,
    client: &Client,
    title: &str,
    secret: &SecretString,
) -> Response {
    let body = SecretPage {
        chrome: Chrome::new(state, op, "clients"),
        title: title.to_string(),
        id: client.id.clone(),
        link: format!("/console/clients/{}", path_segment(&client.id)),
        secret: secret.expose_secret().to_string(),
    };
    page(StatusCode::OK, op, &body)
}

fn client_page(
    state: &AppState,
    op: &Operator,
    client: &Client,
    form: ClientForm,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = ClientPage {
        chrome: Chrome::new(state, op, "clients")
            .with_notice(notice)
            .with_error(error),
        id: client.id.clone(),
        link: format!("/console/clients/{}", path_segment(&client.id)),
        built_in: client.id == CONSOLE_CLIENT_ID,
        disabled: client.disabled,
        dynamic: client.dynamic,
        confidential: client.secret_hash.is_some(),
        auth_method: client.token_endpoint_auth_method.clone(),
        created: when(client.created_at),
        updated: when(client.updated_at),
        form,
    };
    page(status, op, &body)
}

/// The answer to a refused change of the client `id`.
fn refused(state: &AppState, op: &Operator, id: &str, e: ClientError) -> Response {
    let back = format!("/console/clients/{}", path_segment(id));
    match e {
        ClientError::NotFound(_) => problem(
            state,
            op,
            "clients",
            StatusCode::NOT_FOUND,
            "No such client",
            "That client does not exist (any more).",
            "/console/clients",
        ),
        ClientError::Store(_) => outage(state, op, "clients", &e),
        other => problem(
            state,
            op,
            "clients",
            StatusCode::BAD_REQUEST,
            "Not possible",
            &sentence(&other.to_string()),
            &back,
        ),
    }
}

#[handler]
pub async fn show(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let id = segment(req, "id");
    let client = match state.client_admin.get(&id).await {
        Ok(c) => c,
        Err(e) => return refused(state, &op, &id, e),
    };
    let notice = match query(req).get("done") {
        Some("created") => Some("Client registered."),
        Some("updated") => Some("Changes saved."),
        Some("disabled") => Some("Client switched off: every endpoint treats it as unknown."),
        Some("enabled") => Some("Client switched on again."),
        _ => None,
    };
    let form = ClientForm::of(&client);
    client_page(state, &op, &client, form, notice.map(str::to_string), None)
}

/// `POST /console/clients/{id}`: the edit form, validated as a whole like a registration.
#[handler]
pub async fn update(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, form) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let id = segment(req, "id");
    let form = ClientForm::parse(&form);
    match state
        .client_admin
        .update(&id, &form.update(), &op.actor())
        .await
    {
        Ok(updated) => match updated.secret {
            Some(secret) => secret_page(
                state,
                &op,
                &updated.client,
                "The client is now confidential",
                &secret,
            ),
            None => done(
                state,
                &format!("/console/clients/{}?done=updated", path_segment(&id)),
            ),
        },
        Err(ClientError::Invalid(e)) if e.is_bad_input() => {
            let client = match state.client_admin.get(&id).await {
                Ok(c) => c,
                Err(e) => return refused(state, &op, &id, e),
            };
            client_page(
                state,
                &op,
                &client,
                form,
                None,
                Some(sentence(&e.to_string())),
            )
        }
        Err(e) => refused(state, &op, &id, e),
    }
}

/// `POST /console/clients/{id}/secret`: a new secret, shown once; the old one stops working.
#[handler]
pub async fn rotate_secret(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, _) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let id = segment(req, "id");
    let secret = match state.client_admin.rotate_secret(&id, &op.actor()).await {
        Ok(s) => s,
        Err(e) => return refused(state, &op, &id, e),
    };
    match state.client_admin.get(&id).await {
        Ok(client) => secret_page(state, &op, &client, "New client secret", &secret),
        Err(e) => refused(state, &op, &id, e),
    }
}

async fn switch(req: &Request, body: Body, state: &AppState, disabled: bool) -> Response {
    let (op, _) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let id = segment(req, "id");
    match state
        .client_admin
        .set_disabled(&id, disabled, &op.actor())
        .await
    {
        Ok(_) => {
            let what = if disabled { "disabled" } else { "enabled" };
            done(
                state,
                &format!("/console/clients/{}?done={what}", path_segment(&id)),
            )
        }
        Err(e) => refused(state, &op, &id, e),
    }
}

#[handler]
pub async fn disable(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    switch(req, body, &state, true).await
}

#[handler]
pub async fn enable(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    switch(req, body, &state, false).await
}

#[handler]
pub async fn confirm_delete(req: &Request, state: Data<&AppState>) -> Response {
    let state = *state;
    let op = match viewer(state, req).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let id = segment(req, "id");
    let client = match state.client_admin.get(&id).await {
        Ok(c) => c,
        Err(e) => return refused(state, &op, &id, e),
    };
    let link = format!("/console/clients/{}", path_segment(&client.id));
    let body = ConfirmPage {
        chrome: Chrome::new(state, &op, "clients"),
        title: format!("Delete {}?", client.name),
        message: format!(
            "The client {} is deleted with its codes, tokens and consents; apps using it stop \
             working at once. To stop it for a while instead, switch it off. This cannot be undone.",
            client.id
        ),
        action: format!("{link}/delete"),
        button: "Delete this client".into(),
        cancel: link,
    };
    page(StatusCode::OK, &op, &body)
}

#[handler]
pub async fn delete(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = *state;
    let (op, _) = match change_form(state, req, body).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let id = segment(req, "id");
    match state.client_admin.delete(&id, &op.actor()).await {
        Ok(()) => done(state, "/console/clients?done=deleted"),
        Err(e) => refused(state, &op, &id, e),
    }
}
