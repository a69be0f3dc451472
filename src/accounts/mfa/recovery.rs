//! Recovery codes: ten at a time, shown once, each usable once. Each has 59 random bits (12
//! characters of a 31-symbol alphabet without look-alikes), and is stored as an HMAC-SHA256
//! under a key derived from the master key, salted with the user id: a stolen database alone
//! cannot be searched for codes offline (NIST SP 800-63B §5.1.2.2 asks for that below 112
//! bits), and equal codes of two users never share a hash.

use rand::Rng;

use super::{store_failed, MfaError, MfaService};
use uuid::Uuid;

use crate::accounts::service::RequestMeta;
use crate::keys::MasterKey;
use crate::store::User;

pub const COUNT: usize = 10;
/// No 0/o, 1/l/i: a code is read off paper and typed.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Ten fresh codes, as shown: `xxxx-xxxx-xxxx`.
pub(super) fn generate() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..COUNT)
        .map(|_| {
            let raw: String = (0..12)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12])
        })
        .collect()
}

/// The canonical form of a typed code (case, spaces and dashes do not matter), if it has
/// the shape of one.
pub(super) fn normalize(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == 12 && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// What the database keeps of a code (shown or typed form alike).
pub(super) fn hash(master: &MasterKey, user_id: Uuid, code: &str) -> String {
    let normal = normalize(code).unwrap_or_default();
    let mut message = user_id.as_bytes().to_vec();
    message.extend_from_slice(normal.as_bytes());
    master
        .keyed_hash("recovery-code", &message)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl MfaService {
    /// New codes replace the old set at once (the old ones stop working). Needs a factor:
    /// the codes stand in for one.
    pub async fn regenerate_recovery_codes(
        &self,
        meta: &RequestMeta,
        user: &User,
    ) -> Result<Vec<String>, MfaError> {
        self.ensure_enabled()?;
        if self.factors(user.id).await?.is_empty() {
            return Err(MfaError::NoFactor);
        }
        let codes = generate();
        let master = self.keys.master();
        let hashes: Vec<String> = codes.iter().map(|c| hash(master, user.id, c)).collect();
        self.store
            .replace_recovery_codes(user.id, &hashes, self.clock.now())
            .await
            .map_err(store_failed)?;
        self.audit(
            meta,
            "mfa.recovery_codes_regenerated",
            user.id,
            serde_json::json!({}),
        )
        .await;
        self.accounts.send_security_notice(
            user,
            "New recovery codes were made for your account; the old ones no longer work.",
        );
        Ok(codes)
    }

    /// Spends a recovery code of the user; audited and mailed, since it signs in without
    /// the factor it backs up.
    pub(super) async fn use_recovery_code(
        &self,
        meta: &RequestMeta,
        user: &User,
        code: &str,
    ) -> Result<bool, MfaError> {
        if normalize(code).is_none() {
            return Ok(false);
        }
        let stored = hash(self.keys.master(), user.id, code);
        let used = self
            .store
            .use_recovery_code(user.id, &stored, self.clock.now())
            .await
            .map_err(store_failed)?;
        if used {
            let left = self.recovery_codes_left(user.id).await.unwrap_or(0);
            self.audit(
                meta,
                "mfa.recovery_code_used",
                user.id,
                serde_json::json!({"left": left}),
            )
            .await;
            self.accounts.send_security_notice(
                user,
                &format!(
                    "A recovery code was used to sign in to your account; {left} unused codes are left."
                ),
            );
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_distinct_and_read_back_in_any_case() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        let master = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        for c in &codes {
            assert_eq!(c.len(), 14);
            let typed = c.to_uppercase().replace('-', " ");
            assert_eq!(hash(&master, ada, c), hash(&master, ada, &typed));
            assert_ne!(
                hash(&master, ada, c),
                hash(&master, bob, c),
                "salted by the user"
            );
            assert!(normalize(c).is_some());
        }
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert_ne!(hash(&master, ada, &codes[0]), hash(&other, ada, &codes[0]));
        assert_eq!(
            normalize("abcd-efgh-ijk0"),
            None,
            "i and 0 are not in the alphabet"
        );
        assert_eq!(
            normalize("123456"),
            None,
            "a TOTP code is not a recovery code"
        );
    }
}
