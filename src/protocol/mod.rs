//! OAuth 2.0 / OpenID Connect rules, pure and unit-tested. Never touches HTTP or SQL.

pub mod assertion;
pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod device;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod introspect;
pub mod par;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod registration;
pub mod resource;
pub mod scope;
pub mod token;
pub mod tokens;
