//! Per-account keyed secure storage. Filled by the account-store issue; intentionally empty until then.
