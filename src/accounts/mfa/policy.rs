//! How strong a sign-in was, and how strong one must be. Pure rules, no I/O.
//!
//! `acr` values (OIDC Core §2), advertised in discovery as `acr_values_supported`:
//! - `1fa`: one factor (a password);
//! - `mfa`: two or more factors (password and authenticator app, or a recovery code);
//! - `phr`: phishing-resistant, a passkey or security key was used (the OpenID EAP ACR value);
//!   WebAuthn binds the assertion to our origin, so a look-alike site cannot relay it.
//!
//! `amr` values are RFC 8176's: `pwd` (password), `otp` (authenticator-app code or recovery
//! code), `hwk` (a device-bound WebAuthn key) or `swk` (a synced passkey, whose key leaves
//! the device), `user` (the user-presence test of every WebAuthn assertion), and `mfa` once
//! two factors of different kinds were used: a password with a code or key, or a passkey
//! whose authenticator verified the user (the caller says so: presence alone is not it).

use std::fmt;

/// The `acr` levels, weakest first; a sign-in satisfies every level up to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Acr {
    OneFactor,
    Mfa,
    PhishingResistant,
}

/// What discovery's `acr_values_supported` lists, strongest first.
pub const ACR_VALUES_SUPPORTED: [&str; 3] = ["phr", "mfa", "1fa"];

impl Acr {
    pub fn as_str(self) -> &'static str {
        match self {
            Acr::OneFactor => "1fa",
            Acr::Mfa => "mfa",
            Acr::PhishingResistant => "phr",
        }
    }

    /// A known `acr` value; unknown ones are `None` (a voluntary request for them is ignored).
    pub fn parse(value: &str) -> Option<Acr> {
        match value {
            "1fa" => Some(Acr::OneFactor),
            "mfa" => Some(Acr::Mfa),
            "phr" => Some(Acr::PhishingResistant),
            _ => None,
        }
    }

    /// The level a session with these methods reached: `phr` needs a WebAuthn key *and*
    /// two factors (a passkey that verified its user, or a password with a security key).
    pub fn of_amr(amr: &[String]) -> Acr {
        let has = |m: &str| amr.iter().any(|a| a == m);
        if (has("hwk") || has("swk")) && has("mfa") {
            Acr::PhishingResistant
        } else if has("mfa") {
            Acr::Mfa
        } else {
            Acr::OneFactor
        }
    }

    /// The level a stored session claims (`None`: before this feature, one factor).
    pub fn of_session(acr: Option<&str>) -> Acr {
        acr.and_then(Acr::parse).unwrap_or(Acr::OneFactor)
    }
}

impl fmt::Display for Acr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The methods of a sign-in after `added` joined `so_far`, with `mfa` when two kinds of
/// factor took part (RFC 8176 §2: `mfa` may accompany the specific methods).
pub fn combine_amr(so_far: &[String], added: &[&str]) -> Vec<String> {
    let mut amr: Vec<String> = so_far.to_vec();
    for m in added {
        if !amr.iter().any(|a| a == m) {
            amr.push(m.to_string());
        }
    }
    let knowledge = amr.iter().any(|a| a == "pwd");
    let possession = amr
        .iter()
        .any(|a| matches!(a.as_str(), "otp" | "hwk" | "swk"));
    if knowledge && possession && !amr.iter().any(|a| a == "mfa") {
        amr.push("mfa".into());
    }
    amr
}

/// The `amr` of a sign-in by emailed link (`accounts/magic_link.rs`). RFC 8176 §2 has no
/// value for a link sent to the inbox; `otp` ("one-time password", a secret used once) is the
/// closest: a one-time secret delivered out of band. It is one factor.
pub const EMAILED_LINK_AMR: &str = "otp";

/// Whether a session's methods are those of an emailed link alone.
pub fn is_emailed_link(amr: &[String]) -> bool {
    matches!(amr, [only] if only == EMAILED_LINK_AMR)
}

/// [`combine_amr`] for a second factor passed after an emailed link: the link (a secret sent
/// to the inbox) and the account's own factor (an app or a key held by the person) are two
/// independent factors, so `mfa` joins them even though the link, like an app's code, is
/// called `otp`.
pub fn combine_after_link(so_far: &[String], added: &[&str]) -> Vec<String> {
    let mut amr = combine_amr(so_far, added);
    let factor = added.iter().any(|m| matches!(*m, "otp" | "hwk" | "swk"));
    if factor && !amr.iter().any(|a| a == "mfa") {
        amr.push("mfa".into());
    }
    amr
}

/// What an authorization request asks of the sign-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcrRequest {
    /// `acr_values` (OIDC Core §3.1.2.1): voluntary, in order of preference.
    pub values: Vec<String>,
    /// `claims` with `acr` essential (§5.5.1.1): these values, one of which must be met.
    pub essential: Option<Vec<String>>,
}

/// Why the requested `acr` cannot be met at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("none of the essential acr values {0:?} is supported (supported: phr, mfa, 1fa)")]
pub struct UnmetAcr(pub Vec<String>);

/// The weakest level that satisfies the request, if it asks for one, raised to `floor` (a
/// client that requires MFA). Unknown voluntary values are ignored; an essential claim
/// whose values are all unknown cannot be met.
pub fn required_level(req: &AcrRequest, floor: Option<Acr>) -> Result<Option<Acr>, UnmetAcr> {
    let lowest = |values: &[String]| values.iter().filter_map(|v| Acr::parse(v)).min();
    let mut level = match &req.essential {
        Some(values) if !values.is_empty() => {
            Some(lowest(values).ok_or_else(|| UnmetAcr(values.clone()))?)
        }
        _ => lowest(&req.values),
    };
    if let Some(floor) = floor {
        level = Some(level.map_or(floor, |l| l.max(floor)));
    }
    Ok(level.filter(|l| *l > Acr::OneFactor))
}

/// Whether the roles put the user under `accounts.mfa.required_for_roles`.
pub fn role_requires_mfa(roles: &[String], required_for: &[String]) -> bool {
    roles.iter().any(|r| required_for.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn levels_follow_the_methods() {
        assert_eq!(Acr::of_amr(&v(&["pwd"])), Acr::OneFactor);
        assert_eq!(Acr::of_amr(&combine_amr(&v(&["pwd"]), &["otp"])), Acr::Mfa);
        assert_eq!(
            combine_amr(&v(&["pwd"]), &["otp"]),
            v(&["pwd", "otp", "mfa"])
        );
        let passkey = combine_amr(&[], &["hwk", "user", "mfa"]);
        assert_eq!(passkey, v(&["hwk", "user", "mfa"]));
        assert_eq!(Acr::of_amr(&passkey), Acr::PhishingResistant);
        assert_eq!(
            combine_amr(&[], &["swk", "user"]),
            v(&["swk", "user"]),
            "presence only: one factor"
        );
        assert_eq!(Acr::of_amr(&v(&["swk"])), Acr::OneFactor, "not phr alone");
        assert_eq!(
            Acr::of_amr(&combine_amr(&v(&["pwd"]), &["hwk"])),
            Acr::PhishingResistant
        );
    }

    #[test]
    fn a_second_factor_after_an_emailed_link_makes_two() {
        let link = v(&[EMAILED_LINK_AMR]);
        assert!(is_emailed_link(&link));
        assert!(!is_emailed_link(&v(&["pwd", "otp", "mfa"])));
        assert_eq!(Acr::of_amr(&link), Acr::OneFactor);
        let both = combine_after_link(&link, &["otp"]);
        assert_eq!(both, v(&["otp", "mfa"]));
        assert_eq!(Acr::of_amr(&both), Acr::Mfa);
        let key = combine_after_link(&link, &["hwk", "user"]);
        assert_eq!(Acr::of_amr(&key), Acr::PhishingResistant);
    }

    #[test]
    fn the_weakest_satisfying_level_is_required() {
        let req = |values: &[&str], essential: Option<&[&str]>| AcrRequest {
            values: v(values),
            essential: essential.map(v),
        };
        assert_eq!(required_level(&req(&[], None), None), Ok(None));
        assert_eq!(required_level(&req(&["1fa"], None), None), Ok(None));
        assert_eq!(
            required_level(&req(&["phr", "mfa"], None), None),
            Ok(Some(Acr::Mfa))
        );
        assert_eq!(
            required_level(&req(&["gold"], None), None),
            Ok(None),
            "unknown voluntary values are ignored"
        );
        assert_eq!(
            required_level(&req(&[], Some(&["gold"])), None),
            Err(UnmetAcr(v(&["gold"])))
        );
        assert_eq!(
            required_level(&req(&["mfa"], Some(&["phr"])), None),
            Ok(Some(Acr::PhishingResistant)),
            "the essential claim wins over acr_values"
        );
        assert_eq!(
            required_level(&req(&[], None), Some(Acr::Mfa)),
            Ok(Some(Acr::Mfa))
        );
        assert_eq!(
            required_level(&req(&["phr"], None), Some(Acr::Mfa)),
            Ok(Some(Acr::PhishingResistant))
        );
    }
}
