//! `lanyard`: sign in to several accounts, switch in one command, print tokens for scripts, see
//! and revoke devices. A thin layer over `session-core` and `account-store`.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod color;
pub mod config;
pub mod exit;
pub mod guest;
pub mod picker;
pub mod select;
pub mod vault_notice;
pub mod watch;
