//! Middleware applied to every route.

pub mod request_id;
