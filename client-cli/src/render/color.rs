//! Colour, only where a person reads it: on a terminal, never with `NO_COLOR` set (any non-empty
//! value), forced on with `CLICOLOR_FORCE`, never in `--json` output or in what `token` prints.
//! The decision is anstream's (the one clap makes for its own help), per stream.

use anstream::ColorChoice;
use anstyle::{AnsiColor, Style};

/// Paints text for one stream, or leaves it plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    enabled: bool,
}

fn wanted(choice: ColorChoice) -> bool {
    choice != ColorChoice::Never
}

impl Paint {
    /// For stdout: a terminal, `NO_COLOR` unset (or `CLICOLOR_FORCE` set).
    pub fn stdout() -> Self {
        Self::new(wanted(anstream::AutoStream::choice(&std::io::stdout())))
    }

    /// For stderr (errors, hints, the picker).
    pub fn stderr() -> Self {
        Self::new(wanted(anstream::AutoStream::choice(&std::io::stderr())))
    }

    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    fn paint(self, style: Style, text: &str) -> String {
        if self.enabled {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    /// Valid, signed in, done.
    pub fn good(self, text: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), text)
    }

    /// Revoked, signed out, an error.
    pub fn bad(self, text: &str) -> String {
        self.paint(AnsiColor::Red.on_default(), text)
    }

    /// Offline, unknown, a warning.
    pub fn warn(self, text: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), text)
    }

    /// The active marker, headings.
    pub fn strong(self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    /// The text as it is (where a column is painted only sometimes).
    pub fn unstyled(self, text: &str) -> String {
        text.to_owned()
    }

    /// Secondary detail.
    pub fn dim(self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    /// The label of an error line on stderr.
    pub fn error_label(self, text: &str) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), text)
    }

    /// Pads `text` to `width` columns, then paints it, so escape codes never upset alignment.
    pub fn padded(self, text: &str, width: usize, how: fn(Self, &str) -> String) -> String {
        let pad = width.saturating_sub(text.chars().count());
        format!("{}{}", how(self, text), " ".repeat(pad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paint_adds_nothing_and_enabled_paint_wraps_in_escapes() {
        assert_eq!(Paint::new(false).good("valid"), "valid");
        let painted = Paint::new(true).bad("revoked");
        assert!(painted.starts_with('\u{1b}') && painted.contains("revoked"));
        assert!(painted.ends_with("\u{1b}[0m"), "{painted:?}");
    }

    #[test]
    fn padding_counts_the_text_not_the_escape_codes() {
        let p = Paint::new(true).padded("ok", 5, Paint::good);
        assert!(p.ends_with("   "), "{p:?}");
        assert_eq!(Paint::new(false).padded("ok", 5, Paint::good), "ok   ");
    }
}
