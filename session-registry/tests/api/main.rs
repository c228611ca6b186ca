//! Black-box tests of the registry over real HTTP, against the real mock IdP, on a fresh Postgres
//! database per test (and, for the store contract, on SQLite too).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a panic is a failure report

mod helpers;

mod admin_and_ops;
mod authenticate;
mod backchannel;
mod bad_input;
mod create;
mod database_restart;
mod devices_page;
mod event_stream;
mod events;
mod garbage_collection;
mod graceful_shutdown;
mod hot_paths;
mod isolation;
mod key_rotation;
mod list_and_revoke;
mod replica_and_pooler;
mod scale_out;
mod token_lookup;
mod trust_boundaries;
mod upgrade;
