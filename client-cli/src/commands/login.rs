//! `lanyard login`: the browser (authorization code + PKCE on a loopback redirect) or the device
//! flow; `login --guest` in `guest`.

use std::time::Duration;

use session_core::LoginMethod;

use crate::browser::{browser_prompt, open_browser_possible};
use crate::context::Context;
use crate::exit::CliError;
use crate::render::{account_json, Spinner};
use crate::select::label;
use crate::sign_in::{login_request, tell_session_cap};

pub async fn run(
    ctx: &Context,
    tenant: Option<String>,
    idp: Option<String>,
    registry: Option<String>,
    device_code: bool,
    timeout: u64,
    session_duration: Duration,
) -> Result<(), CliError> {
    let request = login_request(ctx, tenant, idp, registry);
    let m = ctx.manager_with(Some(session_duration))?;
    let timeout = Duration::from_secs(timeout);
    let use_device = device_code || (!ctx.no_browser && !open_browser_possible());
    let meta = if use_device {
        let prompt = |code: &str, uri: &str, complete: Option<&str>| {
            eprintln!("To sign in, open {uri} on any device and enter the code {code}");
            if let Some(c) = complete {
                eprintln!("(or open {c})");
            }
        };
        let _spin = Spinner::start("Waiting for you to approve this device…");
        m.login(request, LoginMethod::DeviceCode(&prompt, timeout))
            .await?
    } else {
        let _spin = Spinner::start("Waiting for the sign-in to complete in your browser…");
        m.login(request, LoginMethod::Browser(browser_prompt(ctx), timeout))
            .await?
    };
    tell_session_cap(&m, &meta, session_duration);
    crate::vault_notice::once_per_profile(ctx, &m.store().backend_info());
    ctx.output.print(
        || {
            format!(
                "Signed in as {} ({})",
                label(&meta),
                meta.email.clone().unwrap_or_default()
            )
        },
        account_json(&meta, true),
    )
}

/// `lanyard login --guest`: the browser flow asking the IdP for a new guest (`prompt=create`).
/// The device-code flow has no way to ask for one, so `--guest` excludes `--device-code`.
pub async fn guest(
    ctx: &Context,
    tenant: Option<String>,
    idp: Option<String>,
    registry: Option<String>,
    timeout: u64,
    session_duration: Duration,
) -> Result<(), CliError> {
    let request = login_request(ctx, tenant, idp, registry);
    let m = ctx.manager_with(Some(session_duration))?;
    let meta = m
        .login_guest(request, browser_prompt(ctx), Duration::from_secs(timeout))
        .await?;
    tell_session_cap(&m, &meta, session_duration);
    crate::vault_notice::once_per_profile(ctx, &m.store().backend_info());
    ctx.output.print(
        || {
            if meta.is_guest {
                format!(
                    "Signed in as a guest: {} (register it later with `lanyard upgrade --username NAME`)",
                    label(&meta)
                )
            } else {
                format!("Signed in as {}", label(&meta))
            }
        },
        account_json(&meta, true),
    )
}
