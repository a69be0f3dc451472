//! The master key: AES-256-GCM sealing of private signing keys at rest.
//! Never logged, never stored in the database; from config or a 0600 file under `data/`.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// A separate key for keyed hashes, derived from the master key (never the AES key itself).
    mac_key: [u8; 32],
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::digest::KeyInit;
    use hmac::Mac;
    // RFC 2104 §2: a key shorter than the block (64 bytes) is padded with zeros.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)")]
    Malformed,
    #[error("cannot read or create the master key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("a sealed value could not be decrypted: wrong master key or corrupted data")]
    Unseal,
}

/// How the master key was obtained, so start-up can warn when it was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeySource {
    Configured,
    FileExisting,
    FileGenerated,
}

impl MasterKey {
    pub fn from_base64(encoded: &str) -> Result<MasterKey, MasterKeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| MasterKeyError::Malformed)?;
        if bytes.len() != 32 {
            return Err(MasterKeyError::Malformed);
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| MasterKeyError::Malformed)?;
        let raw: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Malformed)?;
        let mac_key = hmac(&raw, &[b"portcullis master key derivation: keyed hashes"]);
        Ok(MasterKey { cipher, mac_key })
    }

    pub fn generate_base64() -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh key when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, MasterKeySource), MasterKeyError> {
        let file_err = |reason: String| MasterKeyError::File {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_base64(&text)?, MasterKeySource::FileExisting)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| file_err(e.to_string()))?;
                }
                let encoded = Self::generate_base64();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(encoded.as_bytes())
                            .and_then(|_| file.write_all(b"\n"))
                            .map_err(|e| file_err(e.to_string()))?;
                        Ok((Self::from_base64(&encoded)?, MasterKeySource::FileGenerated))
                    }
                    // Another process created it between our read and our create: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text =
                            std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
                        Ok((Self::from_base64(&text)?, MasterKeySource::FileExisting))
                    }
                    Err(e) => Err(file_err(e.to_string())),
                }
            }
            Err(e) => Err(file_err(e.to_string())),
        }
    }

    /// HMAC-SHA256 of `message` under a key derived from the master key, separated by
    /// `purpose`: how low-entropy secrets (recovery codes) are stored, so a stolen database
    /// alone cannot be searched for them offline.
    pub fn keyed_hash(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        hmac(&self.mac_key, &[purpose.as_bytes(), &[0], message])
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. the key id) as associated data.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            // AES-GCM encryption fails only for inputs of more than 64 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(MasterKeyError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .map_err(|_| MasterKeyError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let sealed = key.seal(b"kid-1", b"secret");
        assert_eq!(key.open(b"kid-1", &sealed).unwrap(), b"secret");
        assert!(key.open(b"kid-2", &sealed).is_err());
        assert!(other.open(b"kid-1", &sealed).is_err());
        assert!(key.open(b"kid-1", &sealed[..5]).is_err());
    }

    #[test]
    fn malformed_master_keys_are_refused() {
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }
}
