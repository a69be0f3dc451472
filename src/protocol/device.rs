//! The device authorization grant's rules (RFC 8628): user codes (alphabet, format, input
//! normalisation) and what a poll of the token endpoint answers. Pure: no HTTP, no SQL.

use std::fmt;

use rand::Rng;

use crate::store::{DeviceGrant, DeviceStatus, Timestamp};

/// RFC 8628 §6.1: base-20 letters without vowels (no words can be spelled) and without
/// look-alikes of digits, so only letters need typing.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// RFC 8628 §6.1: eight characters of that alphabet, 20^8 ≈ 2.56e10 codes (34.5 bits).
pub const USER_CODE_LEN: usize = 8;
/// RFC 8628 §3.5: each `slow_down` adds 5 seconds to the polling interval.
pub const SLOW_DOWN_STEP_SECS: i64 = 5;
/// However often a client is told to slow down, its interval stops growing here.
const MAX_INTERVAL_SECS: i64 = 3600;
/// Longest input worth normalising: a code with a dash and some stray spaces.
const MAX_INPUT_LEN: usize = 32;

/// A user code in its normalised form: eight characters of [`USER_CODE_ALPHABET`]. Shown to
/// people as `XXXX-XXXX`; stored only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserCodeError {
    #[error("enter the code shown on your device")]
    Empty,
    #[error("a code has 8 letters, such as BCDF-GHJK")]
    Length,
    #[error("the code holds a character that codes never contain; check it and try again")]
    Character,
}

impl UserCode {
    /// A fresh code from the OS random source, uniform over the alphabet.
    pub fn generate() -> UserCode {
        let mut rng = rand::rngs::OsRng;
        let code = (0..USER_CODE_LEN)
            .map(|_| {
                let i = rng.gen_range(0..USER_CODE_ALPHABET.len());
                USER_CODE_ALPHABET.get(i).copied().map_or('B', char::from)
            })
            .collect();
        UserCode(code)
    }

    /// What a person typed, normalised (RFC 8628 §6.1: "case-insensitive", with the dash and
    /// any spaces ignored): `bcdf-ghjk`, `BCDF GHJK` and `BCDFGHJK` are one code.
    pub fn parse(input: &str) -> Result<UserCode, UserCodeError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(UserCodeError::Length);
        }
        let kept: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if kept.is_empty() {
            return Err(UserCodeError::Empty);
        }
        if !kept.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)) {
            return Err(UserCodeError::Character);
        }
        if kept.len() != USER_CODE_LEN {
            return Err(UserCodeError::Length);
        }
        Ok(UserCode(kept))
    }

    /// The normalised eight characters (what the store's hash is taken of).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `XXXX-XXXX`, as the device shows it (RFC 8628 §6.1 suggests a separator).
    pub fn display(&self) -> String {
        let (a, b) = self.0.split_at(USER_CODE_LEN / 2);
        format!("{a}-{b}")
    }

    /// The stored form.
    pub fn hash(&self) -> String {
        crate::random::hash_secret(&self.0)
    }
}

/// Only the first two characters, so a log line never carries a usable code.
impl fmt::Debug for UserCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserCode({}…)", self.0.get(..2).unwrap_or(""))
    }
}

/// What the token endpoint answers a device-code poll, before any write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// RFC 8628 §3.5 `authorization_pending`; the poll is recorded.
    Pending,
    /// RFC 8628 §3.5 `slow_down`: polled sooner than `interval` after the previous poll; the
    /// grant's interval becomes `new_interval` for this and every later poll.
    SlowDown { new_interval: i64 },
    /// RFC 8628 §3.5 `access_denied`.
    Denied,
    /// RFC 8628 §3.5 `expired_token`: past its lifetime, whatever was decided.
    Expired,
    /// Approved: redeem it (one conditional update decides which poll gets the tokens).
    Redeem,
    /// Already redeemed: RFC 6749 §5.2 `invalid_grant`.
    Spent,
}

/// RFC 8628 §3.4-3.5: the answer to a poll at `now`.
pub fn decide_poll(grant: &DeviceGrant, now: Timestamp) -> Poll {
    match grant.status {
        DeviceStatus::Redeemed => return Poll::Spent,
        DeviceStatus::Expired => return Poll::Expired,
        _ if now >= grant.expires_at => return Poll::Expired,
        DeviceStatus::Denied => return Poll::Denied,
        DeviceStatus::Approved => return Poll::Redeem,
        DeviceStatus::Pending => {}
    }
    // §3.5: slow_down is "a variant of authorization_pending": only a pending grant has an
    // interval to keep. The interval runs from the previous poll (the first poll is free).
    match grant.last_polled_at {
        Some(last) if now - last < grant.interval_secs => Poll::SlowDown {
            new_interval: (grant.interval_secs + SLOW_DOWN_STEP_SECS).min(MAX_INTERVAL_SECS),
        },
        _ => Poll::Pending,
    }
}

/// Why a user code entered on the verification page cannot be approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApprovable {
    Unknown,
    Expired,
    AlreadyUsed,
}

/// RFC 8628 §3.3: only a pending grant within its lifetime can still be approved or denied.
pub fn approvable(grant: Option<&DeviceGrant>, now: Timestamp) -> Result<(), NotApprovable> {
    let grant = grant.ok_or(NotApprovable::Unknown)?;
    match grant.status {
        DeviceStatus::Expired => Err(NotApprovable::Expired),
        _ if now >= grant.expires_at => Err(NotApprovable::Expired),
        DeviceStatus::Pending => Ok(()),
        _ => Err(NotApprovable::AlreadyUsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(status: DeviceStatus, last_polled_at: Option<i64>) -> DeviceGrant {
        DeviceGrant {
            status,
            last_polled_at,
            ..DeviceGrant::pending("d".into(), "u".into(), "tv", "openid", 5, 1000, 1600)
        }
    }

    #[test]
    fn generated_codes_use_the_alphabet_and_differ() {
        let a = UserCode::generate();
        assert_eq!(a.as_str().len(), 8);
        assert!(a.as_str().bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_ne!(a, UserCode::generate());
        assert_eq!(UserCode::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn input_is_normalised_for_case_dashes_and_spaces() {
        let want = UserCode::parse("BCDFGHJK").unwrap();
        for typed in [
            "bcdf-ghjk",
            "BCDF-GHJK",
            " bcdf ghjk ",
            "B-C-D-F-G-H-J-K",
            "bcdfghjk\t",
        ] {
            assert_eq!(UserCode::parse(typed).unwrap(), want, "{typed:?}");
        }
        assert_eq!(want.display(), "BCDF-GHJK");
        assert_eq!(want.hash(), UserCode::parse("bcdf ghjk").unwrap().hash());
    }

    #[test]
    fn vowels_digits_and_wrong_lengths_are_refused() {
        assert_eq!(UserCode::parse(""), Err(UserCodeError::Empty));
        assert_eq!(UserCode::parse(" - "), Err(UserCodeError::Empty));
        assert_eq!(UserCode::parse("BCDF-GHJA"), Err(UserCodeError::Character));
        assert_eq!(UserCode::parse("BCDF-GHJ1"), Err(UserCodeError::Character));
        assert_eq!(
            UserCode::parse("BCDF-GHJ\u{e9}"),
            Err(UserCodeError::Character)
        );
        assert_eq!(UserCode::parse("BCDF-GHJ"), Err(UserCodeError::Length));
        assert_eq!(UserCode::parse("BCDF-GHJKL"), Err(UserCodeError::Length));
        assert_eq!(
            UserCode::parse(&"B".repeat(500)),
            Err(UserCodeError::Length)
        );
    }

    #[test]
    fn debug_shows_two_characters_only() {
        let code = UserCode::parse("BCDF-GHJK").unwrap();
        assert_eq!(format!("{code:?}"), "UserCode(BC…)");
    }

    #[test]
    fn a_pending_grant_polled_too_soon_slows_down_by_five_seconds() {
        let g = grant(DeviceStatus::Pending, None);
        assert_eq!(
            decide_poll(&g, 1001),
            Poll::Pending,
            "the first poll is free"
        );
        let g = grant(DeviceStatus::Pending, Some(1001));
        assert_eq!(decide_poll(&g, 1004), Poll::SlowDown { new_interval: 10 });
        assert_eq!(decide_poll(&g, 1006), Poll::Pending);
        let mut slowed = grant(DeviceStatus::Pending, Some(1004));
        slowed.interval_secs = 10;
        assert_eq!(
            decide_poll(&slowed, 1010),
            Poll::SlowDown { new_interval: 15 },
            "the grown interval is the one enforced"
        );
        assert_eq!(decide_poll(&slowed, 1014), Poll::Pending);
        slowed.interval_secs = MAX_INTERVAL_SECS;
        assert_eq!(
            decide_poll(&slowed, 1005),
            Poll::SlowDown {
                new_interval: MAX_INTERVAL_SECS
            }
        );
    }

    #[test]
    fn decided_grants_answer_by_their_status_and_expiry_wins() {
        let at = 1100;
        assert_eq!(
            decide_poll(&grant(DeviceStatus::Approved, Some(at)), at),
            Poll::Redeem
        );
        assert_eq!(
            decide_poll(&grant(DeviceStatus::Denied, None), at),
            Poll::Denied
        );
        assert_eq!(
            decide_poll(&grant(DeviceStatus::Redeemed, None), at),
            Poll::Spent
        );
        assert_eq!(
            decide_poll(&grant(DeviceStatus::Expired, None), at),
            Poll::Expired
        );
        for status in [
            DeviceStatus::Pending,
            DeviceStatus::Approved,
            DeviceStatus::Denied,
        ] {
            assert_eq!(decide_poll(&grant(status, None), 1600), Poll::Expired);
        }
        assert_eq!(
            decide_poll(&grant(DeviceStatus::Redeemed, None), 1600),
            Poll::Spent
        );
    }

    #[test]
    fn only_a_live_pending_grant_is_approvable() {
        assert_eq!(approvable(None, 1100), Err(NotApprovable::Unknown));
        let pending = grant(DeviceStatus::Pending, None);
        assert_eq!(approvable(Some(&pending), 1100), Ok(()));
        assert_eq!(
            approvable(Some(&pending), 1600),
            Err(NotApprovable::Expired)
        );
        for status in [
            DeviceStatus::Approved,
            DeviceStatus::Denied,
            DeviceStatus::Redeemed,
        ] {
            assert_eq!(
                approvable(Some(&grant(status, None)), 1100),
                Err(NotApprovable::AlreadyUsed)
            );
        }
    }
}
