//! What a browser does: the authorization request, each server's sign-in pages, the code
//! exchange; and the tokens the read and refresh scenarios start from.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::browser::Browser;
use crate::{node_peer, Flavor, Seed, PASSWORD, REDIRECT_URI, VERIFIER};

pub(crate) fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

pub(crate) fn form_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag = &html[at..at + html[at..].find('>')?];
    let v = tag.find("value=\"")? + 7;
    let raw = &tag[v..v + tag[v..].find('"')?];
    Some(
        raw.replace("&#38;", "&")
            .replace("&amp;", "&")
            .replace("&#x2f;", "/"),
    )
}

pub(crate) fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn location(resp: &reqwest::Response) -> Option<String> {
    let raw = resp.headers().get("location")?.to_str().ok()?;
    let absolute = resp.url().join(raw).ok()?;
    Some(absolute.into())
}

/// The authorization request both servers get. node-oidc-provider also gets `prompt=consent`:
/// it follows OIDC Core §11 and drops `offline_access` (so issues no refresh token) without
/// it; its sign-in page grants the consent in the same step, so no page is added.
pub(crate) fn authorize_url(seed: &Seed) -> Result<url::Url, String> {
    let mut url = url::Url::parse(&seed.endpoints.authorize).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("client_id", &seed.client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email offline_access")
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge())
        .append_pair("code_challenge_method", "S256");
    if seed.flavor == Flavor::NodeOidcProvider {
        url.query_pairs_mut().append_pair("prompt", "consent");
    }
    Ok(url)
}

/// Portcullis: the authorization response is the login form; posting it redirects back.
pub(crate) async fn portcullis_sign_in(
    b: &Browser,
    seed: &Seed,
    authorize: reqwest::Response,
) -> Result<String, String> {
    let html = authorize.text().await.map_err(|e| e.to_string())?;
    let csrf = form_value(&html, "csrf").ok_or("no login form")?;
    let return_to = form_value(&html, "return_to").ok_or("no return_to")?;
    let resp = b
        .send(b.post(&format!("{}/login", seed.base)).form(&[
            ("csrf", csrf.as_str()),
            ("return_to", return_to.as_str()),
            ("username", seed.email.as_str()),
            ("password", PASSWORD),
        ]))
        .await?;
    location(&resp).ok_or_else(|| "login did not redirect".into())
}

/// Authorization request and sign-in: answers where the server sends the browser next.
pub(crate) async fn authorize_and_sign_in(b: &Browser, seed: &Seed) -> Result<String, String> {
    let url = authorize_url(seed)?;
    let resp = b.send(b.get(url.as_str())).await?;
    match seed.flavor {
        Flavor::Portcullis => portcullis_sign_in(b, seed, resp).await,
        Flavor::NodeOidcProvider => node_peer::sign_in(b, seed, resp).await,
    }
}

/// One full sign-in: authorize → sign-in page → (first-party: no consent) → token.
pub(crate) async fn code_flow(seed: &Seed) -> Result<Value, String> {
    let b = Browser::new();
    let mut next = authorize_and_sign_in(&b, seed).await?;
    for _ in 0..3 {
        if next.starts_with(REDIRECT_URI) {
            break;
        }
        let r = b.send(b.get(&next)).await?;
        next = location(&r).ok_or("authorize did not redirect")?;
    }
    let code = query(&next, "code").ok_or("no code")?;
    let tokens: Value = b
        .send(
            b.post(&seed.endpoints.token)
                .basic_auth(&seed.client_id, Some(&seed.secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT_URI),
                    ("code_verifier", VERIFIER),
                ]),
        )
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if tokens.get("access_token").is_none() {
        return Err(format!("token exchange failed: {tokens}"));
    }
    Ok(tokens)
}

/// One password sign-in without the token exchange. Portcullis: `GET /login` + `POST /login`.
/// node-oidc-provider has no sign-in outside an authorization request, so: authorize, the
/// sign-in page, the password form (three requests).
pub(crate) async fn password_login(seed: &Seed) -> bool {
    let b = Browser::new();
    match seed.flavor {
        Flavor::Portcullis => async {
            let login = format!("{}/login", seed.base);
            let html = b.send(b.get(&login)).await.ok()?.text().await.ok()?;
            let csrf = form_value(&html, "csrf")?;
            let r = b
                .send(b.post(&login).form(&[
                    ("csrf", csrf.as_str()),
                    ("return_to", ""),
                    ("username", seed.email.as_str()),
                    ("password", PASSWORD),
                ]))
                .await
                .ok()?;
            Some(r.status().is_success())
        }
        .await
        .unwrap_or(false),
        Flavor::NodeOidcProvider => authorize_and_sign_in(&b, seed).await.is_ok(),
    }
}

/// Tokens the read and refresh scenarios start from, obtained through the real code flow:
/// a refresh-token family per worker (each token is used once) and one access token.
pub(crate) struct Tokens {
    pub(crate) families: Vec<String>,
    pub(crate) access: String,
}

pub(crate) async fn sign_in_tokens(seed: &Seed, workers: usize) -> Result<Tokens, String> {
    let mut families = Vec::new();
    for _ in 0..workers {
        let tokens = code_flow(seed).await?;
        let refresh = tokens["refresh_token"]
            .as_str()
            .ok_or("the code flow issued no refresh token")?;
        families.push(refresh.to_string());
    }
    let access = code_flow(seed).await?["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Tokens { families, access })
}
