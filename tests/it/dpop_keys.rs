//! A client's DPoP key for the tests: EC P-256 proofs (RFC 9449 §4.2) with any field bent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jws::{JwsHeader, JwsSigner, ES256};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

pub struct DpopKey {
    signer: Box<dyn JwsSigner>,
    pub jwk: Map<String, Value>,
}

/// What a proof says; `Proof::for_request` fills the right values, a test bends one.
pub struct Proof {
    pub typ: &'static str,
    pub alg: &'static str,
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    pub jti: String,
    pub ath: Option<String>,
    pub nonce: Option<String>,
    /// Extra members put in the header's `jwk` (e.g. a private `d`).
    pub jwk_extra: Option<(String, Value)>,
    /// Claims left out.
    pub without: Vec<&'static str>,
}

impl Proof {
    pub fn for_request(method: &str, url: &str) -> Proof {
        Proof {
            typ: "dpop+jwt",
            alg: "ES256",
            htm: method.into(),
            htu: url.into(),
            iat: now(),
            jti: uuid::Uuid::new_v4().to_string(),
            ath: None,
            nonce: None,
            jwk_extra: None,
            without: vec![],
        }
    }

    /// RFC 9449 §4.2: the proof that comes with an access token carries its hash.
    pub fn with_token(mut self, token: &str) -> Proof {
        self.ath = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())));
        self
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl DpopKey {
    pub fn generate() -> DpopKey {
        let pair = ES256.generate_key_pair().unwrap();
        let public = josekit::jwk::KeyPair::to_jwk_public_key(&pair);
        let jwk = serde_json::to_value(public.as_ref())
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        let signer = ES256
            .signer_from_der(josekit::jwk::KeyPair::to_der_private_key(&pair))
            .unwrap();
        DpopKey {
            signer: Box::new(signer),
            jwk,
        }
    }

    /// RFC 7638 thumbprint of the public key.
    pub fn jkt(&self) -> String {
        let canonical = json!({
            "crv": self.jwk["crv"], "kty": self.jwk["kty"], "x": self.jwk["x"], "y": self.jwk["y"]
        });
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    pub fn sign(&self, p: &Proof) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type(p.typ);
        let mut jwk = self.jwk.clone();
        if let Some((k, v)) = &p.jwk_extra {
            jwk.insert(k.clone(), v.clone());
        }
        header.set_claim("jwk", Some(Value::Object(jwk))).unwrap();
        let mut claims = json!({
            "jti": p.jti, "htm": p.htm, "htu": p.htu, "iat": p.iat,
        });
        if let Some(ath) = &p.ath {
            claims["ath"] = json!(ath);
        }
        if let Some(nonce) = &p.nonce {
            claims["nonce"] = json!(nonce);
        }
        for name in &p.without {
            claims.as_object_mut().unwrap().remove(*name);
        }
        header.set_algorithm(p.alg);
        let payload = serde_json::to_vec(&claims).unwrap();
        if p.alg == "ES256" {
            josekit::jws::serialize_compact(&payload, &header, &*self.signer).unwrap()
        } else {
            // A proof claiming another algorithm: the signature is ES256's, the header lies.
            let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header.claims_set()).unwrap());
            let b = URL_SAFE_NO_PAD.encode(&payload);
            format!("{h}.{b}.{}", URL_SAFE_NO_PAD.encode(b"sig"))
        }
    }

    pub fn proof(&self, method: &str, url: &str) -> String {
        self.sign(&Proof::for_request(method, url))
    }
}

/// The claims of a JWT, unverified.
pub fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}
