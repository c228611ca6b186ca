//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCandidates;

use crate::commands::prompt::PromptFormat;
use crate::shell_completion::account_candidates;

/// What `lanyard --help` and `man lanyard` say after the options.
const AFTER_LONG_HELP: &str = "\
Which account a command acts on: --account (or LANYARD_ACCOUNT) > a .lanyard.toml with \
account = \"user@tenant\" in the current directory or a parent (`lanyard pin`) > the profile's \
active account (`lanyard switch`).

Exit status: 0 ok, 1 any other error, 2 usage (bad flags, unknown or ambiguous account), \
3 signed out or login needed, 4 network or server unavailable.

Shell integration: `lanyard completions bash|zsh|fish` prints a completion script that completes \
subcommands, flags and account names; `lanyard man --dir DIR` writes these manual pages; \
`lanyard prompt` prints the account in use for PS1 or starship.";

#[derive(Debug, Parser)]
#[command(
    name = "lanyard",
    version,
    about = "Sign in to several accounts, switch in one command, see and revoke your devices",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes.
#[derive(Debug, Args)]
pub struct Globals {
    /// An isolated store and device identity (one machine can act as several devices).
    #[arg(
        long,
        global = true,
        env = "LANYARD_PROFILE",
        default_value = "default"
    )]
    pub profile: String,
    /// Print data as JSON (a documented, stable shape).
    #[arg(long, global = true)]
    pub json: bool,
    /// Where config and data live (instead of the platform's directories).
    #[arg(long, global = true, env = "LANYARD_HOME", value_name = "DIR")]
    pub home: Option<std::path::PathBuf>,
    /// Where tokens are kept: auto, secret-service, keyutils, native, vault or memory (else the
    /// config file's store_backend, else auto).
    #[arg(long, global = true, env = "LANYARD_STORE_BACKEND", value_parser = parse_backend)]
    pub store_backend: Option<account_store::BackendChoice>,
    /// Refresh an access token this many seconds before it expires.
    #[arg(
        long,
        global = true,
        env = "LANYARD_REFRESH_MARGIN_SECS",
        default_value_t = 300,
        value_name = "SECS",
        value_parser = seconds("LANYARD_REFRESH_MARGIN_SECS")
    )]
    pub refresh_margin_secs: u64,
    /// Never open a browser: print the sign-in URL only.
    #[arg(long, global = true, env = "LANYARD_NO_BROWSER", value_parser = set_means_yes)]
    pub no_browser: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in: opens the browser (or prints the URL), or uses the device code flow.
    Login {
        #[arg(long, env = "LANYARD_TENANT")]
        tenant: Option<String>,
        /// The identity provider's base URL (issuers are `{idp}/{tenant}`).
        #[arg(long, env = "LANYARD_IDP")]
        idp: Option<String>,
        #[arg(long, env = "LANYARD_REGISTRY")]
        registry: Option<String>,
        /// Sign in on another device with a code (for SSH sessions and headless machines).
        #[arg(long)]
        device_code: bool,
        /// Seconds to wait for the sign-in to complete.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Sign in as a new guest (no username or password); `lanyard upgrade` registers it later.
        #[arg(long, conflicts_with = "device_code")]
        guest: bool,
        /// How long the device session lasts while in use: minutes, hours or days (`90m`, `12h`,
        /// `30d`), 5 minutes to 365 days. The tenant's absolute limit may cap it (you are told).
        #[arg(long, default_value = "30d", value_parser = parse_session_duration)]
        session_duration: std::time::Duration,
    },
    /// List signed-in accounts.
    Accounts,
    /// Make another account the active one (by user@tenant, email, index or unique prefix).
    /// Without ACCOUNT, pick one interactively (on a terminal only).
    Switch {
        #[arg(add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
    },
    /// The account in use, whether its session is still accepted, and where secrets are kept.
    Status {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
    },
    /// Print a valid token (and nothing else) on stdout, refreshing if needed.
    Token {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
        #[arg(long, value_enum, default_value_t = TokenKind::Access)]
        kind: TokenKind,
        /// Ask the registry whether the session was revoked when the last check is older than
        /// this many seconds (a revoke reaches this device within a minute of its next use).
        #[arg(
            long,
            env = "LANYARD_CHECK_INTERVAL_SECS",
            default_value_t = 60,
            value_parser = seconds("LANYARD_CHECK_INTERVAL_SECS")
        )]
        check_interval_secs: u64,
    },
    /// Every session of the account across devices.
    Devices {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
    },
    /// Run a command with a fresh access token of the account in its environment
    /// (LANYARD_ACCESS_TOKEN, or --env NAME) and LANYARD_ACCOUNT set; its exit code is passed
    /// through and the token never appears in its command line: `lanyard exec -- curl …`.
    Exec {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
        /// The environment variable the access token is put in.
        #[arg(long = "env", value_name = "NAME", default_value = "LANYARD_ACCESS_TOKEN",
              value_parser = crate::commands::exec::env_name)]
        variable: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Pin an account to the current directory (writes `.lanyard.toml`), or remove the pin.
    Pin {
        /// The account (user@tenant, email, index or unique prefix).
        #[arg(required_unless_present = "clear", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
        /// Remove this directory's pin.
        #[arg(long, conflicts_with = "account")]
        clear: bool,
    },
    /// Revoke a session by id, or every other session, or all.
    Revoke {
        session_id: Option<String>,
        #[arg(long, conflicts_with_all = ["session_id", "all"])]
        others: bool,
        #[arg(long, conflicts_with = "session_id")]
        all: bool,
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
    },
    /// Sign out of one account (default: the one in use), every account here, or everywhere.
    Logout {
        #[arg(long, env = "LANYARD_ACCOUNT", conflicts_with = "all_accounts",
              add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
        #[arg(long)]
        all_accounts: bool,
        /// Sign the account out on every device.
        #[arg(long, conflicts_with = "all_accounts")]
        everywhere: bool,
    },
    /// Stream session events (revoked elsewhere, refreshed, switched) as they happen.
    Watch {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
    },
    /// Turn a guest account into a registered one, keeping the account and its sessions. The
    /// password comes from LANYARD_UPGRADE_PASSWORD, or is asked for on a terminal.
    Upgrade {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
        /// The username to register.
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// The display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// The account this directory would use, for a shell prompt (PS1, starship): `alice@acme`,
    /// or nothing when there is none. Reads only files on disk (no network, no secret store)
    /// and never fails: any problem is empty output and exit 0 (--verbose says why on stderr).
    Prompt {
        #[arg(long, env = "LANYARD_ACCOUNT", add = ArgValueCandidates::new(account_candidates))]
        account: Option<String>,
        /// What to print, with placeholders {account} (user@tenant), {user}, {tenant}, {email},
        /// {profile} and {chosen_by} (flag, pin or active); `{{` and `}}` are braces.
        #[arg(long, default_value = "{account}", value_parser = PromptFormat::parse)]
        format: PromptFormat,
        /// Say on stderr why nothing was printed.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Shell completion script on stdout: subcommands, flags and account names (the script
    /// calls `lanyard` back on Tab, so it always matches the installed binary). Install with
    /// `source <(lanyard completions bash)` in ~/.bashrc (zsh alike), or
    /// `lanyard completions fish > ~/.config/fish/completions/lanyard.fish`.
    Completions {
        shell: clap_complete::Shell,
        /// A self-contained script instead (subcommands and flags, no account names).
        #[arg(long = "static")]
        static_script: bool,
    },
    /// Manual pages: `lanyard.1` on stdout, or every page (`lanyard.1`, `lanyard-SUBCOMMAND.1`)
    /// written into DIR (e.g. `lanyard man --dir ~/.local/share/man/man1`).
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Read or change settings: idp, registry, tenant, client_id, store_backend.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    Get { key: Option<String> },
    Set { key: String, value: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TokenKind {
    Access,
    Id,
    SessionJwt,
}

fn parse_backend(text: &str) -> Result<account_store::BackendChoice, String> {
    account_store::BackendChoice::parse(text).ok_or_else(|| {
        format!("'{text}' is not a store backend (auto, secret-service, keyutils, native, vault, memory; flag or LANYARD_STORE_BACKEND)")
    })
}

/// A whole number of seconds; the error names `env`, where such a value usually comes from.
fn seconds(env: &'static str) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync {
    move |text: &str| {
        text.trim()
            .parse()
            .map_err(|_| format!("'{text}' is not a whole number of seconds (flag or {env})"))
    }
}

/// `LANYARD_NO_BROWSER`: set to anything means yes (as it always has).
fn set_means_yes(_: &str) -> Result<bool, String> {
    Ok(true)
}

/// `90m`, `12h`, `30d` (or plain minutes) → a session lifetime of 5 minutes to 365 days.
pub fn parse_session_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'm'),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90m, 12h or 30d"))?;
    let minutes = match unit {
        'm' => Some(n),
        'h' => n.checked_mul(60),
        'd' => n.checked_mul(24 * 60),
        _ => None,
    }
    .ok_or_else(|| format!("'{text}' is not a duration like 90m, 12h or 30d"))?;
    if !(5..=365 * 24 * 60).contains(&minutes) {
        return Err(format!(
            "a session lasts 5 minutes to 365 days, not '{text}'"
        ));
    }
    Ok(std::time::Duration::from_secs(minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::parse_session_duration;
    use std::time::Duration;

    #[test]
    fn session_durations_read_as_minutes_hours_or_days_within_5_minutes_to_a_year() {
        assert_eq!(
            parse_session_duration("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            parse_session_duration("12h"),
            Ok(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            parse_session_duration("90m"),
            Ok(Duration::from_secs(90 * 60))
        );
        assert_eq!(
            parse_session_duration("45"),
            Ok(Duration::from_secs(45 * 60))
        );
        for bad in ["4m", "366d", "d", "-1d", "3w", "1.5h", ""] {
            assert!(parse_session_duration(bad).is_err(), "{bad}");
        }
    }
}
