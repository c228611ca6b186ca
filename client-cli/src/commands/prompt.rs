//! `lanyard prompt`: the account the current directory would use, in a short form for a shell
//! prompt (`alice@acme`), by the same rules as every command (`select::choose`: `--account` or
//! `LANYARD_ACCOUNT`, then `.lanyard.toml` upwards, then the active account).
//!
//! It runs on every command line, so it reads only the profile's on-disk index
//! (`account_index`): no config file, no secret store, no network. And it never fails: no
//! account, an unknown one, a missing or unreadable index, even a bad `LANYARD_*` value, are
//! empty output and exit 0, since anything on stderr would land in the middle of the prompt.
//! `--verbose` says why on stderr.

use std::ffi::OsString;
use std::io::Write as _;

use account_store::AccountMeta;
use serde_json::json;

use crate::account_index;
use crate::cli::{Cli, Globals};
use crate::exit::CliError;
use crate::select::{self, label, user_of, Rule};

/// `--format`: text with placeholders, parsed once when the command line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Account,
    User,
    Tenant,
    Email,
    Profile,
    ChosenBy,
}

const FIELDS: [(&str, Field); 6] = [
    ("account", Field::Account),
    ("user", Field::User),
    ("tenant", Field::Tenant),
    ("email", Field::Email),
    ("profile", Field::Profile),
    ("chosen_by", Field::ChosenBy),
];

impl PromptFormat {
    /// `{account}`, `{user}`, `{tenant}`, `{email}`, `{profile}`, `{chosen_by}`; `{{` and `}}`
    /// are literal braces; anything else in braces is refused, naming the placeholders.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if c == '{' {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("'{text}' has a '{{' that is never closed"))?;
                let name = &rest[1..end];
                let field = FIELDS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| *f)
                    .ok_or_else(|| {
                        format!(
                            "'{{{name}}}' is not a placeholder; use {}",
                            FIELDS
                                .iter()
                                .map(|(n, _)| format!("{{{n}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Field(field));
                rest = &rest[end + 1..];
            } else if c == '}' {
                return Err(format!("'{text}' has a lone '}}' (write '}}}}')"));
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self(pieces))
    }

    fn render(&self, a: &AccountMeta, rule: &Rule, profile: &str) -> String {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(t) => t.clone(),
                Piece::Field(Field::Account) => label(a),
                Piece::Field(Field::User) => user_of(a).to_owned(),
                Piece::Field(Field::Tenant) => a.tenant.clone().unwrap_or_else(|| "?".into()),
                Piece::Field(Field::Email) => a.email.clone().unwrap_or_default(),
                Piece::Field(Field::Profile) => profile.to_owned(),
                Piece::Field(Field::ChosenBy) => chosen_by(rule).to_owned(),
            })
            .collect()
    }
}

fn chosen_by(rule: &Rule) -> &'static str {
    match rule {
        Rule::Flag => "flag",
        Rule::PinFile(_) => "pin",
        Rule::Active => "active",
    }
}

/// Prints the account (or nothing); never fails.
pub fn run(globals: &Globals, flag: Option<&str>, format: &PromptFormat, verbose: bool) {
    let chosen = account_index::read(globals.home.as_deref(), &globals.profile).and_then(
        |disk| -> Result<_, CliError> {
            select::choose(&disk.accounts, flag, disk.active.as_ref())
        },
    );
    let line = match (&chosen, globals.json) {
        (Ok((a, rule)), false) => format.render(a, rule, &globals.profile),
        (Ok((a, rule)), true) => json!({
            "account": label(a),
            "user": user_of(a),
            "tenant": a.tenant,
            "email": a.email,
            "profile": globals.profile,
            "chosen_by": chosen_by(rule),
        })
        .to_string(),
        (Err(_), false) => String::new(),
        (Err(_), true) => "null".into(),
    };
    if let (Err(why), true) = (&chosen, verbose) {
        eprintln!("lanyard prompt: {why}");
    }
    if !line.is_empty() {
        // A closed pipe (a prompt that stopped reading) is no reason to fail either.
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

/// Whether a command line that did not parse is a `lanyard prompt` without `--verbose`: then
/// `main` prints nothing and exits 0, so a bad `LANYARD_*` value never lands in the prompt.
pub fn quiet_on_parse_error(args: impl IntoIterator<Item = OsString>) -> bool {
    let args: Vec<OsString> = args.into_iter().collect();
    // clap stops at the first bad value even when told to ignore errors, so a `--verbose` after
    // it is looked for by hand.
    if args.iter().any(|a| a == "--verbose" || a == "-v") {
        return false;
    }
    let Ok(matches) = <Cli as clap::CommandFactory>::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
    else {
        return false;
    };
    matches
        .subcommand_matches("prompt")
        .is_some_and(|m| !matches!(m.try_get_one::<bool>("verbose"), Ok(Some(true))))
}

#[cfg(test)]
mod tests {
    use super::{quiet_on_parse_error, Field, Piece, PromptFormat};
    use std::ffi::OsString;

    #[test]
    fn a_format_is_text_and_placeholders_and_refuses_unknown_ones_by_name() {
        assert_eq!(
            PromptFormat::parse("[{account}] {{x}}").unwrap(),
            PromptFormat(vec![
                Piece::Text("[".into()),
                Piece::Field(Field::Account),
                Piece::Text("] {x}".into()),
            ])
        );
        assert_eq!(PromptFormat::parse("{user}@{tenant}").unwrap().0.len(), 3);
        let err = PromptFormat::parse("{acount}").unwrap_err();
        assert!(
            err.contains("{acount}") && err.contains("{account}"),
            "{err}"
        );
        assert!(PromptFormat::parse("{account").is_err());
        assert!(PromptFormat::parse("a}b").is_err());
        assert_eq!(PromptFormat::parse("é{email}").unwrap().0.len(), 2);
    }

    fn args(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn only_a_prompt_without_verbose_swallows_a_parse_error() {
        assert!(quiet_on_parse_error(args(
            "lanyard --store-backend floppy prompt"
        )));
        assert!(!quiet_on_parse_error(args(
            "lanyard --store-backend floppy prompt --verbose"
        )));
        assert!(!quiet_on_parse_error(args(
            "lanyard --store-backend floppy token"
        )));
        assert!(!quiet_on_parse_error(args(
            "lanyard prompt --format {x} -v"
        )));
    }
}
