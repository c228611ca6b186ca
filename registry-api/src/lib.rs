//! The session registry's HTTP API as types: requests, answers, the revoke scope, event kinds
//! and the error body. `session-registry` serves them; `session-core` (and through it
//! `lanyard`) sends and reads them, so a renamed field fails to compile instead of failing
//! silently. Credentials are [`Credential`]s: a `SecretString` that prints `[REDACTED]`.
#![forbid(unsafe_code)]

mod credential;
mod events;
mod sessions;

pub use credential::Credential;
pub use events::{EventData, EventKind};
pub use sessions::{
    AuthenticateRequest, AuthenticateResponse, CreateSessionRequest, DeviceRequest, DeviceView,
    ErrorBody, JwtSessionView, ReauthenticateRequest, RevokeRequest, RevokeResponse, RevokeScope,
    SessionList, SessionResponse, SessionView, UpgradeSessionRequest,
};

/// Accepted `session_duration_minutes`: 5 minutes to a year.
pub const DURATION_RANGE: std::ops::RangeInclusive<i64> = 5..=525_600;
