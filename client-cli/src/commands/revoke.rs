//! `lanyard revoke`: ends one session, the others, or all (a step-up sign-in when the registry
//! asks for one).

use serde_json::json;
use session_core::RevokeTarget;

use crate::context::{chosen, signed_in, Context};
use crate::exit::CliError;
use crate::sign_in::{step_up_method, STEP_UP_TIMEOUT};

pub async fn run(
    ctx: &Context,
    flag: Option<&str>,
    session_id: Option<String>,
    others: bool,
    all: bool,
) -> Result<(), CliError> {
    let target = match (session_id, others, all) {
        (Some(id), false, false) => RevokeTarget::Session(id),
        (None, true, false) => RevokeTarget::Others,
        (None, false, true) => RevokeTarget::All,
        _ => {
            return Err(CliError::usage(
                "give a SESSION_ID, --others or --all",
                Some("see `lanyard devices`"),
            ))
        }
    };
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    signed_in(&m, &a)?;
    let revoked = m
        .revoke_sessions(&a.key, target, Some(step_up_method(ctx, STEP_UP_TIMEOUT)))
        .await?;
    ctx.output.print(
        || format!("Revoked {} session(s)", revoked.len()),
        json!({"revoked": revoked}),
    )
}
