//! `lanyard accounts`: the profile's accounts, the active one marked.

use account_store::ItemKind;
use serde_json::{json, Value};

use crate::context::Context;
use crate::exit::CliError;
use crate::render::{account_json, when, Paint};
use crate::select::label;

pub async fn run(ctx: &Context) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let all = m.accounts().await?;
    let active = m.active().await?.map(|a| a.key);
    let mut rows = Vec::new();
    for a in &all {
        let has_session = m
            .store()
            .secrets()
            .get(&a.key, ItemKind::SessionToken)?
            .is_some();
        rows.push((a, active.as_ref() == Some(&a.key), has_session));
    }
    let json = Value::Array(
        rows.iter()
            .map(|(a, act, s)| {
                let mut v = account_json(a, *act);
                v["session"] = json!(if *s { "stored" } else { "signed_out" });
                v
            })
            .collect(),
    );
    ctx.output.print(
        || {
            if rows.is_empty() {
                return "No accounts. Sign in with `lanyard login --tenant acme`.".into();
            }
            let mut out = format!(
                "{:<3} {:<2} {:<24} {:<28} {:<6} {:<11} {}",
                "#", "", "ACCOUNT", "EMAIL", "GUEST", "SESSION", "LAST USED"
            );
            let paint = ctx.output.paint();
            for (i, (a, act, s)) in rows.iter().enumerate() {
                out.push_str(&format!(
                    "\n{:<3} {} {} {:<28} {:<6} {} {}",
                    i + 1,
                    paint.padded(if *act { "*" } else { "" }, 2, Paint::good),
                    paint.padded(
                        &label(a),
                        24,
                        if *act { Paint::strong } else { Paint::unstyled }
                    ),
                    a.email.clone().unwrap_or_default(),
                    if a.is_guest { "yes" } else { "no" },
                    if *s {
                        paint.padded("stored", 11, Paint::good)
                    } else {
                        paint.padded("signed out", 11, Paint::bad)
                    },
                    when(a.last_used_at.unix_timestamp())
                ));
            }
            out
        },
        json,
    )
}
