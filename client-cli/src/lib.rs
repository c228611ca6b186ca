//! The `lanyard` command. Filled by the client-cli issue; intentionally empty until then.
