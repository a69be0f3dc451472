//! Ceremonies against webauthn-authenticator-rs's software passkey, driven through the same
//! JSON the browser script sees and sends.

use super::*;
use std::slice::from_ref;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::{AuthenticatorBackendHashedClientData, WebauthnAuthenticator};
use webauthn_rs_proto::{
    AllowCredentials, CreationChallengeResponse, CredProps, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions, RequestChallengeResponse,
};

fn relying_party() -> Passkeys {
    let issuer = Url::parse("https://id.example.com/realm").unwrap();
    Passkeys::for_issuer(&issuer, "Portcullis").unwrap()
}

fn origin() -> Url {
    Url::parse("https://id.example.com").unwrap()
}

/// A software passkey that can do user verification (it only claims it: there is no PIN).
fn device_bound() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// What `navigator.credentials.create` would post back, as JSON text.
fn create(authenticator: &mut impl WebauthnAuthenticator, from: &Url, options: &Value) -> String {
    let options: CreationChallengeResponse = serde_json::from_value(options.clone()).unwrap();
    let credential = authenticator
        .do_registration(from.clone(), options)
        .unwrap();
    serde_json::to_string(&credential).unwrap()
}

/// What `navigator.credentials.get` would post back, as JSON text.
fn get(authenticator: &mut impl WebauthnAuthenticator, from: &Url, options: &Value) -> String {
    let options: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
    let credential = authenticator
        .do_authentication(from.clone(), options)
        .unwrap();
    serde_json::to_string(&credential).unwrap()
}

fn register(
    rp: &Passkeys,
    authenticator: &mut impl WebauthnAuthenticator,
    user: Uuid,
) -> StoredPasskey {
    let (options, state) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let response = create(authenticator, &origin(), &options);
    rp.finish_registration(user, &state, &response).unwrap()
}

/// The software passkey made resident, as platform authenticators and password managers keep
/// passkeys: it remembers each credential's user handle, answers an empty allow-list with its
/// credential for the RP, and returns the user handle with it, as CTAP2 authenticatorGetAssertion
/// does for a discoverable credential.
#[derive(Default)]
struct ResidentPasskey {
    inner: SoftPasskey,
    /// (RP ID, credential id, user handle)
    resident: Vec<(String, Vec<u8>, Vec<u8>)>,
}

impl ResidentPasskey {
    fn new() -> Self {
        ResidentPasskey {
            inner: device_bound(),
            resident: Vec::new(),
        }
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
        let mut credential = AuthenticatorBackendHashedClientData::perform_register(
            &mut self.inner,
            client_data_hash,
            options,
            timeout_ms,
        )?;
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
        if options.allow_credentials.is_empty() {
            let (_, id, _) = self
                .resident
                .iter()
                .find(|(rp_id, ..)| *rp_id == options.rp_id)
                .ok_or(WebauthnCError::NoSelectedToken)?;
            options.allow_credentials = vec![AllowCredentials {
                type_: "public-key".into(),
                id: id.clone(),
                transports: None,
            }];
        }
        let mut assertion = AuthenticatorBackendHashedClientData::perform_auth(
            &mut self.inner,
            client_data_hash,
            options,
            timeout_ms,
        )?;
        assertion.response.user_handle = self
            .resident
            .iter()
            .find(|(_, id, _)| *id == assertion.raw_id)
            .map(|(.., user)| user.clone());
        Ok(assertion)
    }
}

/// Rewrites one base64url field of a response with `change`, keeping the rest.
fn tampered(response: &str, pointer: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut json: Value = serde_json::from_str(response).unwrap();
    let field = json.pointer_mut(pointer).unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(field.as_str().unwrap()).unwrap();
    change(&mut bytes);
    *field = URL_SAFE_NO_PAD.encode(&bytes).into();
    json.to_string()
}

#[test]
fn registration_options_ask_for_a_verified_discoverable_passkey() {
    let user = Uuid::new_v4();
    let (options, _) = relying_party()
        .start_registration(user, "ada@example.org", "", &[])
        .unwrap();
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rp"]["id"], "id.example.com");
    assert_eq!(public_key["rp"]["name"], "Portcullis");
    assert_eq!(
        public_key["user"]["id"],
        URL_SAFE_NO_PAD.encode(user.as_bytes())
    );
    assert_eq!(public_key["user"]["name"], "ada@example.org");
    assert_eq!(
        public_key["user"]["displayName"], "ada@example.org",
        "an empty display name falls back to the email"
    );
    assert!(public_key["challenge"].as_str().unwrap().len() >= 43);
    let selection = &public_key["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "preferred");
    assert_eq!(selection["requireResidentKey"], false);
    assert_eq!(selection["userVerification"], "required");
    assert_eq!(public_key["timeout"], 300_000);
}

#[test]
fn registered_passkey_verifies_as_a_second_factor() {
    let rp = relying_party();
    let mut authenticator = device_bound();
    let user = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, user);
    assert!(
        !passkey.backup_eligible,
        "the software passkey is device-bound"
    );

    let (options, state) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    assert_eq!(
        options["publicKey"]["allowCredentials"][0]["id"],
        passkey.credential_id.as_str()
    );
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let response = get(&mut authenticator, &origin(), &options);
    let used = rp
        .finish_authentication(user, &state, &response, from_ref(&passkey))
        .unwrap();

    assert_eq!(used.credential_id, passkey.credential_id);
    assert!(used.user_verified);
    assert_eq!(used.amr(), "hwk");
    let updated = used
        .updated
        .expect("the signature counter moved from 0 to 1");
    assert_eq!(updated.credential_id, passkey.credential_id);
    assert_ne!(updated.data, passkey.data);
}

#[test]
fn discoverable_passkey_signs_in_without_a_password() {
    let rp = relying_party();
    let mut authenticator = ResidentPasskey::new();
    let user = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, user);

    let (options, state) = rp.start_discoverable().unwrap();
    assert_eq!(
        options["publicKey"]["allowCredentials"],
        serde_json::json!([])
    );
    assert_eq!(options["mediation"], "conditional");
    let response = get(&mut authenticator, &origin(), &options);

    let (claimed, credential_id) = rp.identify(&response).unwrap();
    assert_eq!(claimed, user, "the user handle is our user id");
    assert_eq!(credential_id, passkey.credential_id);
    let used = rp
        .finish_discoverable(&state, &response, user, &passkey)
        .unwrap();
    assert_eq!(used.credential_id, passkey.credential_id);
    assert!(used.user_verified);
}

#[test]
fn a_user_handle_naming_someone_else_is_refused() {
    let rp = relying_party();
    let mut authenticator = ResidentPasskey::new();
    let owner = Uuid::new_v4();
    let victim = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, owner);

    // The user handle is not signed: a page script can claim any account with its own passkey.
    let (options, state) = rp.start_discoverable().unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    let claiming_victim = tampered(&response, "/response/userHandle", |handle| {
        *handle = victim.as_bytes().to_vec()
    });
    assert_eq!(rp.identify(&claiming_victim).unwrap().0, victim);
    assert!(matches!(
        rp.finish_discoverable(&state, &claiming_victim, owner, &passkey),
        Err(PasskeyError::OtherUser)
    ));
    // The caller passed the wrong owner for the credential it loaded.
    assert!(matches!(
        rp.finish_discoverable(&state, &response, victim, &passkey),
        Err(PasskeyError::OtherUser)
    ));

    // As a second factor, a user handle must be the signed-in user's too.
    let (options, state) = rp.start_authentication(owner, from_ref(&passkey)).unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    let claiming_victim = tampered(&response, "/response/userHandle", |handle| {
        *handle = victim.as_bytes().to_vec()
    });
    assert!(matches!(
        rp.finish_authentication(owner, &state, &claiming_victim, from_ref(&passkey)),
        Err(PasskeyError::OtherUser)
    ));
    assert!(matches!(
        rp.finish_authentication(victim, &state, &response, from_ref(&passkey)),
        Err(PasskeyError::OtherUser)
    ));
    rp.finish_authentication(owner, &state, &response, &[passkey])
        .unwrap();
}

#[test]
fn a_discoverable_answer_without_a_user_handle_identifies_no_one() {
    let rp = relying_party();
    let mut authenticator = device_bound();
    let user = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, user);
    let (options, _) = rp.start_authentication(user, &[passkey]).unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    assert!(matches!(
        rp.identify(&response),
        Err(PasskeyError::NoUserHandle)
    ));
}

#[test]
fn a_state_only_finishes_its_own_challenge() {
    let rp = relying_party();
    let mut authenticator = device_bound();
    let user = Uuid::new_v4();

    let (options, _) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let (_, other_state) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let response = create(&mut authenticator, &origin(), &options);
    assert!(matches!(
        rp.finish_registration(user, &other_state, &response),
        Err(PasskeyError::NotVerified(
            WebauthnError::MismatchedChallenge
        ))
    ));

    let passkey = register(&rp, &mut authenticator, user);
    let (options, _) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    let (_, other_state) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    assert!(matches!(
        rp.finish_authentication(user, &other_state, &response, &[passkey]),
        Err(PasskeyError::NotVerified(
            WebauthnError::MismatchedChallenge
        ))
    ));
}

#[test]
fn an_answer_made_on_another_origin_is_refused() {
    let rp = relying_party();
    let user = Uuid::new_v4();
    // A host under the RP ID: the browser lets it use our RP ID, we must not.
    let phishing = Url::parse("https://login.id.example.com").unwrap();

    let (options, state) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let response = create(&mut device_bound(), &phishing, &options);
    assert!(matches!(
        rp.finish_registration(user, &state, &response),
        Err(PasskeyError::NotVerified(WebauthnError::InvalidRPOrigin))
    ));

    let mut authenticator = ResidentPasskey::new();
    let passkey = register(&rp, &mut authenticator, user);
    let (options, state) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    let response = get(&mut authenticator, &phishing, &options);
    assert!(matches!(
        rp.finish_authentication(user, &state, &response, from_ref(&passkey)),
        Err(PasskeyError::NotVerified(WebauthnError::InvalidRPOrigin))
    ));

    let (options, state) = rp.start_discoverable().unwrap();
    let response = get(&mut authenticator, &phishing, &options);
    assert!(matches!(
        rp.finish_discoverable(&state, &response, user, &passkey),
        Err(PasskeyError::NotVerified(WebauthnError::InvalidRPOrigin))
    ));
}

#[test]
fn a_replayed_answer_is_refused() {
    let rp = relying_party();
    let mut authenticator = device_bound();
    let user = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, user);
    let (options, state) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    let used = rp
        .finish_authentication(user, &state, &response, from_ref(&passkey))
        .unwrap();
    let passkey = used.updated.unwrap();

    // Against a fresh ceremony: the challenge differs.
    let (_, fresh) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    assert!(rp
        .finish_authentication(user, &fresh, &response, from_ref(&passkey))
        .is_err());
    // Against the same state, had the caller not consumed it: the counter did not move.
    assert!(matches!(
        rp.finish_authentication(user, &state, &response, &[passkey]),
        Err(PasskeyError::PossiblyCloned)
    ));
}

#[test]
fn state_round_trips_through_a_string_to_another_instance() {
    let user = Uuid::new_v4();
    let mut authenticator = ResidentPasskey::new();
    let (options, state) = relying_party()
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let stored_state: String = state.clone();
    let response = create(&mut authenticator, &origin(), &options);
    // Another instance, built from the same settings, finishes what the first began.
    let passkey = relying_party()
        .finish_registration(user, &stored_state, &response)
        .unwrap();

    let (options, state) = relying_party().start_discoverable().unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    relying_party()
        .finish_discoverable(&state, &response, user, &passkey)
        .unwrap();

    // A state only finishes its own kind of ceremony, for its own user.
    let rp = relying_party();
    let (_, registration) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let (_, second_factor) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    assert!(matches!(
        rp.finish_discoverable(&registration, &response, user, &passkey),
        Err(PasskeyError::UnknownCeremony)
    ));
    assert!(matches!(
        rp.finish_discoverable(&second_factor, &response, user, &passkey),
        Err(PasskeyError::UnknownCeremony)
    ));
    assert!(matches!(
        rp.finish_authentication(user, &registration, &response, from_ref(&passkey)),
        Err(PasskeyError::UnknownCeremony)
    ));
    assert!(matches!(
        rp.finish_registration(Uuid::new_v4(), &registration, &response),
        Err(PasskeyError::OtherUser)
    ));
    for garbage in [
        "",
        "{}",
        "null",
        "{\"ceremony\":\"registration\"}",
        &state[1..],
    ] {
        assert!(matches!(
            rp.finish_discoverable(garbage, &response, user, &passkey),
            Err(PasskeyError::UnknownCeremony)
        ));
    }
}

#[test]
fn garbage_answers_are_errors_not_panics() {
    let rp = relying_party();
    let mut authenticator = ResidentPasskey::new();
    let user = Uuid::new_v4();
    let (options, registration) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let created = create(&mut authenticator, &origin(), &options);
    let passkey = rp
        .finish_registration(user, &registration, &created)
        .unwrap();
    let (options, second_factor) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    let asserted = get(&mut authenticator, &origin(), &options);
    let (_, discoverable) = rp.start_discoverable().unwrap();
    let keys = [passkey.clone()];

    let huge = format!("{{\"id\":\"{}\"}}", "A".repeat(MAX_RESPONSE_BYTES));
    let mut garbage: Vec<String> = [
        "",
        "not json",
        "null",
        "[]",
        "{}",
        "\"public-key\"",
        r#"{"id":"x","rawId":"!!!","type":"public-key","response":{}}"#,
        r#"{"id":"x","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"","attestationObject":"","authenticatorData":"","signature":""}}"#,
        r#"{"id":"x","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA","authenticatorData":"AA","signature":"AA","userHandle":"AA"}}"#,
    ]
    .map(String::from)
    .into();
    garbage.push(huge);
    // Signed bytes altered one bit at a time, and cut short. (A registration's rawId is not
    // among them: the credential id is read from the signed attestation object.)
    let signed = [
        (&created, "/response/clientDataJSON"),
        (&created, "/response/attestationObject"),
        (&asserted, "/response/clientDataJSON"),
        (&asserted, "/response/authenticatorData"),
        (&asserted, "/response/signature"),
        (&asserted, "/rawId"),
    ];
    for (response, pointer) in signed {
        let json: Value = serde_json::from_str(response).unwrap();
        let field = json.pointer(pointer).and_then(Value::as_str).unwrap();
        let len = URL_SAFE_NO_PAD.decode(field).unwrap().len();
        for at in (0..len).step_by(7).chain([len - 1]) {
            garbage.push(tampered(response, pointer, |b| b[at] ^= 0x01));
        }
        garbage.push(tampered(response, pointer, |b| b.truncate(len / 2)));
        garbage.push(tampered(response, pointer, Vec::clear));
    }

    for response in &garbage {
        assert!(
            rp.finish_registration(user, &registration, response)
                .is_err(),
            "{response}"
        );
        assert!(
            rp.finish_authentication(user, &second_factor, response, &keys)
                .is_err(),
            "{response}"
        );
        assert!(
            rp.finish_discoverable(&discoverable, response, user, &passkey)
                .is_err(),
            "{response}"
        );
        let _ = rp.identify(response);
    }
    // The untouched answers still verify: the failures above were the tampering.
    rp.finish_authentication(user, &second_factor, &asserted, &keys)
        .unwrap();
}

#[test]
fn a_second_factor_needs_a_registered_passkey() {
    assert!(matches!(
        relying_party().start_authentication(Uuid::new_v4(), &[]),
        Err(PasskeyError::NoPasskeys)
    ));
    let unreadable = StoredPasskey {
        credential_id: "AAAA".into(),
        data: "{}".into(),
        backup_eligible: false,
    };
    assert!(matches!(
        relying_party().start_authentication(Uuid::new_v4(), &[unreadable]),
        Err(PasskeyError::Internal(_))
    ));
}

#[test]
fn the_relying_party_comes_from_the_issuer_or_is_given() {
    let rp = |issuer: &str| Passkeys::for_issuer(&Url::parse(issuer).unwrap(), "Portcullis");
    assert!(rp("https://id.example.com").is_ok());
    assert!(rp("https://id.example.com:8443/tenant/").is_ok());
    assert!(rp("http://localhost:8080").is_ok());
    for refused in [
        "https://127.0.0.1",
        "https://[::1]:8443",
        "http://id.example.com",
    ] {
        assert!(
            matches!(rp(refused), Err(PasskeyError::Configuration(_))),
            "{refused}"
        );
    }

    let origin = Url::parse("https://id.example.com/realm").unwrap();
    assert!(Passkeys::new("example.com", "Portcullis", &origin).is_ok());
    for refused in ["other.example", "ample.com", "login.id.example.com", ""] {
        assert!(
            matches!(
                Passkeys::new(refused, "Portcullis", &origin),
                Err(PasskeyError::Configuration(_))
            ),
            "{refused}"
        );
    }
}

#[test]
fn a_parent_domain_rp_id_serves_the_issuer_host() {
    let rp = Passkeys::new("example.com", "Portcullis", &origin()).unwrap();
    let mut authenticator = device_bound();
    let user = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, user);
    let (options, state) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    assert_eq!(options["publicKey"]["rpId"], "example.com");
    let response = get(&mut authenticator, &origin(), &options);
    rp.finish_authentication(user, &state, &response, &[passkey])
        .unwrap();
}

#[test]
fn a_synced_passkey_is_a_software_key_in_amr() {
    let used = |backup_eligible| PasskeyUse {
        credential_id: "AAAA".into(),
        user_verified: true,
        backup_eligible,
        backup_state: backup_eligible,
        updated: None,
    };
    assert_eq!(used(true).amr(), "swk");
    assert_eq!(used(false).amr(), "hwk");
}

#[test]
fn an_empty_user_handle_counts_as_none() {
    let rp = relying_party();
    let mut authenticator = device_bound();
    let user = Uuid::new_v4();
    let passkey = register(&rp, &mut authenticator, user);
    let (options, state) = rp.start_authentication(user, from_ref(&passkey)).unwrap();
    let response = get(&mut authenticator, &origin(), &options);
    let mut json: Value = serde_json::from_str(&response).unwrap();
    json["response"]["userHandle"] = "".into();
    rp.finish_authentication(user, &state, &json.to_string(), &[passkey])
        .unwrap();
}

#[test]
fn options_embedded_in_a_page_cannot_close_their_script_block() {
    let (options, _) = relying_party()
        .start_registration(
            Uuid::new_v4(),
            "ada@example.org",
            "</script><script>alert(1)</script> & co",
            &[],
        )
        .unwrap();
    let text = options_for_html(&options);
    assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'));
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, options);
}

/// The JSON that webauthn.js builds, field by field, from what the browser returns.
#[test]
fn answers_in_the_shape_the_script_sends_verify() {
    let rp = relying_party();
    let mut authenticator = ResidentPasskey::new();
    let user = Uuid::new_v4();
    let field = |json: &Value, pointer: &str| json.pointer(pointer).unwrap().clone();

    let (options, state) = rp
        .start_registration(user, "ada@example.org", "Ada", &[])
        .unwrap();
    let created: Value =
        serde_json::from_str(&create(&mut authenticator, &origin(), &options)).unwrap();
    let script = serde_json::json!({
        "id": field(&created, "/id"),
        "rawId": field(&created, "/rawId"),
        "type": "public-key",
        "response": {
            "clientDataJSON": field(&created, "/response/clientDataJSON"),
            "attestationObject": field(&created, "/response/attestationObject"),
            "transports": ["internal", "hybrid", "smart-card"],
        },
        "extensions": { "credProps": { "rk": true } },
    });
    let passkey = rp
        .finish_registration(user, &state, &script.to_string())
        .unwrap();

    let (options, state) = rp.start_discoverable().unwrap();
    let asserted: Value =
        serde_json::from_str(&get(&mut authenticator, &origin(), &options)).unwrap();
    let script = serde_json::json!({
        "id": field(&asserted, "/id"),
        "rawId": field(&asserted, "/rawId"),
        "type": "public-key",
        "response": {
            "clientDataJSON": field(&asserted, "/response/clientDataJSON"),
            "authenticatorData": field(&asserted, "/response/authenticatorData"),
            "signature": field(&asserted, "/response/signature"),
            "userHandle": field(&asserted, "/response/userHandle"),
        },
        "extensions": {},
    })
    .to_string();
    let (claimed, _) = rp.identify(&script).unwrap();
    rp.finish_discoverable(&state, &script, claimed, &passkey)
        .unwrap();
}

#[test]
fn the_browser_script_is_bundled() {
    assert!(BROWSER_SCRIPT.contains("navigator.credentials.create"));
    assert!(BROWSER_SCRIPT.contains("navigator.credentials.get"));
}
