//! `lanyard config get|set`: the profile-independent config file.

use serde_json::{json, Value};

use crate::cli::ConfigAction;
use crate::config::KEYS;
use crate::context::Context;
use crate::exit::CliError;

pub fn run(ctx: &Context, action: ConfigAction) -> Result<(), CliError> {
    match action {
        ConfigAction::Get { key: Some(key) } => {
            if !KEYS.contains(&key.as_str()) {
                return Err(CliError::usage(
                    format!("unknown key '{key}'"),
                    Some("keys: idp, registry, tenant, client_id, store_backend"),
                ));
            }
            let value = ctx.config.get(&key).map(str::to_owned);
            ctx.output
                .print(|| value.clone().unwrap_or_default(), json!({ key: value }))
        }
        ConfigAction::Get { key: None } => {
            let all: serde_json::Map<String, Value> = KEYS
                .iter()
                .map(|k| ((*k).to_owned(), json!(ctx.config.get(k))))
                .collect();
            ctx.output.print(
                || {
                    KEYS.iter()
                        .map(|k| format!("{k} = {}", ctx.config.get(k).unwrap_or("(default)")))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                Value::Object(all),
            )
        }
        ConfigAction::Set { key, value } => {
            let mut cfg = ctx.config.clone();
            cfg.set(&key, value).map_err(|e| CliError::usage(e, None))?;
            ctx.dirs.save(&cfg)?;
            Ok(())
        }
    }
}
