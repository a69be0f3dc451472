//! Portcullis: an OAuth 2.0 / OpenID Connect identity provider.
//! `app::Portcullis::build(settings)` is the one entry point, used by the binary and the tests.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounts;
pub mod app;
pub mod cache;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod denylist;
pub mod document;
pub mod dpop;
pub mod events;
pub mod federation;
pub mod http;
pub mod keys;
pub mod limiter;
pub mod mail;
pub mod metrics;
pub mod protocol;
pub mod random;
pub mod resources;
pub mod sessions;
pub mod store;
pub mod telemetry;

pub use app::Portcullis;
pub use config::Settings;
