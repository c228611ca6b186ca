//! One module per command, each with its `run`: a new command is a module here, a variant of
//! `cli::Command` and its arm in `app::run`. Commands take what they share from `context`,
//! `render`, `sign_in` and `browser`, never from each other or from the dispatcher.

pub mod accounts;
pub mod completions;
pub mod config;
pub mod devices;
pub mod exec;
pub mod login;
pub mod logout;
pub mod man;
pub mod pin;
pub mod prompt;
pub mod revoke;
pub mod status;
pub mod switch;
pub mod token;
pub mod upgrade;
pub mod watch;
