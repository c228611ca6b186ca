//! End-to-end tests across the IdP, the registry and several devices. Filled as those crates land.
