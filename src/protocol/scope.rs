//! Scopes (RFC 6749 §3.3): a space-delimited set of tokens made of NQCHAR.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid scope token (RFC 6749 §3.3 allows printable ASCII except space, '\"' and '\\\\')")]
pub struct ScopeError(pub String);

impl Scope {
    pub fn parse(raw: &str) -> Result<Scope, ScopeError> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            let ok = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(ScopeError(token.chars().take(40).collect()));
            }
            set.insert(token.to_string());
        }
        Ok(Scope(set))
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
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
}
