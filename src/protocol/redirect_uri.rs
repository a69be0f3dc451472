//! Redirect URIs as registered by clients (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §2.1), and
//! how a presented one is matched (over oxide-auth's registrar URLs). No HTTP, no SQL.

use std::fmt;

use oxide_auth::primitives::registrar::{ExactUrl, IgnoreLocalPortUrl, RegisteredUrl};
use url::{Host, Url};

use crate::store::Client;

/// A redirect URI that may be registered: absolute, without a fragment, and either https,
/// http on a loopback host, or a private-use scheme of a native app (`com.example.app:/cb`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("redirect URI {0:?} is not an absolute URI (expected e.g. https://app.example.com/callback)")]
    NotAbsolute(String),
    #[error("redirect URI {0:?} has a fragment; RFC 6749 §3.1.2 forbids fragments")]
    Fragment(String),
    #[error("redirect URI {0:?} uses plain http on a non-loopback host; use https, or pass --allow-insecure-redirect for a test setup")]
    InsecureHttp(String),
    #[error("redirect URI {0:?} uses a scheme that cannot be a redirect target; use https, http on loopback, or a reverse-domain scheme such as com.example.app:/callback")]
    BadScheme(String),
    #[error("redirect URI {0:?} contains user credentials")]
    Credentials(String),
}

impl RedirectUri {
    pub fn parse(raw: &str, allow_insecure: bool) -> Result<RedirectUri, RedirectUriError> {
        let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute(raw.into()))?;
        // RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component."
        if url.fragment().is_some() || raw.contains('#') {
            return Err(RedirectUriError::Fragment(raw.into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::Credentials(raw.into()));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) || allow_insecure => {}
            "http" => return Err(RedirectUriError::InsecureHttp(raw.into())),
            // RFC 8252 §7.1: private-use schemes are reverse domain names, so contain a dot.
            s if s.contains('.') => {}
            _ => return Err(RedirectUriError::BadScheme(raw.into())),
        }
        Ok(RedirectUri(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedirectUri({})", self.0)
    }
}

/// RFC 8252 §7.3: loopback redirects use an IP literal; `localhost` is accepted as well
/// (§8.3 says "NOT RECOMMENDED", not forbidden) because development setups rely on it.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// How a presented redirect URI is compared with a registered one, decided by the kind of
/// client (RFC 9700 §2.1: port variation is for "localhost redirection URIs of native apps").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectMatching {
    /// RFC 6749 §3.1.2.3 / RFC 9700 §4.1.3: simple string comparison, nothing else.
    Exact,
    /// RFC 8252 §7.3: a native app's http loopback redirect URI matches on any port, since
    /// the app binds an ephemeral one; every other URI is still compared exactly.
    LoopbackAnyPort,
}

impl RedirectMatching {
    /// RFC 9700 §2.1: only a public (native) client may vary the port; a confidential web
    /// client's code on another port could go to any process on the host.
    pub fn for_client(client: &Client) -> RedirectMatching {
        if client.is_public() {
            RedirectMatching::LoopbackAnyPort
        } else {
            RedirectMatching::Exact
        }
    }
}

/// Whether `presented` names the `registered` redirect URI under `matching`.
pub fn matches_registered(matching: RedirectMatching, registered: &str, presented: &str) -> bool {
    // RFC 6749 §3.1.2: a redirection endpoint never has a fragment, whatever was stored.
    if presented.contains('#') {
        return false;
    }
    let (Ok(registered_url), Ok(presented_url)) = (
        ExactUrl::new(registered.to_string()),
        ExactUrl::new(presented.to_string()),
    ) else {
        return false;
    };
    if RegisteredUrl::Exact(registered_url) == presented_url {
        return true;
    }
    match matching {
        RedirectMatching::Exact => false,
        RedirectMatching::LoopbackAnyPort => loopback_any_port(registered, presented),
    }
}

/// RFC 8252 §7.3: same http loopback URI but for the port.
fn loopback_any_port(registered: &str, presented: &str) -> bool {
    let (Ok(r), Ok(p)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    // §7.3 is about http loopback listeners; https://localhost and app schemes stay exact.
    if r.scheme() != "http" || p.scheme() != "http" || !is_loopback(&r) || r.host() != p.host() {
        return false;
    }
    match r.host() {
        Some(Host::Domain(_)) => {
            let (Ok(r), Ok(p)) = (
                IgnoreLocalPortUrl::new(registered),
                IgnoreLocalPortUrl::new(presented),
            ) else {
                return false;
            };
            RegisteredUrl::IgnorePortOnLocalhost(r) == p
        }
        // Ours: oxide-auth treats IP literals as non-local, yet RFC 8252 §7.3 recommends them
        // and requires any port for them.
        _ => {
            let (mut r, mut p) = (r, p);
            let _ = r.set_port(None);
            let _ = p.set_port(None);
            r == p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use RedirectMatching::{Exact, LoopbackAnyPort};

    #[test]
    fn non_loopback_uris_match_only_exactly_for_every_client_kind() {
        for m in [Exact, LoopbackAnyPort] {
            assert!(matches_registered(
                m,
                "https://a.example/cb",
                "https://a.example/cb"
            ));
            for other in [
                "https://a.example/cb/",
                "https://a.example/cb?x=1",
                "https://A.example/cb",
                "https://a.example:443/cb",
                "https://a.example/./cb",
            ] {
                assert!(
                    !matches_registered(m, "https://a.example/cb", other),
                    "{other}"
                );
            }
            assert!(!matches_registered(
                m,
                "https://a.example:443/cb",
                "https://a.example:8443/cb"
            ));
            assert!(!matches_registered(
                m,
                "https://localhost:3000/cb",
                "https://localhost:4000/cb"
            ));
            assert!(!matches_registered(
                m,
                "com.example.app:/cb",
                "com.example.app:/cb2"
            ));
        }
    }

    #[test]
    fn confidential_clients_get_exactly_the_registered_loopback_port() {
        assert!(matches_registered(
            Exact,
            "http://localhost:7777/cb",
            "http://localhost:7777/cb"
        ));
        for (registered, presented) in [
            ("http://localhost:7777/cb", "http://localhost:7778/cb"),
            ("http://localhost:7777/cb", "http://localhost/cb"),
            ("http://127.0.0.1:7777/cb", "http://127.0.0.1:7778/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51004/cb"),
            ("http://[::1]:7777/cb", "http://[::1]:7778/cb"),
        ] {
            assert!(
                !matches_registered(Exact, registered, presented),
                "{registered} {presented}"
            );
        }
    }

    #[test]
    fn native_clients_may_use_any_port_on_a_loopback_uri() {
        for (registered, presented) in [
            ("http://127.0.0.1/cb", "http://127.0.0.1:51004/cb"),
            ("http://127.0.0.1:7777/cb", "http://127.0.0.1:7778/cb"),
            ("http://[::1]/cb", "http://[::1]:8080/cb"),
            ("http://localhost:7777/cb", "http://localhost:7778/cb"),
            ("http://localhost:3000/cb", "http://localhost/cb"),
        ] {
            assert!(
                matches_registered(LoopbackAnyPort, registered, presented),
                "{registered} {presented}"
            );
        }
    }

    #[test]
    fn only_the_port_of_a_loopback_uri_may_vary() {
        for (registered, presented) in [
            ("http://127.0.0.1/cb", "http://127.0.0.1:5/other"),
            ("http://127.0.0.1/cb", "http://localhost:5/cb"),
            ("http://localhost/cb", "http://127.0.0.1:5/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.2:5/cb"),
            ("http://127.0.0.1/cb", "http://[::1]:5/cb"),
            ("http://localhost:7777/cb", "http://localhost:7778/cb?x=1"),
            ("http://localhost:7777/cb", "https://localhost:7778/cb"),
        ] {
            assert!(
                !matches_registered(LoopbackAnyPort, registered, presented),
                "{registered} {presented}"
            );
        }
    }

    #[test]
    fn a_presented_uri_with_a_fragment_never_matches() {
        for m in [Exact, LoopbackAnyPort] {
            assert!(!matches_registered(
                m,
                "http://localhost:7777/cb",
                "http://localhost:7778/cb#x"
            ));
            assert!(!matches_registered(
                m,
                "http://127.0.0.1/cb",
                "http://127.0.0.1:80/cb#"
            ));
            // Even a stored URI with a fragment (refused at registration) is not matched.
            assert!(!matches_registered(
                m,
                "https://a.example/cb#x",
                "https://a.example/cb#x"
            ));
        }
    }

    #[test]
    fn accepts_https_loopback_http_and_native_schemes() {
        for ok in [
            "https://app.example.com/cb",
            "http://localhost:3000/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(RedirectUri::parse(ok, false).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_could_leak_a_code() {
        use RedirectUriError::*;
        type Expect = fn(String) -> RedirectUriError;
        let cases: [(&str, Expect); 6] = [
            ("/cb", NotAbsolute),
            ("https://app.example.com/cb#x", Fragment),
            ("https://app.example.com/cb#", Fragment),
            ("http://app.example.com/cb", InsecureHttp),
            ("javascript:alert(1)", BadScheme),
            ("https://u:p@app.example.com/cb", Credentials),
        ];
        for (raw, err) in cases {
            assert_eq!(RedirectUri::parse(raw, false).unwrap_err(), err(raw.into()));
        }
        assert!(RedirectUri::parse("http://app.example.com/cb", true).is_ok());
    }
}
