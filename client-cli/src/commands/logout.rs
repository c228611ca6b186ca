//! `lanyard logout`: one account, every account of the device, or one account everywhere.

use serde_json::json;
use session_core::LogoutScope;

use crate::context::{chosen, Context};
use crate::exit::CliError;
use crate::sign_in::{step_up_method, STEP_UP_TIMEOUT};

pub async fn run(
    ctx: &Context,
    flag: Option<&str>,
    all_accounts: bool,
    everywhere: bool,
) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let scope = if all_accounts {
        LogoutScope::Device
    } else {
        let (a, _) = chosen(&m, flag).await?;
        if everywhere {
            LogoutScope::Everywhere(a.key)
        } else {
            LogoutScope::Account(a.key)
        }
    };
    let report = if matches!(scope, LogoutScope::Everywhere(_)) {
        m.logout_with_step_up(scope, Some(step_up_method(ctx, STEP_UP_TIMEOUT)))
            .await?
    } else {
        m.logout(scope).await?
    };
    for what in &report.not_revoked {
        eprintln!("warning: could not revoke {what}; it was removed from this device anyway");
    }
    ctx.output.print(
        || format!("Signed out of {} account(s)", report.removed.len()),
        json!({"removed": report.removed.iter().map(|k| k.as_str()).collect::<Vec<_>>(), "not_revoked": report.not_revoked}),
    )
}
