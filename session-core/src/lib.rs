//! The library apps embed to stay signed in — to several accounts at once.
//!
//! [`SessionManager`] signs in through the OIDC provider (PKCE on a loopback redirect, or the
//! device grant), trades the ID token at the session registry for a device session, keeps every
//! token in `account-store` under the account's key, hands out valid access tokens (refreshing
//! once for all callers, across processes), watches the registry session (heartbeat and pushed
//! revocation) and signs out cleanly. It never talks SQL and never logs a token.
//!
//! `examples/embed.rs` is a runnable app embedding the manager (sign in, print a valid access
//! token, follow the session until it is revoked).
#![forbid(unsafe_code)]

pub mod error;
pub mod loopback;
pub mod manager;
pub mod oidc;
pub mod registry;
pub mod session_note;
pub mod state;
pub mod tokens;

/// The registry's wire types, which [`SessionManager`] and [`registry::RegistryClient`] answer in.
pub use registry_api;

pub use error::SessionError;
pub use manager::{
    LoginMethod, LoginRequest, LogoutReport, LogoutScope, ManagerOptions, RevokeTarget,
    SessionCheck, SessionManager, UpgradeError, UpgradeRequest, Upgraded, DEFAULT_SESSION_DURATION,
};
pub use registry::DeviceIdentity;
pub use session_note::SessionNote;
pub use state::{ManagerEvent, SessionState, UnavailableReason};
