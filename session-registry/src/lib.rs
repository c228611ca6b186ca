//! The multi-tenant registry of device sessions. Filled by the session-registry issue; intentionally empty until then.
