//! Redirect URIs as registered by clients (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §2.1).

use std::fmt;

use url::{Host, Url};

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

/// RFC 6749 §3.1.2.3 / RFC 9700 §4.1.3: exact string comparison, except that a loopback
/// redirect URI may use any port (RFC 8252 §7.3), since native apps bind an ephemeral one.
pub fn matches_registered(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(mut r), Ok(mut p)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    if r.scheme() != "http" || p.scheme() != "http" || !is_loopback(&r) || !is_loopback(&p) {
        return false;
    }
    if r.host() != p.host() {
        return false;
    }
    let _ = r.set_port(None);
    let _ = p.set_port(None);
    r == p && !presented.contains('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        assert!(matches_registered(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!matches_registered(
            "https://a.example/cb",
            "https://a.example/cb/"
        ));
        assert!(!matches_registered(
            "https://a.example/cb",
            "https://a.example/cb?x=1"
        ));
        assert!(!matches_registered(
            "https://a.example/cb",
            "https://A.example/cb"
        ));
        assert!(matches_registered(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51004/cb"
        ));
        assert!(matches_registered(
            "http://localhost:3000/cb",
            "http://localhost:4000/cb"
        ));
        assert!(!matches_registered(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/other"
        ));
        assert!(!matches_registered(
            "http://127.0.0.1/cb",
            "http://localhost:5/cb"
        ));
        assert!(!matches_registered(
            "https://a.example:443/cb",
            "https://a.example:8443/cb"
        ));
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
