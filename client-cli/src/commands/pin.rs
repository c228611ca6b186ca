//! `lanyard pin ACCOUNT` / `lanyard pin --clear`: writes (or removes) `.lanyard.toml` in the
//! current directory, so every command run in it or below acts on ACCOUNT without a hand-edited
//! file. The account must be one of the profile's (by user@tenant, email, index or prefix).

use serde_json::json;

use crate::context::Context;
use crate::exit::CliError;
use crate::select::{self, label};

/// The pin file commands look for, upwards from the current directory.
const PIN_FILE: &str = ".lanyard.toml";

pub async fn run(ctx: &Context, account: Option<&str>, clear: bool) -> Result<(), CliError> {
    let dir = std::env::current_dir().map_err(CliError::other)?;
    let path = dir.join(PIN_FILE);
    if clear {
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(CliError::other(e)),
        };
        return ctx.output.print(
            || {
                if removed {
                    format!("Removed the pin in {}", dir.display())
                } else {
                    format!("No pin in {}", dir.display())
                }
            },
            json!({"pinned": null, "file": path, "removed": removed}),
        );
    }
    let query = account.ok_or_else(|| CliError::usage("name an account to pin", None))?;
    let m = ctx.manager()?;
    let (all, _) = m.store().index().snapshot()?;
    let target = select::find(&all, query)?.clone();
    let pinned = label(&target);
    // TOML basic string: the label is user@tenant, escaped all the same.
    let text = format!("account = {}\n", json!(pinned));
    account_store::write_atomic(&path, text.as_bytes())?;
    ctx.output.print(
        || format!("Pinned {pinned} to {} ({PIN_FILE})", dir.display()),
        json!({"pinned": pinned, "file": path}),
    )
}
