//! Multi-factor sign-in: the second factors and passwordless sign-in.
//! Decides whether a factor verifies; never stores, never touches HTTP or SQL.

pub mod webauthn;
