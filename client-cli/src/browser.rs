//! Handing the authorization URL to the person: printed, and opened in the system browser where
//! there is a display to open it on.

use crate::context::Context;

/// Opens the system browser unless there is no display.
pub(crate) fn open_browser(url: &url::Url) -> bool {
    let has_display = cfg!(target_os = "macos")
        || cfg!(windows)
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display || std::env::var_os("SSH_CONNECTION").is_some() {
        return false;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url.as_str())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// Hands the authorization URL to the person: printed, and opened in a browser where possible
/// (not with `--no-browser` / `LANYARD_NO_BROWSER`).
pub(crate) struct BrowserPrompt {
    pub(crate) open: bool,
    /// A step-up: the person is told why they are asked again.
    pub(crate) step_up: bool,
}

impl session_core::oidc::AuthPrompt for BrowserPrompt {
    fn open(&self, url: &url::Url) {
        if self.step_up {
            eprintln!("This needs a recent sign-in; sign in again to confirm it is you.");
        }
        eprintln!("Open this URL to sign in: {url}");
        if !(self.open && open_browser(url)) {
            eprintln!("(no browser was opened: open the URL yourself)");
        }
    }
}

/// The sign-in prompt of `ctx`.
pub(crate) fn browser_prompt(ctx: &Context) -> &'static BrowserPrompt {
    if ctx.no_browser {
        &BrowserPrompt {
            open: false,
            step_up: false,
        }
    } else {
        &BrowserPrompt {
            open: true,
            step_up: false,
        }
    }
}

pub(crate) fn open_browser_possible() -> bool {
    cfg!(target_os = "macos")
        || cfg!(windows)
        || ((std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some())
            && std::env::var_os("SSH_CONNECTION").is_none())
}
