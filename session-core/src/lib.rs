//! The OIDC client and multi-account `SessionManager` apps embed. Filled by the session-core issue; intentionally empty until then.
