//! Middleware applied to every route.

pub mod cors;
pub mod request_id;
