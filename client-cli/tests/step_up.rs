#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `lanyard revoke --others` and `lanyard logout --everywhere` on a sign-in older than ten
//! minutes: the registry's RFC 9470 challenge is met by a fresh sign-in (`max_age=0`: the IdP
//! shows its login form again although the browser holds its session), of the same person or
//! nothing, and the command is retried once. The real binary, mock IdP and registry.
//!
//! `lanyard` reads the wall clock, so the sign-in is aged at the IdP: alice's browser signed in
//! there eleven minutes ago (the IdP's manual clock set back), and `lanyard login` in that
//! browser is answered by the IdP's session — an ID token issued now whose `auth_time` is eleven
//! minutes old, which is what the registry's ten-minute rule reads.

use std::process::{Output, Stdio};

mod common;

use common::{
    clock_moving_proxy, move_registry, read_url_and_stderr, stack_with, stack_with_registry_clock,
    stderr, Authorize, Browser, Stack,
};
use test_harness::TestIdp;

const ELEVEN_MINUTES: time::Duration = time::Duration::minutes(11);

/// alice on `laptop` (signed in at the IdP eleven minutes ago, in `browser`) and on `phone`
/// (just now).
async fn alice_on_laptop_and_phone(s: &Stack) -> Browser {
    let clock = s.idp.clock.clone().expect("the IdP on a manual clock");
    let browser = Browser::new();
    clock.advance(-ELEVEN_MINUTES);
    test_harness::idp::login_in(&browser.0, &s.idp.issuer("acme"), "alice", "lanyard-cli").await;
    clock.advance(ELEVEN_MINUTES);

    let mut child = s
        .cmd("laptop", &["login", "--tenant", "acme"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, _) = read_url_and_stderr(child.stderr.take().unwrap()).await;
    let Authorize::Redirect(callback) = browser.open(&url).await else {
        panic!("the IdP's session should answer the sign-in at once")
    };
    browser.follow(&callback).await;
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "laptop login: {}", stderr(&out));

    let mut child = s
        .cmd("phone", &["login", "--tenant", "acme"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, _) = read_url_and_stderr(child.stderr.take().unwrap()).await;
    test_harness::idp::sign_in_at(&url, "alice").await;
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "phone login: {}", stderr(&out));
    browser
}

/// Runs `args` on the laptop, meeting the sign-in it asks for in `browser` as `user`. Returns
/// the output, every stderr line, and whether the IdP showed its login form.
async fn run_with_step_up(
    s: &Stack,
    browser: &Browser,
    args: &[&str],
    user: &str,
) -> (Output, Vec<String>, bool) {
    let mut child = s
        .cmd("laptop", args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, rest) = read_url_and_stderr(child.stderr.take().unwrap()).await;
    assert!(url.contains("max_age=0"), "{url}");
    let form_shown = match browser.open(&url).await {
        Authorize::LoginForm {
            issuer,
            auth_request,
        } => {
            let callback = browser.submit(&issuer, &auth_request, user).await;
            browser.follow(&callback).await;
            true
        }
        Authorize::Redirect(callback) => {
            browser.follow(&callback).await;
            false
        }
    };
    let out = child.wait_with_output().await.unwrap();
    (out, rest.await.unwrap(), form_shown)
}

async fn code(s: &Stack, profile: &str, args: &[&str]) -> Option<i32> {
    s.run(profile, args).await.status.code()
}

#[tokio::test]
async fn revoke_others_on_an_old_sign_in_signs_in_afresh_then_revokes_the_others_and_keeps_this_device(
) {
    let s = stack_with(TestIdp::spawn_with_manual_clock().await).await;
    let browser = alice_on_laptop_and_phone(&s).await;
    let (out, lines, form_shown) =
        run_with_step_up(&s, &browser, &["revoke", "--others"], "alice").await;
    assert!(out.status.success(), "{lines:?}");
    assert!(
        form_shown,
        "max_age=0: the IdP asks again despite its session"
    );
    assert!(
        lines.iter().any(|l| l.contains("needs a recent sign-in")),
        "{lines:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Revoked 1 session(s)"
    );
    assert_eq!(code(&s, "phone", &["status"]).await, Some(3), "phone out");
    assert_eq!(
        code(&s, "laptop", &["status"]).await,
        Some(0),
        "laptop kept"
    );
}

#[tokio::test]
async fn a_step_up_sign_in_as_another_person_is_refused_and_nothing_is_revoked() {
    let s = stack_with(TestIdp::spawn_with_manual_clock().await).await;
    let browser = alice_on_laptop_and_phone(&s).await;
    let (out, lines, form_shown) =
        run_with_step_up(&s, &browser, &["revoke", "--others"], "bob").await;
    assert!(form_shown);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("error:") && l.contains("bob") && l.contains("alice")),
        "{lines:?}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(code(&s, "phone", &["status"]).await, Some(0), "phone kept");
    assert_eq!(
        code(&s, "laptop", &["status"]).await,
        Some(0),
        "laptop kept"
    );
    let devices = s.run("laptop", &["devices", "--json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn logout_everywhere_on_an_old_sign_in_signs_in_afresh_then_ends_every_session() {
    let s = stack_with(TestIdp::spawn_with_manual_clock().await).await;
    let browser = alice_on_laptop_and_phone(&s).await;
    let (out, lines, form_shown) =
        run_with_step_up(&s, &browser, &["logout", "--everywhere"], "alice").await;
    assert!(out.status.success(), "{lines:?}");
    assert!(form_shown);
    assert!(
        !lines.iter().any(|l| l.contains("could not revoke")),
        "{lines:?}"
    );
    assert_eq!(code(&s, "phone", &["status"]).await, Some(3), "phone out");
    assert_eq!(code(&s, "laptop", &["token"]).await, Some(3), "laptop out");
}

/// The registry's clock jumps eleven minutes right after it accepted the fresh sign-in, so the
/// retried revoke is challenged again: `lanyard` does not sign in a second time; it stops with
/// an error that says the fresh sign-in was not accepted as recent.
#[tokio::test]
async fn a_second_challenge_after_the_retry_ends_the_command_with_a_clear_error() {
    let (s, registry_clock) =
        stack_with_registry_clock(TestIdp::spawn_with_manual_clock().await).await;
    let browser = alice_on_laptop_and_phone(&s).await;
    let proxy = clock_moving_proxy(
        s.registry.clone(),
        registry_clock,
        "/v1/sessions/reauthenticate",
        ELEVEN_MINUTES,
    )
    .await;
    move_registry(&s, "laptop", &proxy);
    let (out, lines, form_shown) =
        run_with_step_up(&s, &browser, &["revoke", "--others"], "alice").await;
    assert!(form_shown);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("Open this URL"))
            .count(),
        1,
        "one sign-in, no loop: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("error:") && l.contains("still")),
        "{lines:?}"
    );
    assert_eq!(code(&s, "phone", &["status"]).await, Some(0), "phone kept");
    assert_eq!(
        code(&s, "laptop", &["token", "--kind", "id"]).await,
        Some(0),
        "a challenge is no sign-out"
    );
}
