//! The simulated browsers of the sign-in scenarios: a cookie jar per simulated user over one
//! connection pool shared by all. A reqwest client per user (what loadgen first did) reads the
//! system's CA bundle each time it is built, and that made loadgen its own bottleneck: 1.6 of
//! the 2 cores in password_login, with the server at 0.3.

use std::sync::{Mutex, OnceLock};

use reqwest::header::{COOKIE, SET_COOKIE};

fn shared() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default()
    })
}

/// Keeps the cookies it is given (one host only: attributes are ignored) and follows no
/// redirects: the scenarios look at each hop.
pub struct Browser {
    jar: Mutex<Vec<(String, String)>>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            jar: Mutex::new(Vec::new()),
        }
    }

    fn with_cookies(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let jar = self.jar.lock().map(|j| j.clone()).unwrap_or_default();
        if jar.is_empty() {
            return request;
        }
        let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        request.header(COOKIE, header.join("; "))
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_cookies(shared().get(url))
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_cookies(shared().post(url))
    }

    /// Sends `request` and keeps the cookies the answer sets (an empty value or `Max-Age=0`
    /// removes one).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let resp = request.send().await.map_err(|e| e.to_string())?;
        if let Ok(mut jar) = self.jar.lock() {
            for set in resp.headers().get_all(SET_COOKIE) {
                let Ok(set) = set.to_str() else { continue };
                let mut attrs = set.split(';');
                let Some((name, value)) = attrs.next().and_then(|nv| nv.split_once('=')) else {
                    continue;
                };
                let (name, value) = (name.trim(), value.trim());
                let gone =
                    value.is_empty() || attrs.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
                jar.retain(|(k, _)| k != name);
                if !gone {
                    jar.push((name.to_string(), value.to_string()));
                }
            }
        }
        Ok(resp)
    }
}
