//! `/account/*`: a signed-in person's own pages.

mod passkeys;
pub mod security;

pub use passkeys::{passkey_finish, passkey_start};
