//! The authorization endpoint's input: a raw query string, parsed strictly and then checked
//! against one registered confidential client.
//!
//! Properties checked besides "no panic":
//! - `Params::to_query` re-parses to the same parameters (the login and consent pages carry
//!   the request along as `/authorize?{to_query}` and parse it again on the way back);
//! - a request that validates names the fixed client and one of its registered redirect URIs,
//!   and an error that goes back to the client goes only to a registered redirect URI;
//! - without a client, nothing validates.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::OAuthSettings;
use portcullis::protocol::authorize;
use portcullis::protocol::params::Params;
use portcullis::store::Client;

const REDIRECT_URI: &str = "https://rp.example.com/cb";

fn client() -> Client {
    Client {
        id: "c1".to_string(),
        name: "Fuzz RP".to_string(),
        secret_hash: None,
        redirect_uris: vec![REDIRECT_URI.to_string()],
        post_logout_redirect_uris: Vec::new(),
        grant_types: vec!["authorization_code".to_string()],
        scope: "openid profile email".to_string(),
        token_endpoint_auth_method: "client_secret_basic".to_string(),
        first_party: false,
        id_token_signed_response_alg: None,
        access_token_signed_response_alg: None,
        always_issue_refresh_token: false,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        jwks: None,
        jwks_uri: None,
        created_at: 0,
        updated_at: 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(params) = Params::parse(data) else {
        return;
    };

    let query = params.to_query();
    let reparsed = Params::parse(query.as_bytes());
    assert_eq!(
        reparsed.as_ref(),
        Ok(&params),
        "to_query() did not round-trip: {query:?}"
    );

    let client = client();
    let settings = OAuthSettings::default();
    let registered = |uri: &str| client.redirect_uris.iter().any(|r| r == uri);
    match authorize::validate(&params, Some(&client), &settings) {
        Ok(request) => {
            assert_eq!(request.client_id, client.id);
            assert!(
                registered(&request.target.redirect_uri),
                "validated redirect_uri {:?} is not registered",
                request.target.redirect_uri
            );
        }
        // RFC 6749 §4.1.2.1: an error may only be sent back to a registered redirect URI.
        Err(authorize::AuthorizeError::Redirect { target, .. }) => {
            assert!(
                registered(&target.redirect_uri),
                "error redirected to unregistered {:?}",
                target.redirect_uri
            );
        }
        Err(authorize::AuthorizeError::Page(_)) => {}
    }
    // Without a client the request must never validate.
    assert!(authorize::validate(&params, None, &settings).is_err());
});
