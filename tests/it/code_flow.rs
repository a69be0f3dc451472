//! Signing in through the authorization code flow, with the `openidconnect` crate as the
//! relying party: it knows nothing of Portcullis but the issuer URL.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use portcullis::clients::ClientRegistration;

use crate::common::{browser, query, Landing, TestApp, TestClient};

/// Also used by tests/it/registration.rs for a client that registered itself.
pub(crate) async fn sign_in_with_openidconnect(
    app: &TestApp,
    client: &TestClient,
    alg: CoreJwsSigningAlgorithm,
) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(client.redirect_uri.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let user = app
        .create_user("ada@example.org", "correct horse battery")
        .await;
    let back = match app
        .sign_in(&browser(), auth_url.as_str(), &user, "allow")
        .await
    {
        Landing::Client(back) => back,
        Landing::Page(status, html) => panic!("stopped at a page ({status}): {html}"),
    };
    assert!(back.as_str().starts_with(&client.redirect_uri));
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    // RFC 9207: the response names its issuer.
    assert_eq!(query(&back, "iss").as_deref(), Some(app.base.as_str()));
    let code = query(&back, "code").expect("code");

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let id_verifier = rp.id_token_verifier().set_allowed_algs(vec![alg]);
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("valid ID token");
    assert_eq!(claims.subject().as_str(), user.id.to_string());
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.org"));
    assert!(claims.auth_time().is_some());
    let at_hash = claims.access_token_hash().expect("at_hash");
    let expected = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(at_hash, &expected);

    let info: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.org"));
    assert_eq!(info.email_verified(), Some(true));

    // The access token is an RFC 9068 JWT.
    let header = josekit::jwt::decode_header(tokens.access_token().secret()).unwrap();
    assert_eq!(header.claim("typ").and_then(|v| v.as_str()), Some("at+jwt"));
}

#[tokio::test]
async fn a_confidential_client_signs_a_user_in_end_to_end() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    sign_in_with_openidconnect(&app, &client, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).await;
}

#[tokio::test]
async fn a_public_client_signs_a_user_in_with_pkce_and_its_own_algorithm() {
    let app = TestApp::spawn().await;
    let client = app
        .register_client(ClientRegistration {
            name: "Mobile".into(),
            redirect_uris: vec!["com.example.app:/oauth2redirect".into()],
            public: true,
            id_token_alg: Some("ES256".into()),
            ..Default::default()
        })
        .await;
    assert!(client.secret.is_none());
    sign_in_with_openidconnect(&app, &client, CoreJwsSigningAlgorithm::EcdsaP256Sha256).await;
}

#[tokio::test]
async fn ps256_and_eddsa_id_tokens_verify_too() {
    for (alg, expected) in [
        ("PS256", CoreJwsSigningAlgorithm::RsaSsaPssSha256),
        ("EdDSA", CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let app = TestApp::spawn().await;
        let client = app
            .register_client(ClientRegistration {
                name: "RP".into(),
                redirect_uris: vec!["https://rp.example.com/cb".into()],
                id_token_alg: Some(alg.into()),
                ..Default::default()
            })
            .await;
        sign_in_with_openidconnect(&app, &client, expected).await;
    }
}
