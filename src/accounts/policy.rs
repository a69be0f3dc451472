//! The password policy beyond length (NIST SP 800-63B §5.1.1.2): no password from a list of
//! commonly used ones, and not the account's own email address. Plus the rule that decides
//! when a stored hash was made with other parameters and is redone at the next sign-in.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::PasswordHash;
use argon2::Params;

use super::{Password, PasswordError};
use crate::config::PasswordSettings;

/// The 10,000 most common passwords (see the file's header for its source).
const COMMON: &str = include_str!("common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Length, the common-password list (compared ignoring case) and the email rule.
pub fn check_password(
    raw: String,
    policy: &PasswordSettings,
    email: Option<&str>,
) -> Result<Password, PasswordError> {
    let lower = raw.to_lowercase();
    let password = Password::parse(raw, policy)?;
    if common().contains(lower.as_str()) {
        return Err(PasswordError::Common);
    }
    if let Some(email) = email {
        let email = email.trim().to_lowercase();
        let local = email.split('@').next().unwrap_or("");
        if lower == email || lower == local {
            return Err(PasswordError::SameAsEmail);
        }
    }
    Ok(password)
}

/// Whether `stored` is not an argon2id hash at the configured cost (so the next successful
/// sign-in should hash the password again).
pub fn needs_rehash(stored: &str, settings: &PasswordSettings) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm.as_str() != "argon2id"
        || params.m_cost() != settings.memory_kib
        || params.t_cost() != settings.iterations
        || params.p_cost() != settings.parallelism
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_ten_thousand_entries() {
        assert_eq!(common().len(), 10_000);
        assert!(common().contains("password"));
    }

    #[test]
    fn common_passwords_and_the_email_are_refused() {
        let p = PasswordSettings::default();
        assert_eq!(
            check_password("Password1".into(), &p, None).unwrap_err(),
            PasswordError::Common
        );
        assert_eq!(
            check_password("QWERTYUIOP".into(), &p, None).unwrap_err(),
            PasswordError::Common
        );
        assert_eq!(
            check_password(
                "Ada.Lovelace@example.com".into(),
                &p,
                Some("ada.lovelace@example.com")
            )
            .unwrap_err(),
            PasswordError::SameAsEmail
        );
        assert_eq!(
            check_password("ada.lovelace".into(), &p, Some("ada.lovelace@example.com"))
                .unwrap_err(),
            PasswordError::SameAsEmail
        );
        assert_eq!(
            check_password("short".into(), &p, None).unwrap_err(),
            PasswordError::TooShort(8)
        );
        assert!(check_password("violet staple kettle".into(), &p, Some("ada@example.com")).is_ok());
    }

    #[test]
    fn hashes_at_other_parameters_need_a_rehash() {
        let p = PasswordSettings::default();
        let current = format!(
            "$argon2id$v=19$m={},t={},p={}$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            p.memory_kib, p.iterations, p.parallelism
        );
        assert!(!needs_rehash(&current, &p));
        let weaker = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(needs_rehash(weaker, &p));
        assert!(needs_rehash(
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            &p
        ));
        assert!(needs_rehash("not a hash", &p));
    }
}
