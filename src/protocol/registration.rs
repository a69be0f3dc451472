//! Dynamic client registration metadata (RFC 7591 §2, RFC 7592 §2.2, OpenID Connect Dynamic
//! Client Registration 1.0 §2): a request's JSON turned into the operator's
//! [`ClientRegistration`] (then validated by [`crate::clients::prepare`], the one set of
//! registration rules), a registered client turned back into the client information response,
//! and the RFC 7591 §3.2.2 errors naming the field at fault. Pure: no HTTP, no SQL.

use serde_json::{json, Map, Value};

use crate::clients::{
    ClientRegistration, RegistrationError, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN,
};
use crate::protocol::redirect_uri::{is_loopback, RedirectUriError};
use crate::store::Client;

/// The token endpoint authentication methods a client may register (RFC 7591 §2); the token
/// endpoint accepts a secret in the header or the body alike (`client_auth`).
pub const AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

/// Fields of the client information response (RFC 7591 §3.2.1) that a client must not send
/// back in an update request (RFC 7592 §2.2).
const SERVER_FIELDS: [&str; 4] = [
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
];

/// The name a client gets when it registers none (`client_name` is optional, RFC 7591 §2).
pub const UNNAMED: &str = "Unnamed application";

/// The error codes of RFC 7591 §3.2.2 this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataErrorCode {
    /// "The value of one or more redirection URIs is invalid."
    InvalidRedirectUri,
    /// "The value of one of the client metadata fields is invalid and the server has rejected
    /// this request."
    InvalidClientMetadata,
}

impl MetadataErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            MetadataErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        }
    }
}

/// A refused registration or update: the RFC 7591 §3.2.2 code and a description that starts
/// with the name of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct MetadataError {
    pub code: MetadataErrorCode,
    pub description: String,
}

/// Whether a URL the server itself will call (keys to fetch, logout tokens to post) names a
/// host outside this machine and its private networks (RFC 9700 §4.16 / RFC 7591 §5: a
/// self-registered client must not make the server reach internal services). An IP literal
/// is checked by range; names that are local by definition (`localhost`, `*.localhost`,
/// `*.local`, `*.internal`) are refused. Names that resolve to private addresses are not
/// caught here.
fn public_target(uri: &str) -> bool {
    use std::net::IpAddr;
    let Ok(url) = url::Url::parse(uri) else {
        return true; // malformed: `prepare` refuses it with its own message
    };
    let private_v4 = |ip: std::net::Ipv4Addr| {
        ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64 // 100.64/10, CGNAT
    };
    match url.host() {
        None => true,
        Some(url::Host::Ipv4(ip)) => !private_v4(ip),
        Some(url::Host::Ipv6(ip)) => {
            let seg = ip.segments();
            let mapped = ip.to_ipv4_mapped().map(IpAddr::V4);
            !(ip.is_loopback()
                || ip.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
                || matches!(mapped, Some(IpAddr::V4(v4)) if private_v4(v4)))
        }
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !(name == "localhost"
                || [".localhost", ".local", ".internal"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix)))
        }
    }
}

fn metadata(description: impl Into<String>) -> MetadataError {
    MetadataError {
        code: MetadataErrorCode::InvalidClientMetadata,
        description: description.into(),
    }
}

fn redirect(description: impl Into<String>) -> MetadataError {
    MetadataError {
        code: MetadataErrorCode::InvalidRedirectUri,
        description: description.into(),
    }
}

/// What the deployment allows a client that registers itself (`[registration]`).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub allowed_grant_types: &'a [String],
    pub allowed_scopes: &'a [String],
}

/// A parsed registration (RFC 7591 §3.1) or update (RFC 7592 §2.2) request.
#[derive(Debug, Clone)]
pub struct MetadataRequest {
    pub registration: ClientRegistration,
    /// Update requests only: the `client_id` the client names itself by...
    pub client_id: Option<String>,
    /// ...and the secret it may include, which must then be its current one.
    pub client_secret: Option<String>,
}

/// Whether the JSON is a registration request or an update of an existing registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Register,
    Update,
}

/// Parses a request body into the registration it asks for. Unknown metadata is ignored
/// (RFC 7591 §2: the server "MUST ignore any client metadata sent by the client that it does
/// not understand"), and so is a software statement (§3.1.1: the server "MAY ignore the
/// software statement if it does not support this feature"). `null` counts as absent
/// (RFC 7592 §2.2 treats omitted fields as null).
pub fn parse(
    body: &[u8],
    policy: &Policy<'_>,
    kind: RequestKind,
) -> Result<MetadataRequest, MetadataError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| metadata(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(metadata(
            "the request body must be a JSON object of client metadata (RFC 7591 §3.1)",
        ));
    };
    let m = Fields(&fields);
    let (client_id, client_secret) = match kind {
        RequestKind::Register => (None, None),
        RequestKind::Update => {
            // RFC 7592 §2.2: these are the server's to set and must not be sent.
            if let Some(field) = SERVER_FIELDS.iter().find(|f| m.present(f)) {
                return Err(metadata(format!(
                    "{field}: must not be included in an update request (RFC 7592 §2.2)"
                )));
            }
            let Some(id) = m.string("client_id")? else {
                return Err(metadata(
                    "client_id: an update request must include the client's client_id (RFC 7592 §2.2)",
                ));
            };
            (Some(id), m.string("client_secret")?)
        }
    };

    let redirect_uris = m.strings("redirect_uris")?.unwrap_or_default();
    let (grant_types, _) = grants_and_responses(
        m.strings("grant_types")?,
        m.strings("response_types")?,
        policy,
    )?;

    let method = m
        .string("token_endpoint_auth_method")?
        .unwrap_or_else(|| "client_secret_basic".to_string());
    if !AUTH_METHODS.contains(&method.as_str()) {
        return Err(metadata(format!(
            "token_endpoint_auth_method: {method:?} is not supported; use one of {}",
            AUTH_METHODS.join(", ")
        )));
    }
    let jwks = match m.get("jwks") {
        None => None,
        Some(Value::Object(set)) => Some(Value::Object(set.clone()).to_string()),
        Some(_) => return Err(metadata("jwks: must be a JSON Web Key Set object")),
    };
    let jwks_uri = m.string("jwks_uri")?;
    if method == "private_key_jwt" && jwks.is_none() && jwks_uri.is_none() {
        return Err(metadata(
            "token_endpoint_auth_method: private_key_jwt needs the client's keys in jwks or jwks_uri",
        ));
    }
    if method != "private_key_jwt" && (jwks.is_some() || jwks_uri.is_some()) {
        return Err(metadata(format!(
            "jwks, jwks_uri: keys are registered for token_endpoint_auth_method private_key_jwt only, not {method}"
        )));
    }

    let scope = match m.string("scope")? {
        Some(scope) => {
            if let Some(bad) = scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .find(|s| !policy.allowed_scopes.iter().any(|a| a == s))
            {
                return Err(metadata(format!(
                    "scope: {bad:?} is not allowed for dynamically registered clients; allowed: {}",
                    policy.allowed_scopes.join(" ")
                )));
            }
            scope
        }
        // RFC 7591 §2: "If omitted, an authorization server MAY register a client with a
        // default set of scopes": what the policy allows (offline access only with refresh).
        None => policy
            .allowed_scopes
            .iter()
            .filter(|s| {
                *s != "offline_access" || grant_types.iter().any(|g| g == GRANT_REFRESH_TOKEN)
            })
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    };

    let application_type = m.string("application_type")?;
    if application_type.as_deref() == Some("native") {
        native_redirects(&redirect_uris)?;
    }

    let backchannel_logout_uri = m.string("backchannel_logout_uri")?;
    for (field, uri) in [
        ("jwks_uri", &jwks_uri),
        ("backchannel_logout_uri", &backchannel_logout_uri),
    ] {
        if let Some(uri) = uri.as_deref().filter(|u| !public_target(u)) {
            return Err(metadata(format!(
                "{field}: {uri:?} names a loopback, private or link-local host; this server \
                 fetches or posts to it, so a self-registered client must name a public one"
            )));
        }
    }

    let registration = ClientRegistration {
        name: m
            .string("client_name")?
            .unwrap_or_else(|| UNNAMED.to_string()),
        redirect_uris,
        post_logout_redirect_uris: m.strings("post_logout_redirect_uris")?.unwrap_or_default(),
        grant_types,
        scope: Some(scope),
        public: method == "none",
        client_secret_post: method == "client_secret_post",
        // Never the product's own app, never exempt from https (`prepare` also refuses).
        first_party: false,
        allow_insecure_redirect: false,
        id_token_alg: m.string("id_token_signed_response_alg")?,
        access_token_alg: None,
        always_issue_refresh_token: false,
        backchannel_logout_uri,
        backchannel_logout_session_required: m
            .bool("backchannel_logout_session_required")?
            .unwrap_or(false),
        jwks,
        jwks_uri,
        require_mfa: false,
        require_par: m
            .bool("require_pushed_authorization_requests")?
            .unwrap_or(false),
        dynamic: true,
        logo_uri: m.string("logo_uri")?,
        client_uri: m.string("client_uri")?,
        application_type,
        // RFC 8707 resources are an operator's grant, never self-registered.
        resources: Vec::new(),
        // RFC 9449 §5.2.
        dpop_bound_access_tokens: m.bool("dpop_bound_access_tokens")?.unwrap_or(false),
    };
    Ok(MetadataRequest {
        registration,
        client_id,
        client_secret,
    })
}

/// RFC 7591 §2.1: `grant_types` and `response_types` must agree (`authorization_code` goes
/// with `code`; the other grants have no response type). An omitted list is derived from the
/// other one, a correction §2.1 allows; two lists that disagree are refused. `code` is the only
/// response type this server implements.
fn grants_and_responses(
    grants: Option<Vec<String>>,
    responses: Option<Vec<String>>,
    policy: &Policy<'_>,
) -> Result<(Vec<String>, Vec<String>), MetadataError> {
    if let Some(bad) = responses.iter().flatten().find(|r| r.as_str() != "code") {
        return Err(metadata(format!(
            "response_types: {bad:?} is not supported; this server implements only \"code\""
        )));
    }
    let (grants, responses) = match (grants, responses) {
        (None, None) => (vec![GRANT_AUTHORIZATION_CODE.to_string()], vec!["code".into()]),
        (Some(g), None) => {
            let r = if g.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
                vec!["code".to_string()]
            } else {
                vec![]
            };
            (g, r)
        }
        (None, Some(r)) if !r.is_empty() => (vec![GRANT_AUTHORIZATION_CODE.to_string()], r),
        (None, Some(_)) => {
            return Err(metadata(
                "grant_types: must be given when response_types is empty (the default grant, authorization_code, goes with the code response type)",
            ))
        }
        (Some(g), Some(r)) => (g, r),
    };
    if grants.is_empty() {
        return Err(metadata("grant_types: must name at least one grant type"));
    }
    if let Some(bad) = grants
        .iter()
        .find(|g| !policy.allowed_grant_types.iter().any(|a| a == *g))
    {
        return Err(metadata(format!(
            "grant_types: {bad:?} is not allowed for dynamically registered clients; allowed: {}",
            policy.allowed_grant_types.join(", ")
        )));
    }
    let has_code_grant = grants.iter().any(|g| g == GRANT_AUTHORIZATION_CODE);
    let has_code_response = !responses.is_empty();
    if has_code_grant != has_code_response {
        return Err(metadata(
            "grant_types, response_types: inconsistent (RFC 7591 §2.1): the authorization_code grant goes with the code response type, and the other grants with none",
        ));
    }
    Ok((grants, responses))
}

/// OpenID Connect Dynamic Client Registration 1.0 §2 (`application_type`): "Native Clients
/// MUST only register redirect_uris using custom URI schemes or loopback URLs using the http
/// scheme".
fn native_redirects(uris: &[String]) -> Result<(), MetadataError> {
    for raw in uris {
        let ok = url::Url::parse(raw).is_ok_and(|u| match u.scheme() {
            "https" => false,
            "http" => is_loopback(&u),
            _ => true,
        });
        if !ok {
            return Err(redirect(format!(
                "redirect_uris: {raw:?} is not for a native application, which registers custom-scheme (com.example.app:/cb) or http loopback redirect URIs only (OpenID Connect Dynamic Client Registration §2)"
            )));
        }
    }
    Ok(())
}

/// The registration rules' refusal as RFC 7591 §3.2.2 says it, naming the field.
/// `Store` is not the client's fault and has no wire form here: `None`.
pub fn refusal(e: &RegistrationError, reg: &ClientRegistration) -> Option<MetadataError> {
    Some(match e {
        RegistrationError::Name => metadata("client_name: must be 1 to 100 characters"),
        RegistrationError::RedirectUri(e) => {
            let (uri, problem) = match e {
                RedirectUriError::NotAbsolute(u) => (u, "is not an absolute URI"),
                RedirectUriError::Fragment(u) => {
                    (u, "has a fragment, which RFC 6749 §3.1.2 forbids")
                }
                RedirectUriError::InsecureHttp(u) => {
                    (u, "uses plain http on a host that is not loopback; use https")
                }
                RedirectUriError::BadScheme(u) => (
                    u,
                    "uses a scheme that cannot be a redirect target; use https, http on loopback, or a reverse-domain scheme such as com.example.app:/callback",
                ),
                RedirectUriError::Credentials(u) => (u, "contains user credentials"),
            };
            // The same rules check both lists; the URI says which one it came from.
            if reg.redirect_uris.contains(uri) {
                redirect(format!("redirect_uris: {uri:?} {problem}"))
            } else {
                metadata(format!("post_logout_redirect_uris: {uri:?} {problem}"))
            }
        }
        RegistrationError::UnknownGrant(g) => {
            metadata(format!("grant_types: {g:?} is not supported"))
        }
        RegistrationError::NoRedirectUri => redirect(
            "redirect_uris: the authorization_code grant needs at least one redirect URI",
        ),
        RegistrationError::PublicClientCredentials => metadata(format!(
            "grant_types: a client with token_endpoint_auth_method none cannot use {GRANT_CLIENT_CREDENTIALS}: it has nothing to authenticate with"
        )),
        RegistrationError::Scope(e) => metadata(format!("scope: {e}")),
        RegistrationError::EmptyScope => metadata("scope: must not be empty"),
        RegistrationError::BackchannelUri(u) => metadata(format!(
            "backchannel_logout_uri: {u:?} must be an absolute https URL (http only on loopback) without a fragment"
        )),
        RegistrationError::Jwks(e) => metadata(format!(
            "jwks: must be a JSON Web Key Set of public keys: {e}"
        )),
        RegistrationError::JwksUri(u) => {
            metadata(format!("jwks_uri: {u:?} must be an absolute https URL"))
        }
        RegistrationError::KeysConflict => metadata(
            "jwks, jwks_uri: give one of them, not both (RFC 7591 §2), and neither with token_endpoint_auth_method none",
        ),
        RegistrationError::UnknownAlg(a) => metadata(format!(
            "id_token_signed_response_alg: {a:?} is not supported; use RS256, PS256, ES256 or EdDSA"
        )),
        RegistrationError::InfoUri(field, u) => metadata(format!(
            "{field}: {u:?} must be an absolute https URL (http only on loopback)"
        )),
        RegistrationError::ApplicationType(t) => metadata(format!(
            "application_type: {t:?} is not supported; use web or native"
        )),
        RegistrationError::PublicTokenExchange => metadata(
            "grant_types: a client with token_endpoint_auth_method none cannot use token exchange",
        ),
        RegistrationError::Resource(e) | RegistrationError::UnknownResource(e) => {
            metadata(format!("resource: {e}"))
        }
        RegistrationError::Store(_) => return None,
    })
}

/// What the server issues beside the registered metadata.
#[derive(Debug, Clone, Copy)]
pub struct Issued<'a> {
    /// A client secret, in the response that issues it only (never stored in clear).
    pub client_secret: Option<&'a str>,
    /// RFC 7592 §3: REQUIRED in every client information response.
    pub registration_access_token: &'a str,
    pub registration_client_uri: &'a str,
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the client's identifier,
/// what was issued, and "all registered metadata about the client, including any fields
/// provisioned by the authorization server itself".
pub fn client_information(client: &Client, issued: &Issued<'_>) -> Value {
    let mut out = json!({
        "client_id": client.id,
        "client_id_issued_at": client.created_at,
        "registration_access_token": issued.registration_access_token,
        "registration_client_uri": issued.registration_client_uri,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": response_types(&client.grant_types),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "application_type": client.application_type,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "backchannel_logout_session_required": client.backchannel_logout_session_required,
        "require_pushed_authorization_requests": client.require_par,
        "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
    });
    let Value::Object(map) = &mut out else {
        return out;
    };
    if let Some(secret) = issued.client_secret {
        map.insert("client_secret".into(), json!(secret));
    }
    if client.secret_hash.is_some() {
        // REQUIRED with a secret; 0: it does not expire.
        map.insert("client_secret_expires_at".into(), json!(0));
    }
    let optional = [
        ("logo_uri", &client.logo_uri),
        ("client_uri", &client.client_uri),
        ("jwks_uri", &client.jwks_uri),
        ("backchannel_logout_uri", &client.backchannel_logout_uri),
        (
            "id_token_signed_response_alg",
            &client.id_token_signed_response_alg,
        ),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            map.insert(name.into(), json!(v));
        }
    }
    if let Some(set) = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
    {
        map.insert("jwks".into(), set);
    }
    out
}

/// RFC 7591 §2.1: the response types that go with the registered grants.
fn response_types(grants: &[String]) -> Vec<&'static str> {
    if grants.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
        vec!["code"]
    } else {
        vec![]
    }
}

/// A string member as stored: control characters (NUL above all, which PostgreSQL text cannot
/// hold) are refused rather than carried into names, URIs and pages.
fn text(name: &str, s: &str) -> Result<String, MetadataError> {
    if s.chars().any(char::is_control) {
        return Err(metadata(format!(
            "{name}: must not contain control characters"
        )));
    }
    Ok(s.to_string())
}

/// Typed reads of the request's members, each error naming the member.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn present(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn string(&self, name: &str) -> Result<Option<String>, MetadataError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => text(name, s).map(Some),
            Some(_) => Err(metadata(format!("{name}: must be a string"))),
        }
    }

    fn strings(&self, name: &str) -> Result<Option<Vec<String>>, MetadataError> {
        let wrong = || metadata(format!("{name}: must be an array of strings"));
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().ok_or_else(wrong).and_then(|s| text(name, s)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong()),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, MetadataError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(metadata(format!("{name}: must be true or false"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_the_server_calls_must_be_public() {
        for private in [
            "http://127.0.0.1:9000/jwks",
            "https://10.1.2.3/jwks",
            "https://192.168.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://localhost/x",
            "https://metadata.google.internal/x",
            "https://100.64.0.1/x",
        ] {
            assert!(!super::public_target(private), "{private}");
        }
        for public in [
            "https://rp.example.com/jwks",
            "https://8.8.8.8/x",
            "https://[2001:db8::1]/x",
        ] {
            assert!(super::public_target(public), "{public}");
        }
    }

    use super::*;

    fn policy() -> (Vec<String>, Vec<String>) {
        (
            vec![
                "authorization_code".into(),
                "refresh_token".into(),
                "client_credentials".into(),
            ],
            vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "offline_access".into(),
            ],
        )
    }

    fn register(body: Value) -> Result<MetadataRequest, MetadataError> {
        let (grants, scopes) = policy();
        let p = Policy {
            allowed_grant_types: &grants,
            allowed_scopes: &scopes,
        };
        parse(body.to_string().as_bytes(), &p, RequestKind::Register)
    }

    /// Parsed and validated by the registration rules, as the service does.
    fn validated(body: Value) -> Result<Client, MetadataError> {
        let req = register(body)?;
        crate::clients::prepare(&req.registration, 100)
            .map(|r| r.client)
            .map_err(|e| refusal(&e, &req.registration).expect("not a store error"))
    }

    fn refused(body: Value) -> MetadataError {
        validated(body).expect_err("refused")
    }

    #[test]
    fn defaults_are_those_of_rfc_7591() {
        let c = validated(json!({"redirect_uris": ["https://rp.example.com/cb"]})).unwrap();
        assert_eq!(c.grant_types, ["authorization_code"]);
        assert_eq!(c.token_endpoint_auth_method, "client_secret_basic");
        assert!(c.secret_hash.is_some() && c.dynamic && !c.first_party);
        assert_eq!(c.name, UNNAMED);
        assert_eq!(
            c.scope, "email openid profile",
            "offline_access needs refresh"
        );
        assert_eq!(c.application_type, "web");
    }

    #[test]
    fn unknown_metadata_and_software_statements_are_ignored() {
        let c = validated(json!({
            "redirect_uris": ["https://rp.example.com/cb"],
            "contacts": ["ops@example.com"],
            "software_statement": "eyJhbGciOi...",
            "x_vendor_thing": {"nested": [1, 2]},
            "client_name#fr": "Démo",
            "tos_uri": null,
        }))
        .unwrap();
        assert_eq!(c.redirect_uris, ["https://rp.example.com/cb"]);
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (body, field) in [
            (
                json!({"redirect_uris": "https://rp.example.com/cb"}),
                "redirect_uris",
            ),
            (json!({"redirect_uris": [1]}), "redirect_uris"),
            (json!({"client_name": 5}), "client_name"),
            (json!({"grant_types": {"a": 1}}), "grant_types"),
            (
                json!({"jwks": "{\"keys\":[]}", "token_endpoint_auth_method": "private_key_jwt"}),
                "jwks",
            ),
            (
                json!({"backchannel_logout_session_required": "yes"}),
                "backchannel_logout_session_required",
            ),
        ] {
            let e = register(body).unwrap_err();
            assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata);
            assert!(e.description.starts_with(field), "{e}");
        }
        for raw in ["[]", "\"x\"", "{", "", "null"] {
            let (grants, scopes) = policy();
            let p = Policy {
                allowed_grant_types: &grants,
                allowed_scopes: &scopes,
            };
            let e = parse(raw.as_bytes(), &p, RequestKind::Register).unwrap_err();
            assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata, "{raw}");
        }
    }

    #[test]
    fn grant_and_response_types_must_agree() {
        let e = refused(json!({
            "redirect_uris": ["https://rp.example.com/cb"],
            "grant_types": ["client_credentials"],
            "response_types": ["code"],
        }));
        assert!(
            e.description.starts_with("grant_types, response_types"),
            "{e}"
        );
        let e = refused(json!({"grant_types": ["authorization_code"], "response_types": []}));
        assert!(e.description.contains("RFC 7591 §2.1"), "{e}");
        let e = refused(json!({"response_types": ["token"]}));
        assert!(e.description.starts_with("response_types"), "{e}");
        let e = refused(json!({"response_types": ["code id_token"]}));
        assert!(e.description.starts_with("response_types"), "{e}");
        // An omitted list follows the other one.
        let c = validated(json!({"grant_types": ["client_credentials"]})).unwrap();
        assert_eq!(c.grant_types, ["client_credentials"]);
        let c = validated(json!({
            "response_types": ["code"],
            "redirect_uris": ["https://rp.example.com/cb"],
        }))
        .unwrap();
        assert_eq!(c.grant_types, ["authorization_code"]);
    }

    #[test]
    fn grants_and_scopes_outside_the_policy_are_refused() {
        let e = refused(json!({"grant_types": ["password"]}));
        assert!(
            e.description.starts_with("grant_types: \"password\""),
            "{e}"
        );
        let e = refused(json!({"grant_types": ["device_code"]}));
        assert!(e.description.contains("not allowed"), "no short forms: {e}");
        let e = refused(
            json!({"redirect_uris": ["https://rp.example.com/cb"], "scope": "openid admin"}),
        );
        assert!(e.description.starts_with("scope: \"admin\""), "{e}");
        let e = refused(json!({"grant_types": []}));
        assert!(e.description.starts_with("grant_types"), "{e}");
    }

    #[test]
    fn auth_methods_and_keys() {
        let uri = json!(["https://rp.example.com/cb"]);
        let c =
            validated(json!({"redirect_uris": uri, "token_endpoint_auth_method": "none"})).unwrap();
        assert!(c.is_public() && c.secret_hash.is_none());
        let c = validated(
            json!({"redirect_uris": uri, "token_endpoint_auth_method": "client_secret_post"}),
        )
        .unwrap();
        assert_eq!(c.token_endpoint_auth_method, "client_secret_post");
        assert!(c.secret_hash.is_some());
        let e = refused(
            json!({"redirect_uris": uri, "token_endpoint_auth_method": "client_secret_jwt"}),
        );
        assert!(
            e.description.starts_with("token_endpoint_auth_method"),
            "{e}"
        );
        let e =
            refused(json!({"redirect_uris": uri, "token_endpoint_auth_method": "private_key_jwt"}));
        assert!(e.description.contains("jwks or jwks_uri"), "{e}");
        let e = refused(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []},
            "jwks_uri": "https://rp.example.com/jwks",
        }));
        assert!(e.description.starts_with("jwks, jwks_uri"), "{e}");
        let e = refused(json!({"redirect_uris": uri, "jwks_uri": "https://rp.example.com/jwks"}));
        assert!(e.description.contains("private_key_jwt only"), "{e}");
        let e = refused(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "http://rp.example.com/jwks",
        }));
        assert!(e.description.starts_with("jwks_uri"), "{e}");
        let e = refused(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
        }));
        assert!(e.description.starts_with("jwks:"), "{e}");
        let c = validated(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://rp.example.com/jwks",
        }))
        .unwrap();
        assert_eq!(c.token_endpoint_auth_method, "private_key_jwt");
        assert!(c.secret_hash.is_none());
    }

    #[test]
    fn redirect_uri_problems_are_invalid_redirect_uri_and_name_the_list() {
        let e = refused(json!({"redirect_uris": ["http://rp.example.com/cb"]}));
        assert_eq!(e.code, MetadataErrorCode::InvalidRedirectUri);
        assert!(
            e.description
                .starts_with("redirect_uris: \"http://rp.example.com/cb\""),
            "{e}"
        );
        assert!(
            !e.description.contains("--"),
            "no CLI flags on the wire: {e}"
        );
        let e = refused(json!({"redirect_uris": ["https://rp.example.com/cb#x"]}));
        assert_eq!(e.code, MetadataErrorCode::InvalidRedirectUri);
        let e = refused(json!({}));
        assert_eq!(e.code, MetadataErrorCode::InvalidRedirectUri, "{e}");
        let e = refused(json!({
            "redirect_uris": ["https://rp.example.com/cb"],
            "post_logout_redirect_uris": ["javascript:alert(1)"],
        }));
        assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata);
        assert!(
            e.description.starts_with("post_logout_redirect_uris"),
            "{e}"
        );
    }

    #[test]
    fn native_applications_use_custom_schemes_or_loopback() {
        let ok = validated(json!({
            "application_type": "native",
            "token_endpoint_auth_method": "none",
            "redirect_uris": ["com.example.app:/cb", "http://127.0.0.1/cb"],
        }))
        .unwrap();
        assert_eq!(ok.application_type, "native");
        let e = refused(json!({
            "application_type": "native",
            "redirect_uris": ["https://app.example.com/cb"],
        }));
        assert_eq!(e.code, MetadataErrorCode::InvalidRedirectUri);
        let e = refused(json!({
            "application_type": "desktop",
            "redirect_uris": ["https://app.example.com/cb"],
        }));
        assert!(e.description.starts_with("application_type"), "{e}");
    }

    #[test]
    fn other_fields_are_checked_by_the_registration_rules() {
        let uri = json!(["https://rp.example.com/cb"]);
        for (extra, field) in [
            (json!({"logo_uri": "ftp://x/logo.png"}), "logo_uri"),
            (json!({"client_uri": "not a url"}), "client_uri"),
            (json!({"client_name": ""}), "client_name"),
            (json!({"client_name": "x".repeat(101)}), "client_name"),
            (
                json!({"backchannel_logout_uri": "http://rp.example.com/bc"}),
                "backchannel_logout_uri",
            ),
            (
                json!({"id_token_signed_response_alg": "none"}),
                "id_token_signed_response_alg",
            ),
            (json!({"scope": ""}), "scope"),
        ] {
            let mut body = extra.clone();
            body["redirect_uris"] = uri.clone();
            let e = refused(body);
            assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata, "{extra}");
            assert!(e.description.starts_with(field), "{extra}: {e}");
        }
    }

    #[test]
    fn an_update_names_the_client_and_never_the_servers_fields() {
        let (grants, scopes) = policy();
        let p = Policy {
            allowed_grant_types: &grants,
            allowed_scopes: &scopes,
        };
        let update = |body: Value| parse(body.to_string().as_bytes(), &p, RequestKind::Update);
        let e = update(json!({"redirect_uris": ["https://rp.example.com/cb"]})).unwrap_err();
        assert!(e.description.starts_with("client_id"), "{e}");
        for field in SERVER_FIELDS {
            let mut body = json!({"client_id": "abc"});
            body[field] = json!("x");
            let e = update(body).unwrap_err();
            assert!(e.description.starts_with(field), "{e}");
        }
        let ok = update(json!({"client_id": "abc", "client_secret": "s", "grant_types": ["client_credentials"]})).unwrap();
        assert_eq!(ok.client_id.as_deref(), Some("abc"));
        assert_eq!(ok.client_secret.as_deref(), Some("s"));
    }

    #[test]
    fn the_client_information_response_carries_everything_registered() {
        let c = validated(json!({
            "redirect_uris": ["https://rp.example.com/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Agent",
            "logo_uri": "https://rp.example.com/logo.png",
            "scope": "openid offline_access",
        }))
        .unwrap();
        let info = client_information(
            &c,
            &Issued {
                client_secret: Some("s3cret"),
                registration_access_token: "rat",
                registration_client_uri: "https://id.example.com/connect/register/x",
            },
        );
        assert_eq!(info["client_id"], c.id);
        assert_eq!(info["client_secret"], "s3cret");
        assert_eq!(info["client_secret_expires_at"], 0);
        assert_eq!(info["client_id_issued_at"], 100);
        assert_eq!(info["response_types"], json!(["code"]));
        assert_eq!(
            info["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(info["logo_uri"], "https://rp.example.com/logo.png");
        assert_eq!(info["registration_access_token"], "rat");
        assert_eq!(info["scope"], "offline_access openid");
        assert!(info.get("jwks").is_none() && info.get("jwks_uri").is_none());
    }
}
