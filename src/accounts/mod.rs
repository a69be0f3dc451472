//! Accounts: the parsed forms of user input (emails, roles, passwords), password hashing, and
//! the account service (`service.rs`, one file per use case next to it).
//! Decides what a valid account value is and what an account may do; never touches HTTP or SQL.

mod admin;
mod email_change;
mod emails;
pub mod magic_link;
pub mod mfa;
mod password;
pub mod policy;
mod registration;
mod reset;
pub mod service;
mod sign_in;

use std::fmt;

pub use admin::UserPatch;
pub use password::{Password, PasswordError, PasswordHasher};
pub use registration::Registration;
pub use service::AccountService;

/// An email address, trimmed, with one `@`, a non-empty local part and a dotted domain.
/// Deliverability is proven by verification mail, not by parsing.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an email address (expected name@example.com)")]
pub struct EmailError(pub String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let s = raw.trim();
        let bad = || EmailError(raw.chars().take(80).collect());
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains('@')
        {
            return Err(bad());
        }
        Ok(Email(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

/// A role name: lowercase letters, digits, `-` and `_`, 1 to 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Role(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a role name (use lowercase letters, digits, '-' and '_')")]
pub struct RoleError(pub String);

impl Role {
    pub fn parse(raw: &str) -> Result<Role, RoleError> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Role(raw.to_string()))
        } else {
            Err(RoleError(raw.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_parsed_not_guessed() {
        assert_eq!(
            Email::parse(" Ada@Example.org ").unwrap().as_str(),
            "Ada@Example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@org",
            "a b@example.org",
            "ada@.org.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn role_names_are_restricted() {
        assert!(Role::parse("admin").is_ok());
        assert!(Role::parse("Admin").is_err());
        assert!(Role::parse("").is_err());
        assert!(Role::parse("a b").is_err());
    }
}
