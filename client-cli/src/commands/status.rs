//! `lanyard status`: the chosen account, why it was chosen, its session as the registry sees it,
//! and the store.

use account_store::ItemKind;
use serde_json::json;
use session_core::SessionError;

use crate::context::{chosen, Context};
use crate::exit::CliError;
use crate::render::{account_json, when};
use crate::select::{label, Rule};

pub async fn run(ctx: &Context, flag: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (a, rule) = chosen(&m, flag).await?;
    let backend = m.store().backend_info();
    crate::vault_notice::once_per_profile(ctx, &backend);
    let has_session = m
        .store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_some();
    // A revoke the registry reports wipes this device's tokens at once (in the manager).
    let shown = if a.registry_url.is_none() {
        SessionShown::NoRegistry
    } else if !has_session {
        SessionShown::SignedOut(None)
    } else {
        match m.verify_session(&a.key).await {
            Ok(check) => SessionShown::Valid {
                until: check.expires_at,
            },
            Err(SessionError::ReauthenticationRequired { reason, .. }) => {
                SessionShown::SignedOut(Some(reason))
            }
            Err(e) if e.is_transient() => SessionShown::Unreachable(e),
            Err(e) => return Err(e.into()),
        }
    };
    let session = shown.text();
    let valid_until = match &shown {
        SessionShown::Valid { until } => Some(*until),
        _ => None,
    };
    let why = match &rule {
        Rule::Flag => "--account / LANYARD_ACCOUNT".to_owned(),
        Rule::PinFile(p) => format!("pinned by {p}"),
        Rule::Active => "the profile's active account".to_owned(),
    };
    let json = json!({
        "account": account_json(&a, rule == Rule::Active),
        "chosen_by": rule,
        "session": session,
        "session_valid_until": valid_until,
        "access_token_expires_at": a.access_token_expires_at,
        "can_refresh": !a.no_refresh_token,
        "store": {"backend": backend.name, "location": backend.location},
    });
    let paint = ctx.output.paint();
    let session_text = match &shown {
        SessionShown::Valid { .. } => paint.good(&session),
        SessionShown::SignedOut(_) => paint.bad(&session),
        SessionShown::NoRegistry | SessionShown::Unreachable(_) => paint.warn(&session),
    };
    ctx.output.print(
        || {
            format!(
                "Account:  {} ({})\nChosen:   {why}\nSession:  {session_text}{}\nToken:    access token expires {}{}\nStore:    {} — {}",
                paint.strong(&label(&a)),
                a.email.clone().unwrap_or_default(),
                valid_until.map(|t| format!(", valid until {}", when(t))).unwrap_or_default(),
                a.access_token_expires_at.map(when).unwrap_or_else(|| "-".into()),
                if a.no_refresh_token {
                    paint.warn(" (no refresh token: the session cannot refresh; sign in again when it expires)")
                } else {
                    String::new()
                },
                backend.name,
                backend.location
            )
        },
        json,
    )?;
    match shown {
        SessionShown::SignedOut(_) => {
            Err(CliError::signed_out(format!("{} is signed out", label(&a))))
        }
        // The state shown is unknown: say so in the exit code too (README: 4).
        SessionShown::Unreachable(e) => Err(e.into()),
        SessionShown::Valid { .. } | SessionShown::NoRegistry => Ok(()),
    }
}

/// What `status` learnt of the session, and how it says it.
enum SessionShown {
    NoRegistry,
    /// Signed out here (with the registry's reason when it just said so).
    SignedOut(Option<String>),
    Valid {
        until: i64,
    },
    Unreachable(SessionError),
}

impl SessionShown {
    fn text(&self) -> String {
        match self {
            SessionShown::NoRegistry => "no registry session".into(),
            SessionShown::SignedOut(None) => "signed out".into(),
            SessionShown::SignedOut(Some(reason)) => format!("signed out ({reason})"),
            SessionShown::Valid { .. } => "valid".into(),
            SessionShown::Unreachable(e) => format!("unknown: registry unreachable ({e})"),
        }
    }
}
