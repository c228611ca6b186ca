//! `lanyard devices`: the account's sessions on every device.

use crate::context::{chosen, signed_in, Context};
use crate::exit::CliError;
use crate::render::when;

pub async fn run(ctx: &Context, flag: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    signed_in(&m, &a)?;
    let sessions = m.list_sessions(&a.key).await?;
    ctx.output.print(
        || {
            let mut out = format!(
                "{:<2} {:<34} {:<28} {:<8} {}",
                "", "SESSION", "DEVICE", "PLATFORM", "LAST SEEN"
            );
            for s in &sessions {
                out.push_str(&format!(
                    "\n{:<2} {:<34} {:<28} {:<8} {}",
                    if s.current { "*" } else { "" },
                    s.session_id,
                    s.device.name,
                    s.device.platform,
                    when(s.device.last_seen)
                ));
            }
            out
        },
        serde_json::to_value(&sessions).map_err(CliError::other)?,
    )
}
