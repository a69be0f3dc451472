//! A software passkey for tests over HTTP: webauthn-authenticator-rs's `SoftPasskey`, made
//! resident the way platform authenticators and password managers keep passkeys, so it also
//! answers a passwordless (empty allow-list) request. It speaks the JSON the browser script
//! reads from our pages and posts back.

use serde_json::Value;
use url::Url;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::{AuthenticatorBackendHashedClientData, WebauthnAuthenticator};
use webauthn_rs_proto::{
    AllowCredentials, CreationChallengeResponse, CredProps, PublicKeyCredential,
    PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions,
    RegisterPublicKeyCredential, RequestChallengeResponse,
};

/// One authenticator holding any number of discoverable credentials.
pub struct ResidentPasskey {
    inner: SoftPasskey,
    /// (RP ID, credential id, user handle) of each credential made.
    resident: Vec<(String, Vec<u8>, Vec<u8>)>,
}

impl ResidentPasskey {
    /// A device-bound key that performs user verification (it claims to: it has no PIN).
    pub fn new() -> Self {
        ResidentPasskey {
            inner: SoftPasskey::new(true),
            resident: Vec::new(),
        }
    }

    /// What `navigator.credentials.create(options)` on `origin` makes the script post, as text.
    pub fn create(&mut self, origin: &Url, options: &Value) -> String {
        let options: CreationChallengeResponse =
            serde_json::from_value(options.clone()).expect("creation options");
        let credential = self
            .do_registration(origin.clone(), options)
            .expect("the software passkey registers");
        serde_json::to_string(&credential).unwrap()
    }

    /// What `navigator.credentials.get(options)` on `origin` makes the script post, as text.
    pub fn get(&mut self, origin: &Url, options: &Value) -> String {
        let options: RequestChallengeResponse =
            serde_json::from_value(options.clone()).expect("request options");
        let credential = self
            .do_authentication(origin.clone(), options)
            .expect("the software passkey signs");
        serde_json::to_string(&credential).unwrap()
    }
}

impl AuthenticatorBackendHashedClientData for ResidentPasskey {
    fn perform_register(
        &mut self,
        client_data_hash: Vec<u8>,
        options: PublicKeyCredentialCreationOptions,
        timeout_ms: u32,
    ) -> Result<RegisterPublicKeyCredential, WebauthnCError> {
        let rp_id = options.rp.id.clone();
        let user_handle = options.user.id.clone();
        let mut credential = self
            .inner
            .perform_register(client_data_hash, options, timeout_ms)?;
        self.resident
            .push((rp_id, credential.raw_id.clone(), user_handle));
        credential.extensions.cred_props = Some(CredProps { rk: Some(true) });
        Ok(credential)
    }

    fn perform_auth(
        &mut self,
        client_data_hash: Vec<u8>,
        mut options: PublicKeyCredentialRequestOptions,
        timeout_ms: u32,
    ) -> Result<PublicKeyCredential, WebauthnCError> {
        // A discoverable request: the authenticator picks its newest credential for the RP.
        if options.allow_credentials.is_empty() {
            let (_, id, _) = self
                .resident
                .iter()
                .rev()
                .find(|(rp_id, ..)| *rp_id == options.rp_id)
                .ok_or(WebauthnCError::NoSelectedToken)?;
            options.allow_credentials = vec![AllowCredentials {
                type_: "public-key".into(),
                id: id.clone(),
                transports: None,
            }];
        }
        let mut assertion = self
            .inner
            .perform_auth(client_data_hash, options, timeout_ms)?;
        // CTAP2 authenticatorGetAssertion returns the user handle of a resident credential.
        assertion.response.user_handle = self
            .resident
            .iter()
            .find(|(_, id, _)| *id == assertion.raw_id)
            .map(|(.., user)| user.clone());
        Ok(assertion)
    }
}

/// The options a page embeds in `<script type="application/json" id="webauthn-options">`.
pub fn embedded_options(html: &str) -> Value {
    let start = html
        .split("id=\"webauthn-options\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no passkey options on the page: {html}"));
    let json = start.split("</script>").next().unwrap();
    serde_json::from_str(json).expect("the embedded options are JSON")
}
