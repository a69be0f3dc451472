//! Scopes (RFC 6749 §3.3): a space-delimited set of tokens made of NQCHAR. Parsing and the
//! subset rule are oxide-auth's; this type keeps the tokens sorted. No HTTP, no SQL.

use std::collections::BTreeSet;
use std::fmt;

use oxide_auth::primitives::scope::{ParseScopeErr, Scope as LibraryScope};

/// A parsed scope. The tokens are kept sorted here because oxide-auth's `Display` iterates a
/// `HashSet`, while our tokens and database rows need one stable spelling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid scope token (RFC 6749 §3.3 allows printable ASCII except space, '\"' and '\\\\')")]
pub struct ScopeError(pub String);

impl Scope {
    /// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated by spaces.
    pub fn parse(raw: &str) -> Result<Scope, ScopeError> {
        let parsed: LibraryScope = raw.parse().map_err(|ParseScopeErr::InvalidCharacter(ch)| {
            let token = raw.split(' ').find(|t| t.contains(ch)).unwrap_or(raw);
            ScopeError(token.chars().take(40).collect())
        })?;
        Ok(Scope(parsed.iter().map(str::to_string).collect()))
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    /// RFC 6749 §3.3 / §6: every token of `self` is in `other` (oxide-auth's `allow_access`).
    pub fn is_subset_of(&self, other: &Scope) -> bool {
        match (self.library(), other.library()) {
            (Some(mine), Some(theirs)) => mine.allow_access(&theirs),
            _ => false,
        }
    }

    /// Ours: oxide-auth's `Scope` has no union.
    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }

    /// The tokens in both: a token for one API carries only that API's scopes (RFC 8707 §2.2).
    pub fn intersection<'a>(&self, other: impl IntoIterator<Item = &'a str>) -> Scope {
        let other: BTreeSet<&str> = other.into_iter().collect();
        Scope(
            self.0
                .iter()
                .filter(|t| other.contains(t.as_str()))
                .cloned()
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The same tokens as oxide-auth's type; they came from its parser, so this cannot fail.
    fn library(&self) -> Option<LibraryScope> {
        self.to_string().parse().ok()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sets_and_rejects_bad_tokens() {
        let s = Scope::parse("openid  profile openid").unwrap();
        assert_eq!(s.to_string(), "openid profile");
        assert!(Scope::parse("openid pro\"file").is_err());
        assert!(Scope::parse("é").is_err());
        assert!(Scope::parse("openid").unwrap().is_subset_of(&s));
    }

    #[test]
    fn displays_tokens_in_one_stable_sorted_order() {
        let a = Scope::parse("profile openid email offline_access").unwrap();
        let b = Scope::parse("email offline_access openid profile").unwrap();
        assert_eq!(a.to_string(), "email offline_access openid profile");
        assert_eq!(a.to_string(), b.to_string());
    }

    #[test]
    fn the_error_names_the_offending_token() {
        assert_eq!(
            Scope::parse("openid pro\"file email").unwrap_err(),
            ScopeError("pro\"file".into())
        );
        assert!(Scope::parse("openid\tprofile").is_err());
        assert!(Scope::parse("a\\b").is_err());
        assert!(Scope::parse("").unwrap().is_empty());
    }

    #[test]
    fn subsets_follow_the_token_sets() {
        let wide = Scope::parse("openid profile email").unwrap();
        let narrow = Scope::parse("email openid").unwrap();
        let other = Scope::parse("openid roles").unwrap();
        assert!(narrow.is_subset_of(&wide));
        assert!(wide.is_subset_of(&wide));
        assert!(!wide.is_subset_of(&narrow));
        assert!(!other.is_subset_of(&wide));
        assert!(Scope::default().is_subset_of(&narrow));
        assert_eq!(narrow.union(&other).to_string(), "email openid roles");
    }
}
