//! Strict parsing of `application/x-www-form-urlencoded` parameters (query strings and form
//! bodies): RFC 6749 §3.1 "parameters MUST NOT be included more than once" and "parameters
//! sent without a value MUST be treated as if they were omitted". Invalid UTF-8 and oversized
//! input are refused rather than repaired.

use std::collections::BTreeMap;

use percent_encoding::percent_decode;

/// Largest accepted total of decoded parameter text.
pub const MAX_INPUT: usize = 16 * 1024;
/// Largest accepted query string or form body as sent: percent-encoding at most triples the
/// text, so whatever `to_query` writes for accepted parameters parses again.
pub const MAX_ENCODED: usize = 3 * MAX_INPUT;
/// Largest accepted single value.
pub const MAX_VALUE: usize = 4 * 1024;
/// Parameters that may appear more than once: RFC 8707 §2 `resource` and RFC 8693 §2.1
/// `audience`. Their values are URIs, which never contain a space, so repeats are kept
/// joined by one space and read back with [`Params::get_all`].
const REPEATABLE: [&str; 2] = ["resource", "audience"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {0:?} is repeated; each parameter may appear once (RFC 6749 §3.1)")]
    Duplicate(String),
    #[error("the parameters are not valid UTF-8 text after percent-decoding")]
    Encoding,
    #[error("the request parameters are too large")]
    TooLarge,
}

impl Params {
    pub fn parse(raw: &[u8]) -> Result<Params, ParamError> {
        if raw.len() > MAX_ENCODED {
            return Err(ParamError::TooLarge);
        }
        let mut map = BTreeMap::new();
        let mut decoded_total = 0;
        for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode(name)?;
            let value = decode(value)?;
            decoded_total += name.len() + value.len();
            if value.len() > MAX_VALUE || decoded_total > MAX_INPUT {
                return Err(ParamError::TooLarge);
            }
            if value.is_empty() {
                continue;
            }
            if REPEATABLE.contains(&name.as_str()) {
                if let Some(earlier) = map.get_mut(&name) {
                    let earlier: &mut String = earlier;
                    earlier.push(' ');
                    earlier.push_str(&value);
                    continue;
                }
            }
            if map.insert(name.clone(), value).is_some() {
                return Err(ParamError::Duplicate(name));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every value of a repeatable parameter (`resource`, `audience`), in request order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.get(name)
            .map(|v| v.split(' ').filter(|p| !p.is_empty()).collect())
            .unwrap_or_default()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn set(&mut self, name: &str, value: Option<String>) {
        match value {
            Some(v) if !v.is_empty() => {
                self.0.insert(name.to_string(), v);
            }
            _ => {
                self.0.remove(name);
            }
        }
    }

    /// The parameters re-encoded as a query string.
    pub fn to_query(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

fn decode(raw: &[u8]) -> Result<String, ParamError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    let text = String::from_utf8(bytes).map_err(|_| ParamError::Encoding)?;
    // NUL has no meaning in any parameter, and databases refuse it in text.
    if text.contains('\0') {
        return Err(ParamError::Encoding);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let p = Params::parse(b"a=1&b=x+y%21&empty=&c").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y!"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.get("c"), None);
    }

    #[test]
    fn refuses_duplicates_bad_utf8_and_oversize() {
        assert_eq!(
            Params::parse(b"state=1&state=2"),
            Err(ParamError::Duplicate("state".into()))
        );
        assert_eq!(Params::parse(b"x=%ff%fe"), Err(ParamError::Encoding));
        assert_eq!(Params::parse(b"client_id=%00"), Err(ParamError::Encoding));
        let big = format!("x={}", "a".repeat(MAX_VALUE + 1));
        assert_eq!(Params::parse(big.as_bytes()), Err(ParamError::TooLarge));
        // An empty duplicate is an omitted parameter, not a repeat.
        assert!(Params::parse(b"state=1&state=").is_ok());
    }

    #[test]
    fn resource_and_audience_may_repeat() {
        let p =
            Params::parse(b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&audience=x").unwrap();
        assert_eq!(p.get_all("resource"), vec!["https://a", "https://b"]);
        assert_eq!(p.get_all("audience"), vec!["x"]);
        assert_eq!(Params::parse(p.to_query().as_bytes()).unwrap(), p);
    }

    #[test]
    fn what_to_query_writes_always_parses_again() {
        // Found by the authorize_request fuzz target: '!' triples when percent-encoded.
        let raw = format!("a={}&b={}", "!".repeat(4096), "!".repeat(1400));
        let p = Params::parse(raw.as_bytes()).unwrap();
        assert_eq!(Params::parse(p.to_query().as_bytes()).unwrap(), p);
    }

    #[test]
    fn round_trips_through_a_query_string() {
        let p = Params::parse(b"scope=openid+profile&redirect_uri=https%3A%2F%2Fa.b%2Fcb").unwrap();
        assert_eq!(Params::parse(p.to_query().as_bytes()).unwrap(), p);
    }
}
