//! Integration tests: one binary, the real server over HTTP, a fresh database per test.

mod abuse;
mod accounts;
mod admin_api;
mod browser;
mod browser_console;
mod browser_passkeys;
mod cli;
mod cli_admin;
mod cluster;
mod code_flow;
mod common;
mod config;
mod console;
mod documents;
mod flow_errors;
mod ipv6_limits;
mod keys;
mod logout;
mod loopback_redirects;
mod mfa;
mod passkeys;
mod processes;
mod server;
mod soft_passkey;
mod store_contract;
mod token_lifecycle;
