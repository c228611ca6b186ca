//! What the "Your devices" page shows, as people know it from Google's and GitHub's account
//! pages: each session with its device, platform, when it signed in and when it was last active
//! in relative words (the exact time on hover), this device first and marked, a confirmation
//! before "sign out everywhere else", a layout that works at a phone's width, and labelled
//! controls. HTML only (maud); no script — the page's CSP allows none.

use actix_web::http::header;
use actix_web::HttpResponse;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::service::SessionView;

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse;width:100%}\
td,th{padding:.5rem .4rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
.this{font-weight:600}.badge{font-size:.8rem;background:#e6f0ff;color:#124;border-radius:.6rem;padding:.1rem .5rem;margin-left:.4rem}\
button{padding:.45rem .9rem;font-size:1rem}a.button{display:inline-block;padding:.45rem .9rem}\
.muted{color:#555}caption{text-align:left;padding-bottom:.3rem}\
@media (max-width:600px){thead{display:none}table,caption,tbody,tr,td{display:block;width:100%}\
tr{border-bottom:1px solid #ddd;padding:.5rem 0}td{border:none;padding:.15rem 0}\
td[data-label]::before{content:attr(data-label) \": \";color:#555}}";

/// A whole page with the security headers every page of this module carries.
pub(super) fn page(title: &str, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // Our own constant: not escaped (escaping would break its quotes).
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"))
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// RFC 3339, for `datetime` and the hover title.
fn exact(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `then` relative to `now` in words: "just now", "3 minutes ago", "2 hours ago", "5 days ago".
pub(super) fn relative(then: i64, now: i64) -> String {
    let ago = (now - then).max(0);
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one} ago")
        } else {
            format!("{n} {one}s ago")
        }
    };
    match ago {
        0..60 => "just now".to_owned(),
        60..3_600 => unit(ago / 60, "minute"),
        3_600..86_400 => unit(ago / 3_600, "hour"),
        86_400..2_592_000 => unit(ago / 86_400, "day"),
        _ => unit(ago / 2_592_000, "month"),
    }
}

fn time_cell(ts: i64, now: i64) -> Markup {
    let exact = exact(ts);
    html! { time datetime=(exact) title=(exact) { (relative(ts, now)) } }
}

/// This device first, then the others by last activity, most recent first.
fn ordered(sessions: &[SessionView]) -> Vec<&SessionView> {
    let mut out: Vec<&SessionView> = sessions.iter().collect();
    out.sort_by_key(|s| (!s.current, std::cmp::Reverse(s.device.last_seen)));
    out
}

/// The device list of the signed-in person.
pub(super) fn devices(
    tenant: &str,
    sessions: &[SessionView],
    csrf: &str,
    now: i64,
) -> HttpResponse {
    let who = sessions
        .iter()
        .find(|s| s.current)
        .map(|s| s.email.clone().unwrap_or_else(|| s.subject.clone()))
        .unwrap_or_default();
    let others = sessions.iter().filter(|s| !s.current).count();
    page(
        "Your devices",
        html! {
            h1 { "Your devices" }
            p { "Signed in as " strong id="who" { (who) } " in " (tenant) "." }
            table id="sessions" {
                caption.muted { "Where your account is signed in" }
                thead { tr { th scope="col" { "Device" } th scope="col" { "Platform" } th scope="col" { "Signed in" } th scope="col" { "Last active" } th scope="col" { span.muted { "Action" } } } }
                tbody {
                    @for s in ordered(sessions) {
                        tr.this[s.current] data-session=(s.session_id) {
                            td data-label="Device" {
                                (s.device.name)
                                @if s.current { span.badge id="this-device" { "This device" } }
                            }
                            td data-label="Platform" { (s.device.platform) }
                            td data-label="Signed in" { (time_cell(s.created_at, now)) }
                            td data-label="Last active" { (time_cell(s.device.last_seen, now)) }
                            td {
                                @if !s.current {
                                    form method="post" action=(format!("/devices/{tenant}/revoke")) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="session_id" value=(s.session_id);
                                        button type="submit" class="revoke" id=(format!("revoke-{}", s.session_id))
                                            aria-label=(format!("Sign out {} ({})", s.device.name, s.device.platform)) { "Sign out" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if others > 0 {
                form method="post" action=(format!("/devices/{tenant}/revoke")) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="scope" value="others";
                    p { button type="submit" id="sign-out-others" { "Sign out everywhere else" } }
                }
            }
        },
    )
}

/// Asked before "sign out everywhere else" does anything.
pub(super) fn confirm_sign_out_others(
    tenant: &str,
    others: &[&SessionView],
    csrf: &str,
) -> HttpResponse {
    let n = others.len();
    page(
        "Sign out everywhere else?",
        html! {
            h1 { "Sign out everywhere else?" }
            p {
                "This signs your account out of " strong id="count" { (n) " other " (if n == 1 { "session" } else { "sessions" }) }
                ". Those devices will need to sign in again. This device stays signed in."
            }
            ul { @for s in others { li { (s.device.name) " — " (s.device.platform) } } }
            form method="post" action=(format!("/devices/{tenant}/revoke")) {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="scope" value="others";
                input type="hidden" name="confirm" value="yes";
                button type="submit" id="confirm-sign-out-others" { "Sign out " (n) " other " (if n == 1 { "session" } else { "sessions" }) }
                " "
                a.button id="cancel" href=(format!("/devices/{tenant}")) { "Cancel" }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(relative(100, 130), "just now");
        assert_eq!(relative(0, 60), "1 minute ago");
        assert_eq!(relative(0, 180), "3 minutes ago");
        assert_eq!(relative(0, 7_200), "2 hours ago");
        assert_eq!(relative(0, 86_400), "1 day ago");
        assert_eq!(relative(0, 40 * 86_400), "1 month ago");
        assert_eq!(
            relative(200, 100),
            "just now",
            "a clock a little ahead is not the future"
        );
    }
}
