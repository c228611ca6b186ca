//! End-to-end tests across the IdP, the registry and several devices live in `tests/`: the mock
//! IdP and the session registry (on a fresh Postgres database) run in process, and each device is
//! a `SessionManager` with its own account store, as an app embedding session-core would be.
#![forbid(unsafe_code)]
