//! Pushed authorization requests (RFC 9126): what `POST /par` accepts and keeps, the form of
//! a `request_uri`, and how `/authorize` treats one. Pure: no SQL, no HTTP types; the
//! authorization request itself is checked by `authorize::validate`, the one set of rules.

use std::fmt;

use crate::config::{OAuthSettings, ParSettings};
use crate::protocol::authorize::{self, AuthorizeError, Prompt};
use crate::protocol::error::{ErrorCode, OAuthError};
use crate::protocol::params::Params;
use crate::random;
use crate::store::{Client, PushedRequest, Timestamp};

/// RFC 9126 §2.2: a request URI is a URN under this prefix (IANA, RFC 9126 §7.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// 256 bits: the URI is a bearer reference to the request until it is spent.
const RANDOM_BYTES: usize = 32;
/// The length of [`RANDOM_BYTES`] in base64url without padding.
const RANDOM_CHARS: usize = 43;

/// RFC 9126 §2.1: parameters that only authenticate the client ("not germane to the
/// authorization request itself"): relied upon at `/par`, never stored.
const CLIENT_AUTH_PARAMS: [&str; 3] =
    ["client_secret", "client_assertion", "client_assertion_type"];

/// A fresh request URI; `Debug` never shows it.
pub struct NewRequestUri {
    /// `urn:ietf:params:oauth:request_uri:<random>`, returned to the client once.
    pub uri: String,
    /// The SHA-256 of the random part: all the database keeps.
    pub hash: String,
}

impl fmt::Debug for NewRequestUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewRequestUri([REDACTED])")
    }
}

impl NewRequestUri {
    pub fn generate() -> NewRequestUri {
        let random = random::token(RANDOM_BYTES);
        NewRequestUri {
            hash: random::hash_secret(&random),
            uri: format!("{REQUEST_URI_PREFIX}{random}"),
        }
    }
}

/// The stored hash of `uri`, when it has the form this server issues; `None` for anything
/// else (it then names no pushed request).
pub fn request_uri_hash(uri: &str) -> Option<String> {
    let random = uri.strip_prefix(REQUEST_URI_PREFIX)?;
    let well_formed = random.len() == RANDOM_CHARS
        && random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| random::hash_secret(random))
}

/// Checks a request pushed by the authenticated `client` and returns the parameters to keep.
///
/// RFC 9126 §2.1: `request_uri` must not be pushed, `client_id` is required (and is the
/// authenticated client's), the credentials are not part of the request. Then the same
/// validation as `/authorize`. RFC 9126 §2.3: errors are token-endpoint JSON; where RFC 6749
/// §4.1.2.1 forbids a redirect and so defines no code (a missing, unregistered or
/// mismatching redirect URI), `invalid_request` is the code.
pub fn accept(
    params: &Params,
    client: &Client,
    settings: &OAuthSettings,
) -> Result<Params, OAuthError> {
    if params.contains("request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri must not be sent to the pushed authorization request endpoint \
             (RFC 9126 §2.1)",
        ));
    }
    match params.get("client_id") {
        None => {
            return Err(OAuthError::invalid_request(
                "client_id is missing; a pushed authorization request requires it \
                 (RFC 9126 §2.1)",
            ))
        }
        Some(id) if id != client.id => {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            ))
        }
        Some(_) => {}
    }
    let mut pushed = params.clone();
    for name in CLIENT_AUTH_PARAMS {
        pushed.set(name, None);
    }
    authorize::validate(&pushed, Some(client), settings).map_err(|e| match e {
        AuthorizeError::Page(message) => OAuthError::invalid_request(message),
        AuthorizeError::Redirect { error, .. } => error,
    })?;
    Ok(pushed)
}

/// RFC 9126 §4 and §5/§6 `require_pushed_authorization_requests`: the server's policy or the
/// client's registration says this client's requests must come through `/par`.
pub fn must_push(client: &Client, settings: &ParSettings) -> bool {
    settings.require || client.require_par
}

/// RFC 9126 §4: the refusal of a plain authorization request when PAR is required.
pub fn push_required() -> OAuthError {
    OAuthError::invalid_request(
        "this client must use pushed authorization requests (RFC 9126): POST the request to \
         the pushed_authorization_request_endpoint and send only client_id and request_uri here",
    )
}

/// What a found pushed request is good for at `/authorize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Usable,
    /// RFC 9126 §4: "An expired request_uri MUST be rejected as invalid."
    Expired,
    /// A code was issued from it: it never yields another.
    Consumed,
}

impl Standing {
    /// Matches the adapter's conditional updates: usable while `now < expires_at`.
    pub fn of(request: &PushedRequest, now: Timestamp) -> Standing {
        if request.consumed_at.is_some() {
            Standing::Consumed
        } else if now >= request.expires_at {
            Standing::Expired
        } else {
            Standing::Usable
        }
    }

    /// The label of the `portcullis_par_request_uris_total` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Usable => "usable",
            Standing::Expired => "expired",
            Standing::Consumed => "reused",
        }
    }

    /// RFC 9101 §6.2 `invalid_request_uri`, for a request URI that names a request of this
    /// client that can no longer be used.
    pub fn error(self) -> OAuthError {
        let description = match self {
            Standing::Usable => "the request_uri cannot be used",
            Standing::Expired => "the request_uri has expired; push the request again",
            Standing::Consumed => "the request_uri was already used; push a new request",
        };
        OAuthError::new(ErrorCode::InvalidRequestUri, description)
    }
}

/// `prompt=login` and `prompt=consent` of a pushed request, once the user has answered them.
///
/// A plain request is resumed with the answered prompt removed from its query, but a pushed
/// request's parameters are the client's alone (RFC 9126 §4: the query cannot change them), so
/// the answer is read from the server's own records instead: a sign-in (`auth_time`) or a
/// consent saved at or after the moment the request was pushed.
pub fn settle_prompt(
    prompt: &mut Prompt,
    pushed_at: Timestamp,
    signed_in_at: Option<Timestamp>,
    consented_at: Option<Timestamp>,
) {
    if signed_in_at.is_some_and(|t| t >= pushed_at) {
        prompt.login = false;
    }
    if consented_at.is_some_and(|t| t >= pushed_at) {
        prompt.consent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let reg = crate::clients::ClientRegistration {
            name: "c".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            ..Default::default()
        };
        let mut c = crate::clients::prepare(&reg, 1000).unwrap().client;
        c.id = "rp".into();
        c
    }

    fn pushed(extra: &str) -> Params {
        let base = "client_id=rp&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Frp.\
                    example.com%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
                    &code_challenge_method=S256";
        Params::parse(format!("{base}{extra}").as_bytes()).unwrap()
    }

    #[test]
    fn a_request_uri_is_a_urn_whose_random_part_alone_is_hashed() {
        let fresh = NewRequestUri::generate();
        assert!(fresh.uri.starts_with(REQUEST_URI_PREFIX));
        assert_eq!(request_uri_hash(&fresh.uri), Some(fresh.hash.clone()));
        assert!(!format!("{fresh:?}").contains(&fresh.uri[REQUEST_URI_PREFIX.len()..]));
        let random = &fresh.uri[REQUEST_URI_PREFIX.len()..];
        for bad in [
            random.to_string(),
            format!("urn:example:{random}"),
            format!("{REQUEST_URI_PREFIX}{random}x"),
            format!("{REQUEST_URI_PREFIX}{}", &random[1..]),
            format!("{REQUEST_URI_PREFIX}{}!", &random[1..]),
            String::new(),
        ] {
            assert_eq!(request_uri_hash(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pushed_request_keeps_no_credentials_and_may_not_carry_a_request_uri() {
        let kept = accept(
            &pushed("&client_secret=s3cret"),
            &client(),
            &Default::default(),
        )
        .expect("accepted");
        assert_eq!(kept.get("client_secret"), None);
        assert_eq!(kept.get("scope"), Some("openid"));

        let e = accept(
            &pushed("&request_uri=urn%3Ax"),
            &client(),
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("§2.1"), "{}", e.description);
    }

    #[test]
    fn a_pushed_request_is_validated_like_an_authorization_request() {
        let settings = OAuthSettings::default();
        // A redirect URI that /authorize would not redirect to: invalid_request (§2.3).
        let e = accept(
            &Params::parse(b"client_id=rp&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fevil.example%2Fcb")
                .unwrap(),
            &client(),
            &settings,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = accept(
            &Params::parse(
                pushed("")
                    .to_query()
                    .replace("scope=openid", "scope=openid+admin")
                    .as_bytes(),
            )
            .unwrap(),
            &client(),
            &settings,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        let e = accept(&pushed("&request=eyJ"), &client(), &settings).unwrap_err();
        assert_eq!(e.code, ErrorCode::RequestNotSupported);
        let mut other = client();
        other.id = "other".into();
        let e = accept(&pushed(""), &other, &settings).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = accept(
            &Params::parse(b"response_type=code").unwrap(),
            &client(),
            &settings,
        )
        .unwrap_err();
        assert!(e.description.contains("client_id"), "{}", e.description);
    }

    #[test]
    fn par_is_required_by_the_server_or_by_the_client() {
        let mut c = client();
        let mut s = ParSettings::default();
        assert!(!must_push(&c, &s));
        c.require_par = true;
        assert!(must_push(&c, &s));
        c.require_par = false;
        s.require = true;
        assert!(must_push(&c, &s));
    }

    #[test]
    fn standing_follows_expiry_and_consumption() {
        let mut r = PushedRequest {
            uri_hash: "h".into(),
            client_id: "rp".into(),
            params: String::new(),
            created_at: 100,
            expires_at: 160,
            opened_at: None,
            consumed_at: None,
        };
        assert_eq!(Standing::of(&r, 159), Standing::Usable);
        assert_eq!(Standing::of(&r, 160), Standing::Expired);
        r.consumed_at = Some(150);
        assert_eq!(Standing::of(&r, 155), Standing::Consumed);
        assert_eq!(
            Standing::Consumed.error().code,
            ErrorCode::InvalidRequestUri
        );
    }

    #[test]
    fn answered_prompts_are_those_answered_after_the_push() {
        let mut p = Prompt {
            none: false,
            login: true,
            consent: true,
        };
        settle_prompt(&mut p, 100, Some(99), Some(50));
        assert!(
            p.login && p.consent,
            "answers from before the push do not count"
        );
        settle_prompt(&mut p, 100, Some(100), None);
        assert!(!p.login && p.consent);
        settle_prompt(&mut p, 100, None, Some(120));
        assert!(!p.consent);
    }
}
