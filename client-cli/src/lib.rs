//! `lanyard`: sign in to several accounts, switch in one command, print tokens for scripts, see
//! and revoke devices. A thin layer over `session-core` and `account-store`.
#![forbid(unsafe_code)]

pub mod account_index;
pub mod app;
pub mod browser;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod exit;
pub mod picker;
pub mod render;
pub mod select;
pub mod shell_completion;
pub mod sign_in;
pub mod vault_notice;
