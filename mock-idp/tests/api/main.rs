//! Black-box tests of the mock IdP over real HTTP: each test spawns its own IdP on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a panic is a failure report

mod helpers;

mod admin_and_faults;
mod auth_time;
mod authorize;
mod bad_input;
mod binary;
mod browser;
mod device;
mod device_page;
mod discovery_and_keys;
mod end_session;
mod guest;
mod interop;
mod login_csrf;
mod logout;
mod refresh;
mod revocation_and_introspection;
mod token_code;
