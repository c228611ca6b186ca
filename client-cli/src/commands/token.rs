//! `lanyard token`: a valid token of the chosen account on stdout, for scripts.

use std::io::Write;
use std::time::Duration;

use account_store::ItemKind;
use secrecy::ExposeSecret;

use crate::cli::TokenKind;
use crate::context::{chosen, signed_in, Context};
use crate::exit::CliError;
use crate::select::label;

/// How long `lanyard token` waits for the registry's answer to its session check.
const TOKEN_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(
    ctx: &Context,
    flag: Option<&str>,
    kind: TokenKind,
    check_interval: Duration,
) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    // A device that runs no `watch` still hears of a revoke within a minute of its next use;
    // a recent check (or an unreachable registry, asked once per interval) costs nothing.
    if m.store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_some()
    {
        m.check_session_if_stale(&a.key, check_interval, TOKEN_CHECK_TIMEOUT)
            .await?;
    }
    let value = match kind {
        TokenKind::Access => m.access_token(Some(&a.key)).await?,
        TokenKind::Id => m
            .store()
            .secrets()
            .get(&a.key, ItemKind::IdToken)?
            .ok_or_else(|| CliError::signed_out(format!("{} has no ID token", label(&a))))?,
        TokenKind::SessionJwt => {
            signed_in(&m, &a)?;
            m.verify_session(&a.key).await?;
            m.store()
                .secrets()
                .get(&a.key, ItemKind::SessionJwt)?
                .ok_or_else(|| CliError::signed_out(format!("{} is signed out", label(&a))))?
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", value.expose_secret()).map_err(CliError::other)
}
