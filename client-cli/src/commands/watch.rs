//! `lanyard watch`: session events as they happen, one line each (JSON with `--json`).
//!
//! Two sources, followed at once:
//! - the registry's event stream for the watched account: `revoked` (here or elsewhere),
//!   `upgraded`, … as the registry sends them; a revoke of this device's session signs the
//!   account out here and ends the watch with exit code 3;
//! - the profile's account index (`accounts.json`), which every `lanyard` process of the profile
//!   writes: a change of the active pointer is `switched`, a change of an account's stored
//!   access-token expiry is `refreshed`, whichever process (this one or another) did it. The
//!   index is polled every 500 ms (a `stat`, and a parse only when it changed): it is replaced by
//!   an atomic rename on every write, which a poll sees as reliably as a file watcher would, with
//!   no platform watcher to set up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use account_store::ItemKind;
use account_store::{AccountIndex, AccountKey, AccountMeta};
use lanyard_clock::Clock;
use registry_api::{EventData, EventKind};
use serde_json::{json, Value};
use session_core::registry::RegistryClient;
use session_core::{SessionError, SessionManager};

use crate::context::{chosen, signed_in, Context};
use crate::exit::CliError;
use crate::render::{when, Paint};
use crate::select::label;

/// How often the account index is looked at.
const POLL: Duration = Duration::from_millis(500);

/// Prints one event per line and flushes, so a pipe sees it at once.
#[derive(Clone, Copy)]
struct Printer {
    json: bool,
    paint: Paint,
}

impl Printer {
    fn line(self, json: Value, human: String) {
        let text = if self.json { json.to_string() } else { human };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn switched(self, to: &AccountMeta, from: Option<&AccountMeta>) {
        let at = to.last_used_at.unix_timestamp();
        self.line(
            json!({
                "event": "switched",
                "account": label(to),
                "key": to.key.as_str(),
                "from": from.map(label),
                "at": at,
            }),
            format!(
                "{} {} to {}{}",
                when(at),
                self.paint.strong("switched"),
                self.paint.strong(&label(to)),
                from.map(|f| format!(" (from {})", label(f)))
                    .unwrap_or_default()
            ),
        );
    }

    fn refreshed(self, a: &AccountMeta, at: i64) {
        self.line(
            json!({
                "event": "refreshed",
                "account": label(a),
                "key": a.key.as_str(),
                "access_token_expires_at": a.access_token_expires_at,
                "at": at,
            }),
            format!(
                "{} {} {}: access token valid until {}",
                when(at),
                self.paint.good("refreshed"),
                label(a),
                a.access_token_expires_at
                    .map(when)
                    .unwrap_or_else(|| "-".into())
            ),
        );
    }

    fn registry_event(self, account: &AccountMeta, event: &EventData, this_device: bool) {
        let (at, session, kind) = (event.at, &event.session_id, event.kind.as_str());
        let kind_text = match event.kind {
            EventKind::Revoked => self.paint.bad(kind),
            _ => self.paint.strong(kind),
        };
        self.line(
            json!({
                "event": kind,
                "account": label(account),
                "session_id": session,
                "this_device": this_device,
                "at": at,
            }),
            format!(
                "{} {kind_text} session {session} of {}{}",
                when(at),
                label(account),
                if this_device { " (this device)" } else { "" }
            ),
        );
    }
}

/// What of the index a watcher compares.
struct Seen {
    stamp: Option<(SystemTime, u64, u64)>,
    accounts: Vec<AccountMeta>,
    active: Option<AccountKey>,
}

/// When the index was last replaced: its modification time, length and (on Unix) inode. Every
/// write is a new file renamed over the old one, so the inode tells two writes apart even within
/// one tick of a coarse file-system clock.
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some((m.modified().ok()?, m.len(), inode))
}

fn read_index(dir: &Path) -> Result<Seen, account_store::StoreError> {
    let index = AccountIndex::new(dir);
    let stamp = stamp(index.path());
    let (accounts, active) = index.snapshot()?;
    Ok(Seen {
        stamp,
        accounts,
        active,
    })
}

/// Follows the index until an error that is not worth retrying; prints `switched` and
/// `refreshed` events.
async fn follow_index(dir: PathBuf, printer: Printer, mut seen: Seen) -> Result<(), CliError> {
    let clock = lanyard_clock::SystemClock;
    let mut complained = false;
    loop {
        tokio::time::sleep(POLL).await;
        let d = dir.clone();
        let path = AccountIndex::new(&d).path().to_owned();
        if stamp(&path) == seen.stamp && seen.stamp.is_some() {
            continue;
        }
        let next = match tokio::task::spawn_blocking(move || read_index(&d)).await {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                // A damaged index is left alone by every writer; say so once and keep watching
                // (it may be restored).
                if !complained {
                    eprintln!("warning: cannot read the account index ({e}); still watching");
                    complained = true;
                }
                continue;
            }
            Err(e) => return Err(CliError::other(format!("watching the index failed: {e}"))),
        };
        complained = false;
        let find = |accounts: &[AccountMeta], key: &AccountKey| {
            accounts.iter().find(|a| &a.key == key).cloned()
        };
        if next.active != seen.active {
            if let Some(to) = next.active.as_ref().and_then(|k| find(&next.accounts, k)) {
                let from = seen.active.as_ref().and_then(|k| find(&seen.accounts, k));
                printer.switched(&to, from.as_ref());
            }
        }
        let now = clock.now().unix_timestamp();
        for a in &next.accounts {
            let before = seen.accounts.iter().find(|b| b.key == a.key);
            if let Some(b) = before {
                if a.access_token_expires_at.is_some()
                    && a.access_token_expires_at != b.access_token_expires_at
                {
                    printer.refreshed(a, now);
                }
            }
        }
        seen = next;
    }
}

/// Follows the registry's event stream for `a`, reconnecting after errors. Returns when this
/// device's session is revoked (the account is then signed out here). A session replaced by a
/// `lanyard login` to the account elsewhere in the profile (which ends the session it replaces)
/// is not a sign-out: the watch goes on with the new one.
async fn follow_registry(
    m: &SessionManager,
    a: &AccountMeta,
    client: &RegistryClient,
    token: secrecy::SecretString,
    current: Option<String>,
    printer: Printer,
) -> Result<(), CliError> {
    let (mut token, mut current) = (token, current);
    let mut last = None;
    loop {
        let mut revoked_here = false;
        let result = client
            .follow_events(&token, last.as_deref(), a.key.as_str(), |e| {
                let here = current.as_deref() == Some(e.session_id.as_str());
                printer.registry_event(a, &e, here);
                if e.kind == EventKind::Revoked && here {
                    revoked_here = true;
                    return false;
                }
                true
            })
            .await;
        match result {
            Ok(id) => last = id.or(last),
            Err(SessionError::ReauthenticationRequired { .. }) => revoked_here = true,
            Err(e) => eprintln!("event stream interrupted ({e}); reconnecting"),
        }
        if revoked_here {
            if m.session_gone(&a.key, &token).await? {
                return Err(CliError::signed_out(format!(
                    "{} was signed out on this device from elsewhere",
                    label(a)
                )));
            }
            eprintln!(
                "{} was signed in again in this profile; following its new session",
                label(a)
            );
            (token, current) = this_session(m, a).await?;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The session token of `a` and the id of its session, as the registry says (an answer that the
/// session is gone signs it out here, through the manager).
async fn this_session(
    m: &SessionManager,
    a: &AccountMeta,
) -> Result<(secrecy::SecretString, Option<String>), CliError> {
    m.verify_session(&a.key).await?;
    let current = m
        .list_sessions(&a.key)
        .await?
        .into_iter()
        .find(|s| s.current)
        .map(|s| s.session_id);
    let token = m
        .store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .ok_or_else(|| CliError::signed_out(format!("{} is signed out", label(a))))?;
    Ok((token, current))
}

pub async fn run(ctx: &Context, flag: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    let dir = ctx.dirs.profile(&ctx.profile);
    // The baseline comes first: a switch or refresh from now on is reported.
    let d = dir.clone();
    let seen = tokio::task::spawn_blocking(move || read_index(&d))
        .await
        .map_err(CliError::other)??;
    signed_in(&m, &a)?;
    // Both go through the manager: an answer that the session is gone wipes it here at once.
    let (token, current) = this_session(&m, &a).await?;
    let client = RegistryClient::new(a.registry_url.as_deref().unwrap_or_default());
    let printer = Printer {
        json: ctx.output.json,
        paint: if ctx.output.json {
            Paint::new(false)
        } else {
            Paint::stdout()
        },
    };
    eprintln!(
        "Watching {} and this profile's switches and refreshes (Ctrl-C to stop)",
        label(&a)
    );
    tokio::select! {
        r = follow_registry(&m, &a, &client, token, current, printer) => r,
        r = follow_index(dir, printer, seen) => r,
    }
}
