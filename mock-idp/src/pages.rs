//! Server-rendered HTML: the login page (user chooser + password form + guest button), the
//! device-code page, and plain error/notice pages. No JavaScript; maud escapes every value.

use maud::{html, Markup, DOCTYPE};

use crate::directory::User;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style {
                    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}"
                    "fieldset{border:1px solid #ccc;border-radius:.5rem;margin:1rem 0;padding:1rem}"
                    "label{display:block;margin:.3rem 0}button{padding:.5rem 1rem;margin-top:.5rem}"
                    ".error{color:#a00;font-weight:600}.muted{color:#666;font-size:.9rem}"
                }
            }
            body { (body) }
        }
    }
}

/// What the login page needs.
pub struct LoginPage<'a> {
    pub tenant: &'a str,
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub auth_request: &'a str,
    pub users: Vec<&'a User>,
    pub login_hint: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The guest form's CSRF token, when the browser has an IdP session a guest would replace.
    pub guest_csrf: Option<&'a str>,
}

pub fn login(p: &LoginPage<'_>) -> Markup {
    let hint = p.login_hint;
    let any_checked = p
        .users
        .iter()
        .any(|u| u.username.as_ref().map(|n| n.as_str()) == hint);
    layout(
        &format!("Sign in to {}", p.tenant),
        html! {
            h1 { "Sign in to " (p.tenant) }
            p.muted { "Application " code { (p.client_id) } " is asking you to sign in." }
            @if let Some(err) = p.error { p.error id="error" role="alert" { (err) } }
            form method="post" action=(format!("{}/login", p.issuer)) id="login-form" {
                input type="hidden" name="auth_request" value=(p.auth_request);
                fieldset {
                    legend { "Choose an account" }
                    @for (i, u) in p.users.iter().enumerate() {
                        @if let Some(name) = &u.username {
                            @let checked = Some(name.as_str()) == hint || (!any_checked && i == 0);
                            label {
                                input type="radio" name="username" value=(name) id=(format!("user-{name}")) checked[checked];
                                " " (name)
                                @if let Some(email) = &u.email { span.muted { " — " (email) } }
                            }
                        }
                    }
                }
                label for="password" { "Password" }
                input type="password" name="password" id="password" autocomplete="current-password" required;
                div { button type="submit" id="sign-in" { "Sign in" } }
            }
            form method="post" action=(format!("{}/guest", p.issuer)) id="guest-form" {
                input type="hidden" name="auth_request" value=(p.auth_request);
                @if let Some(token) = p.guest_csrf { input type="hidden" name="csrf_token" value=(token); }
                button type="submit" id="continue-as-guest" { "Continue as guest" }
            }
        },
    )
}

/// What the device page needs.
pub struct DevicePage<'a> {
    pub tenant: &'a str,
    pub issuer: &'a str,
    pub user_code: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The browser's signed-in account and the form's CSRF token; `None` shows the sign-in fields.
    pub signed_in: Option<SignedIn<'a>>,
}

/// A browser's signed-in account, as a page shows it, and the CSRF token of the page's form.
pub struct SignedIn<'a> {
    pub account: &'a str,
    pub csrf_token: &'a str,
}

/// The user-code page (RFC 8628 §3.3): approving or denying needs a signed-in person — the
/// browser's IdP session, or the sign-in fields on the page.
pub fn device(p: &DevicePage<'_>) -> Markup {
    let (tenant, issuer) = (p.tenant, p.issuer);
    layout(
        &format!("Connect a device to {tenant}"),
        html! {
            h1 { "Connect a device" }
            @match &p.signed_in {
                Some(s) => { p.muted { "Enter the code shown on your device. You are signed in to " (tenant) " as " strong { (s.account) } "." } }
                None => { p.muted { "Enter the code shown on your device and sign in to " (tenant) "." } }
            }
            @if let Some(err) = p.error { p.error id="error" role="alert" { (err) } }
            form method="post" action=(format!("{issuer}/device")) id="device-form" {
                label for="user_code" { "Code" }
                input type="text" name="user_code" id="user_code" value=(p.user_code.unwrap_or_default()) required;
                @match &p.signed_in {
                    Some(s) => { input type="hidden" name="csrf_token" value=(s.csrf_token); }
                    None => {
                        label for="username" { "Username" }
                        input type="text" name="username" id="username" autocomplete="username";
                        label for="password" { "Password" }
                        input type="password" name="password" id="password" autocomplete="current-password";
                    }
                }
                div {
                    button type="submit" name="action" value="approve" id="approve" { "Approve" }
                    " "
                    button type="submit" name="action" value="deny" id="deny" { "Deny" }
                }
            }
        },
    )
}

/// What the page asking before a guest replaces a signed-in account needs.
pub struct ReplaceWithGuestPage<'a> {
    pub tenant: &'a str,
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The signed-in account, as the person knows it.
    pub account: &'a str,
    pub auth_request: &'a str,
    pub csrf_token: &'a str,
}

/// Asks before a new guest replaces the browser's signed-in account (`prompt=create` may come
/// from any site); only its form, which carries the browser's CSRF token, makes the guest.
pub fn replace_with_guest(p: &ReplaceWithGuestPage<'_>) -> Markup {
    layout(
        &format!("Continue as a guest at {}", p.tenant),
        html! {
            h1 { "Continue as a new guest?" }
            p { "Application " code { (p.client_id) } " asks for a new guest account. You are signed in to " (p.tenant) " as " strong { (p.account) } "; continuing signs that account out of this browser." }
            form method="post" action=(format!("{}/guest", p.issuer)) id="guest-form" {
                input type="hidden" name="auth_request" value=(p.auth_request);
                input type="hidden" name="csrf_token" value=(p.csrf_token);
                button type="submit" id="continue-as-guest" { "Continue as a new guest" }
            }
            p.muted { "If you did not ask for this, close this page: you stay signed in as " (p.account) "." }
        },
    )
}

/// What the sign-out confirmation page needs.
pub struct EndSessionPage<'a> {
    pub tenant: &'a str,
    pub issuer: &'a str,
    /// The signed-in account, as the person knows it.
    pub account: &'a str,
    pub csrf_token: &'a str,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    /// Why the request could not be taken as it was.
    pub problem: Option<&'a str>,
}

/// Asks the person before a sign-out nobody trustworthy asked for; only its form ends the session.
pub fn end_session(p: &EndSessionPage<'_>) -> Markup {
    layout(
        &format!("Sign out of {}", p.tenant),
        html! {
            h1 { "Sign out of " (p.tenant) "?" }
            @if let Some(problem) = p.problem { p.error id="error" role="alert" { (problem) } }
            p { "You are signed in as " strong { (p.account) } ". Signing out ends this sign-in for every application that uses it." }
            form method="post" action=(format!("{}/end_session", p.issuer)) id="end-session-form" {
                input type="hidden" name="csrf_token" value=(p.csrf_token);
                @if let Some(v) = p.client_id { input type="hidden" name="client_id" value=(v); }
                @if let Some(v) = p.post_logout_redirect_uri { input type="hidden" name="post_logout_redirect_uri" value=(v); }
                @if let Some(v) = p.state { input type="hidden" name="state" value=(v); }
                button type="submit" name="confirm" value="yes" id="confirm-sign-out" { "Sign out" }
            }
            p.muted { "If you did not ask to sign out, close this page: you stay signed in." }
        },
    )
}

pub fn notice(title: &str, message: &str) -> Markup {
    layout(title, html! { h1 { (title) } p id="message" { (message) } })
}

pub fn error(message: &str) -> Markup {
    layout(
        "Sign-in error",
        html! {
            h1 { "This request cannot be completed" }
            p.error id="error" role="alert" { (message) }
            p.muted { "Return to the application and start again." }
        },
    )
}
