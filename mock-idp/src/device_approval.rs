//! A person's decision on the device page (RFC 8628 §3.3): approve or deny the device waiting
//! with a user code. Deciding needs a signed-in person — the browser's IdP session (with the
//! page's CSRF token, so another site cannot decide with the cookie) or a sign-in on the page
//! itself — and guesses are bounded ([`crate::device_guesses`]): past a bound the submission is
//! refused before the code or the password is looked at. A refusal changes nothing.

use std::net::IpAddr;

use secrecy::SecretString;

use crate::browser_session::{BrowserSession, CsrfPurpose};
use crate::device_guesses::GuessRefusal;
use crate::directory::verify_sign_in;
use crate::grants::{Approver, DeviceDecisionRefusal};
use crate::tenant::Tenant;

/// The button the person pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    Approve,
    Deny,
}

/// Who decides.
pub enum Person<'a> {
    /// The browser's IdP session, and the CSRF token the form posted.
    Browser {
        browser: &'a BrowserSession,
        csrf_token: Option<&'a str>,
    },
    /// Someone signing in on the page.
    Credentials {
        username: String,
        password: SecretString,
    },
    /// Nobody: no session and no sign-in.
    Nobody,
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DeviceRefusal {
    #[error("{0}")]
    Limited(GuessRefusal),
    #[error("That code is unknown, expired or already used. Check the code on your device.")]
    UnknownCode,
    #[error("Sign in to approve or deny a device.")]
    NotSignedIn,
    #[error("Wrong username or password.")]
    WrongPassword,
    #[error("This decision was not made on this browser's device page, so nothing was changed. Reload the page and try again.")]
    CsrfMismatch,
    #[error("That code has just expired.")]
    NotWaiting,
    #[error("This device asks for a fresh sign-in. Enter your password to approve it.")]
    SignInTooOld,
    #[error("the password check did not run")]
    PasswordCheckFailed,
}

/// Takes `person`'s `action` on the device waiting with `user_code` (normalised), submitted
/// from `addr`; returns who decided.
pub async fn decide(
    tenant: &Tenant,
    addr: Option<IpAddr>,
    user_code: &str,
    action: DeviceAction,
    person: Person<'_>,
) -> Result<String, DeviceRefusal> {
    let now = tenant.now();
    tenant
        .device_guesses
        .lock()
        .check_address(addr, now)
        .map_err(|refusal| limited(tenant, refusal))?;
    if !tenant.grants.device_waiting(user_code, now) {
        tenant.device_guesses.lock().wrong_code(addr, now);
        return Err(DeviceRefusal::UnknownCode);
    }
    tenant
        .device_guesses
        .lock()
        .check_grant(user_code, now)
        .map_err(|refusal| limited(tenant, refusal))?;
    let (sub, session) = match person {
        Person::Browser {
            browser,
            csrf_token,
        } => {
            if !browser.csrf_matches(CsrfPurpose::Device, csrf_token) {
                tenant.record(
                    "device_csrf_refused",
                    Some(&browser.session.sub),
                    None,
                    "device decision without this browser's CSRF token; nothing changed",
                );
                return Err(DeviceRefusal::CsrfMismatch);
            }
            (browser.session.sub.clone(), Some(&browser.session))
        }
        Person::Credentials { username, password } => {
            let user = tenant.directory.read().user_by_name(&username).cloned();
            let user = crate::password_work::run(move || verify_sign_in(user, &password))
                .await
                .map_err(|_| DeviceRefusal::PasswordCheckFailed)?;
            let Some(user) = user else {
                tenant
                    .device_guesses
                    .lock()
                    .failed_sign_in(user_code, tenant.now());
                tenant.record(
                    "login_failed",
                    None,
                    None,
                    format!("device page, username '{}'", username.escape_default()),
                );
                return Err(DeviceRefusal::WrongPassword);
            };
            (user.sub, None)
        }
        Person::Nobody => return Err(DeviceRefusal::NotSignedIn),
    };
    let now = tenant.now();
    let (decided, kind) = match action {
        DeviceAction::Deny => (tenant.grants.deny_device(user_code, now), "device_denied"),
        DeviceAction::Approve => {
            let approver = match session {
                Some(s) => Approver::Session(s),
                None => Approver::SignedIn { sub: &sub },
            };
            let ttl = Tenant::secs(tenant.lifetimes.idp_session);
            (
                tenant.grants.approve_device(user_code, approver, now, ttl),
                "device_approved",
            )
        }
    };
    decided.map_err(|refusal| match refusal {
        DeviceDecisionRefusal::NotWaiting => DeviceRefusal::NotWaiting,
        DeviceDecisionRefusal::SignInTooOld => {
            tenant.record(
                "device_sign_in_too_old",
                Some(&sub),
                None,
                format!("user code {user_code}: the browser's sign-in is older than max_age"),
            );
            DeviceRefusal::SignInTooOld
        }
    })?;
    tenant.record(kind, Some(&sub), None, format!("user code {user_code}"));
    Ok(sub)
}

/// Audits a submission refused by a guess bound.
fn limited(tenant: &Tenant, refusal: GuessRefusal) -> DeviceRefusal {
    tenant.record("device_guess_limited", None, None, refusal.to_string());
    DeviceRefusal::Limited(refusal)
}
