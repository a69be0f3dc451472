//! OAuth 2.0 / OpenID Connect rules, pure and unit-tested. Never touches HTTP or SQL.

pub mod discovery;
pub mod redirect_uri;
pub mod scope;
