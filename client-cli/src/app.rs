//! The dispatcher: one match arm per command, handing the parsed arguments to its module in
//! `commands`. Nothing imports from here; what commands share lives in `context`, `render`,
//! `sign_in` and `browser`.
//!
//! `prompt`, `completions` and `man` run before the profile's config is read: they open no store
//! and must answer whatever state the profile is in (a prompt runs on every command line).

use std::time::Duration;

use crate::cli::{Cli, Command, Globals};
use crate::commands;
use crate::context::Context;
use crate::exit::CliError;

/// Runs the command `cli` asks for.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli { globals, command } = cli;
    match command {
        Command::Prompt {
            account,
            format,
            verbose,
        } => {
            commands::prompt::run(&globals, account.as_deref(), &format, verbose);
            Ok(())
        }
        Command::Completions {
            shell,
            static_script,
        } => commands::completions::run(shell, static_script),
        Command::Man { dir } => commands::man::run(dir.as_deref()),
        command => with_context(&globals, command).await,
    }
}

async fn with_context(globals: &Globals, command: Command) -> Result<(), CliError> {
    let ctx = Context::from_env(globals)?;
    match command {
        Command::Login {
            tenant,
            idp,
            registry,
            timeout,
            guest: true,
            session_duration,
            ..
        } => commands::login::guest(&ctx, tenant, idp, registry, timeout, session_duration).await,
        Command::Login {
            tenant,
            idp,
            registry,
            device_code,
            timeout,
            session_duration,
            ..
        } => {
            commands::login::run(
                &ctx,
                tenant,
                idp,
                registry,
                device_code,
                timeout,
                session_duration,
            )
            .await
        }
        Command::Upgrade {
            account,
            username,
            email,
            name,
        } => commands::upgrade::run(&ctx, account.as_deref(), username, email, name).await,
        Command::Accounts => commands::accounts::run(&ctx).await,
        Command::Switch { account } => commands::switch::run(&ctx, account.as_deref()).await,
        Command::Status { account } => commands::status::run(&ctx, account.as_deref()).await,
        Command::Token {
            account,
            kind,
            check_interval_secs,
        } => {
            commands::token::run(
                &ctx,
                account.as_deref(),
                kind,
                Duration::from_secs(check_interval_secs),
            )
            .await
        }
        Command::Devices { account } => commands::devices::run(&ctx, account.as_deref()).await,
        Command::Revoke {
            session_id,
            others,
            all,
            account,
        } => commands::revoke::run(&ctx, account.as_deref(), session_id, others, all).await,
        Command::Logout {
            account,
            all_accounts,
            everywhere,
        } => commands::logout::run(&ctx, account.as_deref(), all_accounts, everywhere).await,
        Command::Watch { account } => commands::watch::run(&ctx, account.as_deref()).await,
        Command::Exec {
            account,
            variable,
            command,
        } => commands::exec::run(&ctx, account.as_deref(), &variable, &command).await,
        Command::Pin { account, clear } => {
            commands::pin::run(&ctx, account.as_deref(), clear).await
        }
        Command::Config { action } => commands::config::run(&ctx, action),
        Command::Prompt { .. } | Command::Completions { .. } | Command::Man { .. } => {
            // Answered by `run` without a context.
            Ok(())
        }
    }
}
