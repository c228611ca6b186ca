//! devstack's test suite: the library in process, the built binary as a child (readiness lines,
//! end-to-end login and session, data folder, side-by-side stacks, signals, Postgres), and the
//! docker-compose topology checked against the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a panic is a failure report

mod binary;
mod compose;
mod helpers;
mod in_process;
mod logs;
