//! The IdP's browser session: the cookie that names an IdP session in one browser, scoped to
//! `/{tenant}/` (so one tenant never sees another's), and the CSRF tokens of the forms that act
//! with it. A form that changes what the browser's session is or does (sign out, replace it with
//! a guest, approve a device with it) posts a token derived from the cookie's value: bound to the
//! browser that holds the cookie, unguessable without it, and needing no storage.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;

use crate::grants::IdpSession;
use crate::random;
use crate::tenant::Tenant;

pub const SESSION_COOKIE: &str = "lanyard_idp_session";

/// The forms a CSRF token is for: a token of one never passes for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfPurpose {
    /// The sign-out confirmation (`end_session`).
    EndSession,
    /// Replacing the browser's session with a new guest.
    Guest,
    /// Approving or denying a device on the device page.
    Device,
}

impl CsrfPurpose {
    fn label(self) -> &'static str {
        match self {
            CsrfPurpose::EndSession => "end_session",
            CsrfPurpose::Guest => "guest",
            CsrfPurpose::Device => "device",
        }
    }
}

/// The browser's live IdP session, with the value of the cookie naming it.
pub struct BrowserSession {
    cookie: String,
    pub session: IdpSession,
}

impl BrowserSession {
    /// The live IdP session named by the request's cookie, if any. A cookie of another tenant
    /// is simply unknown here: sessions are stored per tenant.
    pub fn of(tenant: &Tenant, req: &HttpRequest) -> Option<Self> {
        let cookie = req.cookie(SESSION_COOKIE)?;
        let session = tenant
            .grants
            .session_by_cookie(cookie.value(), tenant.now())?;
        Some(Self {
            cookie: cookie.value().to_owned(),
            session,
        })
    }

    /// The CSRF token of this browser's `purpose` form. The prefix keeps it apart from the
    /// cookie's fingerprint, which keys the session map.
    pub fn csrf_token(&self, purpose: CsrfPurpose) -> String {
        random::fingerprint(&format!(
            "lanyard mock-idp {} csrf\0{}",
            purpose.label(),
            self.cookie
        ))
    }

    /// Whether `presented` is this browser's `purpose` token (in constant time).
    pub fn csrf_matches(&self, purpose: CsrfPurpose, presented: Option<&str>) -> bool {
        random::constant_time_eq(
            presented.unwrap_or_default().as_bytes(),
            self.csrf_token(purpose).as_bytes(),
        )
    }
}

/// Signs `sub` in: again in the browser's live session when it is `sub`'s (a step-up keeps the
/// session, see [`GrantStore::sign_in_again`](crate::grants::GrantStore::sign_in_again)), else in
/// a new IdP session (another person's session in the browser stays as it is: its clients'
/// sessions are not ended by someone else signing in); builds the cookie naming it.
pub fn sign_in(
    tenant: &Tenant,
    sub: &str,
    https: bool,
    browser: Option<&BrowserSession>,
) -> (IdpSession, Cookie<'static>) {
    let ttl = Tenant::secs(tenant.lifetimes.idp_session);
    let now = tenant.now();
    let again = browser.and_then(|b| tenant.grants.sign_in_again(&b.cookie, sub, now, ttl));
    let ((handle, session), kind) = match again {
        Some(again) => (again, "idp_session_signed_in_again"),
        None => (
            tenant.grants.start_session(sub, now, ttl),
            "idp_session_started",
        ),
    };
    tenant.record(kind, Some(sub), None, format!("sid {}", session.sid));
    let cookie = Cookie::build(SESSION_COOKIE, handle)
        .path(format!("/{}/", tenant.id))
        .http_only(true)
        .secure(https)
        .same_site(SameSite::Lax)
        .max_age(ttl)
        .finish();
    (session, cookie)
}

/// The cookie that clears the browser's session cookie.
pub fn removal(tenant: &Tenant) -> Cookie<'static> {
    let mut removal = Cookie::build(SESSION_COOKIE, "")
        .path(format!("/{}/", tenant.id))
        .finish();
    removal.make_removal();
    removal
}
