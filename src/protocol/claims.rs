//! User claims released by scope (OIDC Core §5.4) and how scopes are described to users.

use serde_json::{json, Map, Value};

use crate::protocol::scope::Scope;
use crate::store::User;

/// Scopes this provider understands.
pub const SCOPES_SUPPORTED: [&str; 5] = ["openid", "profile", "email", "offline_access", "roles"];

/// Every claim that can appear in an ID token or a userinfo response.
pub const CLAIMS_SUPPORTED: [&str; 17] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "azp",
    "sid",
    "at_hash",
    "amr",
    "acr",
    "name",
    "updated_at",
    "email",
    "email_verified",
    "roles",
];

/// The user's claims that `scope` releases; `sub` always.
pub fn user_claims(user: &User, scope: &Scope) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.id.to_string()));
    if scope.contains("profile") {
        if let Some(name) = &user.name {
            claims.insert("name".into(), json!(name));
        }
        claims.insert("updated_at".into(), json!(user.updated_at));
    }
    if scope.contains("email") {
        claims.insert("email".into(), json!(user.email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if scope.contains("roles") {
        claims.insert("roles".into(), json!(user.roles));
    }
    claims
}

/// The consent page's words for a scope.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Confirm your identity".into(),
        "profile" => "See your name and profile details".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay signed in when you are not using it".into(),
        "roles" => "See the roles you hold".into(),
        other => format!("Access \u{201c}{other}\u{201d}"),
    }
}
