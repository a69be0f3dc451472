//! `/account/*`: a signed-in person's own pages.

pub mod security;
