//! What every sign-in shares — `login`, `login --guest`, and the step-up sign-ins of `revoke`
//! and `logout --everywhere`: what to sign in to, how the person is asked, and what is said after.

use std::time::Duration;

use account_store::AccountMeta;
use session_core::{LoginMethod, LoginRequest, SessionManager};

use crate::browser::{open_browser_possible, BrowserPrompt};
use crate::config::{DEFAULT_CLIENT_ID, DEFAULT_IDP, DEFAULT_REGISTRY, DEFAULT_TENANT};
use crate::context::Context;
use crate::render::when;

/// How long a step-up sign-in may take.
pub(crate) const STEP_UP_TIMEOUT: Duration = Duration::from_secs(300);

/// After a sign-in: when the tenant's absolute limit cut the session shorter than asked, say so
/// (on stderr: stdout stays the documented output).
pub(crate) fn tell_session_cap(m: &SessionManager, meta: &AccountMeta, asked: Duration) {
    let note = m.session_note(&meta.key);
    let (Some(ends), Some(checked)) = (note.expires_at, note.last_checked_at) else {
        return;
    };
    let asked_secs = i64::try_from(asked.as_secs()).unwrap_or(i64::MAX);
    // A minute of slack: the registry's clock and ours.
    if ends - checked < asked_secs - 60 {
        eprintln!(
            "note: the session ends {} — the tenant's limit, shorter than the {} asked for; sign in again then",
            when(ends),
            human_duration(asked_secs)
        );
    }
}

fn human_duration(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

/// How a step-up sign-in (RFC 9470) happens: the browser where one can open, else the device
/// flow; the person is told why they are asked again.
pub(crate) fn step_up_method(ctx: &Context, timeout: Duration) -> LoginMethod<'static> {
    if !ctx.no_browser && !open_browser_possible() {
        LoginMethod::DeviceCode(&step_up_device_prompt, timeout)
    } else if ctx.no_browser {
        LoginMethod::Browser(
            &BrowserPrompt {
                open: false,
                step_up: true,
            },
            timeout,
        )
    } else {
        LoginMethod::Browser(
            &BrowserPrompt {
                open: true,
                step_up: true,
            },
            timeout,
        )
    }
}

fn step_up_device_prompt(code: &str, uri: &str, complete: Option<&str>) {
    eprintln!("This needs a recent sign-in. Confirm it is you: open {uri} on any device and enter the code {code}");
    if let Some(c) = complete {
        eprintln!("(or open {c})");
    }
}

/// What `login` (and `login --guest`) sign in to: flags over config over defaults.
pub(crate) fn login_request(
    ctx: &Context,
    tenant: Option<String>,
    idp: Option<String>,
    registry: Option<String>,
) -> LoginRequest {
    let tenant = tenant
        .or(ctx.config.tenant.clone())
        .unwrap_or_else(|| DEFAULT_TENANT.into());
    let idp = idp
        .or(ctx.config.idp.clone())
        .unwrap_or_else(|| DEFAULT_IDP.into());
    let registry = registry
        .or(ctx.config.registry.clone())
        .unwrap_or_else(|| DEFAULT_REGISTRY.into());
    LoginRequest {
        issuer: format!("{}/{tenant}", idp.trim_end_matches('/')),
        client_id: ctx
            .config
            .client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.into()),
        registry_url: Some(registry),
        tenant: Some(tenant),
    }
}
