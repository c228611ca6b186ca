//! The event stream (`GET /v1/events`, Server-Sent Events): what happened to a session of the
//! caller's account.

use serde::{Deserialize, Serialize};

/// What happened. Unknown kinds from a newer registry are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    Created,
    Extended,
    Revoked,
    Upgraded,
    #[serde(untagged)]
    Other(String),
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Created => "created",
            EventKind::Extended => "extended",
            EventKind::Revoked => "revoked",
            EventKind::Upgraded => "upgraded",
            EventKind::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "created" => EventKind::Created,
            "extended" => EventKind::Extended,
            "revoked" => EventKind::Revoked,
            "upgraded" => EventKind::Upgraded,
            other => EventKind::Other(other.to_owned()),
        }
    }
}

/// The `data:` of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventData {
    /// The event id (also the SSE `id:`, for `Last-Event-ID`).
    pub id: i64,
    pub tenant: String,
    pub account_id: String,
    pub session_id: String,
    pub kind: EventKind,
    /// When it happened (Unix time).
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_and_write_as_their_names_and_unknown_ones_are_kept() {
        for kind in ["created", "extended", "revoked", "upgraded", "renamed"] {
            let parsed: EventKind =
                serde_json::from_str(&format!("\"{kind}\"")).unwrap_or(EventKind::Created);
            assert_eq!(parsed.as_str(), kind);
            assert_eq!(EventKind::parse(kind), parsed);
            assert_eq!(
                serde_json::to_string(&parsed).unwrap_or_default(),
                format!("\"{kind}\"")
            );
        }
    }
}
