//! What an app can observe: per-account session state and manager-wide events.

use account_store::AccountKey;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// The registry accepted the session when last asked.
    Available {
        session_id: String,
        expires_at: i64,
        last_validated_at: i64,
    },
    Unavailable {
        reason: UnavailableReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnavailableReason {
    /// Not yet checked since start.
    NotStarted,
    /// Signed out here, or the refresh token was rejected.
    SignedOut,
    /// Revoked from another device, by an admin, or by the IdP.
    RevokedRemotely,
    /// The registry cannot be reached; the tokens are kept.
    Offline { since: i64 },
    /// The account has no registry session.
    NoRegistry,
}

/// `Upgraded`: a guest account became a registered one (same account, same registry session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ManagerEvent {
    AccountAdded { account: AccountKey },
    Switched { account: AccountKey },
    Removed { account: AccountKey },
    Refreshed { account: AccountKey },
    RevokedRemotely { account: AccountKey },
    SignedOut { account: AccountKey },
    Upgraded { account: AccountKey },
}
