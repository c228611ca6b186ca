//! Helpers every Lanyard test suite shares:
//! - [`TestIdp`]: the real mock IdP, in process, on `127.0.0.1:0`, and [`IdpProcess`], the
//!   `mock-idp` binary as a child process; both are reached through [`idp::IdpEndpoint`];
//! - [`TestDatabase`]: a fresh Postgres database per test, dropped afterwards;
//! - [`PrivatePostgres`]: a Postgres server of one test's own, which it may stop and restart;
//! - [`browser::Browser`]: headless Chromium over WebDriver, for testing real pages;
//! - [`ChildService`]: a service binary run as a child process, its address read from its
//!   readiness line (`NAME listening on http://ADDR`); [`ChildServices`] for a child that runs
//!   several services and prints one such line for each (devstack);
//! - [`PgBouncer`]: a PgBouncer of one test's own, in transaction mode;
//! - [`nats`]: the shared NATS JetStream server, and [`PrivateNats`], a broker of one test's own;
//! - [`idp::login`]: the mock IdP's login flow, by issuer URL, for an IdP in process or in a child.
#![forbid(unsafe_code)]

pub mod browser;
pub mod database;
pub mod idp;
pub mod nats;
#[cfg(unix)]
pub mod pgbouncer;
#[cfg(unix)]
pub mod private_postgres;
pub mod process;
pub mod secret_service;

pub use database::TestDatabase;
pub use idp::{IdpProcess, TestIdp};
pub use nats::PrivateNats;
#[cfg(unix)]
pub use pgbouncer::PgBouncer;
#[cfg(unix)]
pub use private_postgres::PrivatePostgres;
pub use process::{workspace_binary, ChildService, ChildServices};
