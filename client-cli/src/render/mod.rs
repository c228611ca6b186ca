//! How commands speak: text for people or JSON for scripts on stdout (`--json`), colour only on a
//! terminal (`color`), timestamps, the account as JSON, a spinner on stderr while waiting.

pub mod color;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use account_store::AccountMeta;
use serde_json::{json, Value};

pub use color::Paint;

use crate::exit::CliError;
use crate::select::label;

/// Where a command's answer goes and in which form.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// JSON instead of text (`--json`).
    pub json: bool,
    /// Colour in the text (a terminal, no `NO_COLOR`, not `--json`).
    pub color: bool,
}

impl Output {
    /// Prints the answer: `human()` as text, or `json` pretty-printed with `--json`.
    pub fn print(&self, human: impl FnOnce() -> String, json: Value) -> Result<(), CliError> {
        let mut stdout = std::io::stdout().lock();
        let text = if self.json {
            serde_json::to_string_pretty(&json).map_err(CliError::other)?
        } else {
            human()
        };
        writeln!(stdout, "{text}").map_err(CliError::other)
    }

    /// The paint for the text on stdout.
    pub fn paint(&self) -> Paint {
        Paint::new(self.color)
    }
}

pub(crate) fn when(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn account_json(a: &AccountMeta, active: bool) -> Value {
    json!({
        "account": label(a),
        "key": a.key.as_str(),
        "issuer": a.id.issuer.as_str(),
        "subject": a.id.subject.as_str(),
        "email": a.email,
        "tenant": a.tenant,
        "guest": a.is_guest,
        "active": active,
        "registry": a.registry_url,
        "last_used_at": a.last_used_at.unix_timestamp(),
    })
}

pub(crate) struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub(crate) fn start(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
