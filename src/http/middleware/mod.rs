//! Middleware applied to every route.

pub mod client_ip;
pub mod cors;
pub mod guard;
pub mod rate_limit;
pub mod request_id;
