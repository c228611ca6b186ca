#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `lanyard` end to end: the real binary against the real mock IdP and registry, with a
//! passphrase vault per test home.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
mod common;
#[path = "cli/shell.rs"]
mod shell;

use common::{
    age_access_tokens, bin, event_streams_attached, read_url, stack, stack_with, stderr, Stack,
};
use test_harness::TestIdp;
use tokio::io::{AsyncBufReadExt, BufReader};

impl Stack {
    /// `lanyard` on a pseudo-terminal, through util-linux `script`: what is written to the
    /// child's stdin reaches `lanyard` as key presses, and its terminal output comes back on
    /// stdout.
    fn pty_cmd(&self, profile: &str, args: &[&str]) -> tokio::process::Command {
        let mut line = format!("exec '{}' --profile {profile}", bin().display());
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        let mut c = tokio::process::Command::new("script");
        c.args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .env("TERM", "xterm-256color");
        self.isolate(&mut c)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn active(&self, profile: &str) -> String {
        let active: Vec<Value> = self
            .accounts(profile)
            .await
            .into_iter()
            .filter(|a| a["active"] == true)
            .collect();
        active[0]["account"].as_str().unwrap().to_owned()
    }

    /// `lanyard login` for `user`, completing the IdP's form over HTTP as a browser would.
    async fn login(&self, profile: &str, tenant: &str, user: &str) {
        let mut child = self
            .cmd(profile, &["login", "--tenant", tenant])
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let url = read_url(child.stderr.take().unwrap()).await;
        complete_login_form(&url, user).await;
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "login failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    async fn accounts(&self, profile: &str) -> Vec<Value> {
        let out = self.run(profile, &["accounts", "--json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Reads stderr until the sign-in URL appears.
async fn complete_login_form(url: &str, user: &str) {
    test_harness::idp::sign_in_at(url, user).await;
}

#[tokio::test]
async fn login_in_headless_chromium_then_accounts_shows_the_account() {
    let s = stack().await;
    let browser = test_harness::browser::Browser::start().await;
    let mut child = s
        .cmd("default", &["login", "--tenant", "acme"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = read_url(child.stderr.take().unwrap()).await;
    browser.goto(&url).await.unwrap();
    browser
        .find(fantoccini::Locator::Id("user-bob"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(fantoccini::Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("lanyard-dev")
        .await
        .unwrap();
    browser
        .find(fantoccini::Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signed in as bob@acme"));
    let accounts = s.accounts("default").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["account"], "bob@acme");
    assert_eq!(accounts[0]["active"], true);
    browser.close().await;
}

#[tokio::test]
async fn the_device_code_flow_signs_in_without_a_browser_on_this_machine() {
    let s = stack().await;
    let mut child = s
        .cmd("default", &["login", "--tenant", "acme", "--device-code"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("enter the code ").nth(1) {
                return rest.trim().to_owned();
            }
        }
        panic!("no user code printed")
    })
    .await
    .unwrap();
    let res = s
        .idp
        .http
        .post(format!("{}/device", s.idp.issuer("acme")))
        .form(&[
            ("user_code", code.as_str()),
            ("username", "alice"),
            ("password", "lanyard-dev"),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(s.accounts("default").await[0]["account"], "alice@acme");
}

#[tokio::test]
async fn token_prints_only_a_token_and_switch_picks_by_name_index_or_prefix() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "globex", "carol").await;
    let out = s.run("default", &["token"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT and nothing else: {token}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);

    for (query, want) in [
        ("alice@acme", "alice@acme"),
        ("2", "carol@globex"),
        ("car", "carol@globex"),
        ("alice@acme.example", "alice@acme"),
    ] {
        let out = s.run("default", &["switch", query]).await;
        assert!(out.status.success(), "{query}: {}", stderr(&out));
        let active: Vec<Value> = s
            .accounts("default")
            .await
            .into_iter()
            .filter(|a| a["active"] == true)
            .collect();
        assert_eq!(active[0]["account"], want, "{query}");
    }
    let out = s
        .run(
            "default",
            &["token", "--account", "carol@globex", "--kind", "id"],
        )
        .await;
    assert!(out.status.success());
    let out = s.run("default", &["token", "--kind", "session-jwt"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn unknown_and_ambiguous_accounts_are_usage_errors_that_change_nothing() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "globex", "alice").await;
    let before = s.accounts("default").await;
    let out = s.run("default", &["switch", "nobody"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no account matches 'nobody'"),
        "{}",
        stderr(&out)
    );
    let out = s.run("default", &["switch", "alice"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("alice@acme") && err.contains("alice@globex"),
        "the candidates are listed: {err}"
    );
    assert_eq!(s.accounts("default").await, before, "nothing changed");
    let out = s.run("default", &["token", "--account", "zed"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn revoke_others_on_one_device_signs_the_other_out_and_watch_prints_it() {
    let s = stack().await;
    s.login("laptop", "acme", "alice").await;
    s.login("phone", "acme", "alice").await;
    let streams = s.hub.subscribers();
    let watch = s
        .cmd("phone", &["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    event_streams_attached(&s, streams + 1).await;
    let out = s.run("laptop", &["revoke", "--others"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let watched = tokio::time::timeout(Duration::from_secs(15), watch.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        watched.status.code(),
        Some(3),
        "watch ends with 'signed out'"
    );
    let line = String::from_utf8_lossy(&watched.stdout);
    assert!(
        line.contains(r#""event":"revoked""#) && line.contains(r#""this_device":true"#),
        "{line}"
    );
    let out = s.run("phone", &["status"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = s.run("laptop", &["status", "--json"]).await;
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["session"], "valid");
    assert_eq!(status["store"]["backend"], "vault");
    assert_eq!(status["chosen_by"], "active");
    let out = s.run("laptop", &["devices", "--json"]).await;
    let devices: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn logging_in_again_ends_the_replaced_session_and_a_running_watch_follows_the_new_one() {
    let s = stack().await;
    s.login("laptop", "acme", "alice").await;
    s.login("phone", "acme", "alice").await;
    let streams = s.hub.subscribers();
    let mut watch = s
        .cmd("laptop", &["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    event_streams_attached(&s, streams + 1).await;
    let mut said = BufReader::new(watch.stderr.take().unwrap()).lines();

    // Signing in again on the laptop ends the laptop's earlier session: two sessions, not three.
    s.login("laptop", "acme", "alice").await;
    let out = s.run("laptop", &["devices", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let devices: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 2, "{devices}");

    // The watch heard its session end and goes on with the new one: not signed out.
    let followed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(line) = said.next_line().await.unwrap() {
            if line.contains("signed in again in this profile") {
                return line;
            }
        }
        panic!("the watch ended without following the new session");
    })
    .await
    .expect("the watch followed the new session");
    assert!(followed.contains("alice@acme"), "{followed}");
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch is still running"
    );
    let out = s.run("laptop", &["status", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["session"], "valid");

    // It follows the new session: ending it from the phone signs the watch out.
    let out = s.run("phone", &["revoke", "--others"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let watched = tokio::time::timeout(Duration::from_secs(15), watch.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(watched.code(), Some(3), "watch ends with 'signed out'");
    let out = s.run("laptop", &["status"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[tokio::test]
async fn a_pin_file_or_the_environment_chooses_the_account_for_one_command_only() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "acme", "bob").await;
    std::fs::write(
        s.home.path().join(".lanyard.toml"),
        "account = \"alice@acme\"\n",
    )
    .unwrap();
    let out = s.run("default", &["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["account"]["account"], "alice@acme");
    assert!(status["chosen_by"]["pin_file"]
        .as_str()
        .unwrap()
        .ends_with(".lanyard.toml"));
    let out = s
        .cmd("default", &["status", "--json"])
        .env("LANYARD_ACCOUNT", "bob@acme")
        .output()
        .await
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["account"]["account"], "bob@acme");
    assert_eq!(status["chosen_by"], "flag");
    let active: Vec<Value> = s
        .accounts("default")
        .await
        .into_iter()
        .filter(|a| a["active"] == true)
        .collect();
    assert_eq!(
        active[0]["account"], "bob@acme",
        "the profile's active account is untouched"
    );
}

#[tokio::test]
async fn servers_down_are_exit_4_and_a_corrupt_store_is_refused_untouched() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    // The registry goes away: point the account's stored registry at a closed port.
    let index = profile_dir(s.home.path()).join("accounts.json");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace(&s.registry, "http://127.0.0.1:9");
    std::fs::write(&index, text).unwrap();
    let out = s.run("default", &["devices"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = s.run("default", &["status"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("registry unreachable"));
    s.idp
        .inject_fault(
            "acme",
            serde_json::json!({"endpoint": "discovery", "down": true}),
        )
        .await;
    let out = s
        .run("default", &["login", "--tenant", "acme", "--timeout", "5"])
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint:"));

    let vault = profile_dir(s.home.path()).join("vault.bin");
    let mut bytes = std::fs::read(&vault).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&vault, &bytes).unwrap();
    // The last entry is the ID token's; other items stay readable, the damaged one is refused.
    let out = s.run("default", &["token", "--kind", "id"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("tampered"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&vault).unwrap(),
        bytes,
        "the damaged vault was not overwritten"
    );
}

fn profile_dir(home: &Path) -> PathBuf {
    home.join("data").join("profiles").join("default")
}

#[tokio::test]
async fn logout_removes_the_account_and_token_then_says_signed_out() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    let out = s.run("default", &["logout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.accounts("default").await.is_empty());
    let out = s.run("default", &["token"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("lanyard login"));
}

#[tokio::test]
async fn config_completions_and_usage_errors() {
    let s = stack().await;
    let out = s
        .run("default", &["config", "set", "tenant", "globex"])
        .await;
    assert!(out.status.success());
    let out = s.run("default", &["config", "get", "tenant"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "globex");
    let out = s
        .run("default", &["config", "set", "store_backend", "floppy"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let out = s.run("default", &["config", "set", "nope", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = s.run("default", &["completions", "bash"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("lanyard"));
    let out = s.run("default", &["frobnicate"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = s.run("bad/profile", &["accounts"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn two_processes_asking_for_a_token_at_expiry_cause_one_refresh() {
    // Access tokens live 30 s here; with a 27 s margin a token is due for refresh 3 s after issue,
    // and the one issued by that refresh is not.
    let mut config = mock_idp::IdpConfig::defaults();
    config.tenants[0].lifetimes.access_token = 30;
    let s = stack_with(TestIdp::spawn_with_config(config).await).await;
    s.login("default", "acme", "alice").await;
    age_access_tokens(&s, "default", 4);
    let run = || {
        s.cmd("default", &["token"])
            .env("LANYARD_REFRESH_MARGIN_SECS", "27")
            .output()
    };
    let (a, b) = tokio::join!(run(), run());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{} / {}",
        stderr(&a),
        stderr(&b)
    );
    assert_eq!(
        a.stdout, b.stdout,
        "the second process read what the first stored"
    );
    let counters = s.idp.audit("acme").await["counters"].clone();
    assert_eq!(counters["token.refresh_token.ok"], 1, "{counters}");
    assert!(
        counters.get("token.refresh_token.invalid_grant").is_none(),
        "no false reuse detection: {counters}"
    );
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

#[tokio::test]
async fn colour_only_on_a_terminal_or_when_forced_and_never_with_no_color() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    // A pipe: no escape codes, in tables, status or errors.
    for args in [&["accounts"][..], &["status"], &["switch", "nobody"]] {
        let out = s.run("default", args).await;
        assert!(
            !has_escape(&out.stdout) && !has_escape(&out.stderr),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // CLICOLOR_FORCE turns colour on even on a pipe (so the colour path is real)…
    let forced = |args: &'static [&'static str], no_color: bool| {
        let mut c = s.cmd("default", args);
        c.env("CLICOLOR_FORCE", "1");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        c.output()
    };
    let out = forced(&["accounts"], false).await.unwrap();
    assert!(
        has_escape(&out.stdout),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = forced(&["switch", "nobody"], false).await.unwrap();
    assert!(has_escape(&out.stderr), "{}", stderr(&out));
    // …but never into JSON or a token, which scripts read.
    for args in [
        &["accounts", "--json"][..],
        &["status", "--json"],
        &["token"],
    ] {
        let out = forced(args, false).await.unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!has_escape(&out.stdout), "{args:?}");
    }
    // NO_COLOR wins over everything.
    for args in [&["accounts"][..], &["status"], &["switch", "nobody"]] {
        let out = forced(args, true).await.unwrap();
        assert!(
            !has_escape(&out.stdout) && !has_escape(&out.stderr),
            "{args:?} with NO_COLOR"
        );
    }
}

#[tokio::test]
async fn switch_without_an_account_off_a_terminal_is_a_usage_error_listing_the_accounts() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "globex", "carol").await;
    let before = s.accounts("default").await;
    let out = s
        .cmd("default", &["switch"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("alice@acme") && err.contains("carol@globex"),
        "the accounts are listed: {err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(s.accounts("default").await, before, "nothing changed");
}

/// Reads `from` until `needle` has appeared in what was read; returns everything read.
async fn read_until(from: &mut (impl tokio::io::AsyncRead + Unpin), needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = from.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "ended before {needle:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn switch_without_an_account_on_a_terminal_picks_with_the_arrow_keys() {
    use tokio::io::AsyncWriteExt;
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "globex", "carol").await;
    let out = s.run("default", &["switch", "alice@acme"]).await;
    assert!(out.status.success());

    let mut child = s.pty_cmd("default", &["switch"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let screen = read_until(&mut stdout, "carol@globex").await;
    assert!(screen.contains("Switch to"), "{screen}");
    assert!(screen.contains("alice@acme"), "{screen}");
    // The cursor starts on the active account (alice, the first): down once, then Enter.
    stdin.write_all(b"\x1b[B").await.unwrap();
    stdin.flush().await.unwrap();
    stdin.write_all(b"\r").await.unwrap();
    stdin.flush().await.unwrap();
    let screen = read_until(&mut stdout, "Now using").await;
    assert!(screen.contains("Now using carol@globex"), "{screen}");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(s.active("default").await, "carol@globex");
}

async fn next_event(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("an event within 15 s")
        .unwrap()
        .expect("watch is still running");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test]
async fn watch_prints_a_switch_and_a_refresh_made_by_other_processes() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "acme", "bob").await;
    // Bob's stored expiry is moved back a minute, so the refresh below stores a different one
    // whatever the second it happens in.
    let index = profile_dir(s.home.path()).join("accounts.json");
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    for a in file["accounts"].as_array_mut().unwrap() {
        if a["display_name"].as_str().unwrap().starts_with("bob") {
            let exp = a["access_token_expires_at"].as_i64().unwrap();
            a["access_token_expires_at"] = Value::from(exp - 60);
        }
    }
    std::fs::write(&index, serde_json::to_vec_pretty(&file).unwrap()).unwrap();

    let mut watch = s
        .cmd("default", &["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = watch.stderr.take().unwrap();
    read_until(&mut err, "Watching").await;
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();

    let out = s.run("default", &["switch", "alice@acme"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let event = next_event(&mut lines).await;
    assert_eq!(event["event"], "switched", "{event}");
    assert_eq!(event["account"], "alice@acme", "{event}");
    assert_eq!(event["from"], "bob@acme", "{event}");

    // Another process refreshes bob's token (a margin longer than the token's life forces it).
    let before = s
        .run("default", &["token", "--account", "bob@acme"])
        .await
        .stdout;
    let out = s
        .cmd("default", &["token", "--account", "bob@acme"])
        .env("LANYARD_REFRESH_MARGIN_SECS", "100000")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(out.stdout, before, "a refresh happened");
    let event = next_event(&mut lines).await;
    assert_eq!(event["event"], "refreshed", "{event}");
    assert_eq!(event["account"], "bob@acme", "{event}");
    assert!(
        event["access_token_expires_at"].as_i64().is_some(),
        "{event}"
    );
    let _ = watch.kill().await;
}

fn profile_path(home: &Path, profile: &str) -> PathBuf {
    home.join("data").join("profiles").join(profile)
}

/// Points `profile`'s stored registry at `to` (the registry went away, or hangs).
fn move_registry(s: &Stack, profile: &str, to: &str) {
    let index = profile_path(s.home.path(), profile).join("accounts.json");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace(&s.registry, to);
    std::fs::write(&index, text).unwrap();
}

#[tokio::test]
async fn a_revoke_learnt_by_status_or_devices_wipes_the_tokens_at_once() {
    let s = stack().await;
    for device in ["laptop", "phone", "tablet"] {
        s.login(device, "acme", "alice").await;
    }
    let out = s.run("laptop", &["revoke", "--others"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    for (device, learns_by) in [("phone", "status"), ("tablet", "devices")] {
        let out = s.run(device, &[learns_by]).await;
        assert_eq!(out.status.code(), Some(3), "{device}: {}", stderr(&out));
        // No partial logout: the token is gone too, not only the session.
        let out = s.run(device, &["token"]).await;
        assert_eq!(out.status.code(), Some(3), "{device}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{device}: no token printed");
        let accounts = s.accounts(device).await;
        assert_eq!(accounts[0]["session"], "signed_out", "{device}");
    }
}

#[tokio::test]
async fn status_is_exit_4_when_the_registry_cannot_be_reached_and_keeps_the_tokens() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    move_registry(&s, "default", "http://127.0.0.1:9");
    let out = s.run("default", &["status"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("registry unreachable"));
    let out = s.run("default", &["token", "--kind", "id"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A registry that accepts connections and never answers; counts the connections.
async fn silent_registry() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (url, count)
}

#[tokio::test]
async fn token_rechecks_a_session_last_checked_longer_ago_than_the_interval() {
    let s = stack().await;
    s.login("laptop", "acme", "alice").await;
    s.login("phone", "acme", "alice").await;
    let out = s.run("laptop", &["revoke", "--others"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Checked at sign-in, less than the interval ago: a fresh token needs no network call.
    let out = s.run("phone", &["token"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Once the last check is older than the interval (0 here), the revoke is learnt and wiped.
    let out = s
        .cmd("phone", &["token"])
        .env("LANYARD_CHECK_INTERVAL_SECS", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(s.accounts("phone").await[0]["session"], "signed_out");

    // A registry that never answers neither blocks `token` nor is asked again within the
    // interval: the token is printed (exit 0), as a heartbeat that only checks.
    s.login("desk", "acme", "bob").await;
    let (silent, connections) = silent_registry().await;
    move_registry(&s, "desk", &silent);
    let out = s
        .cmd("desk", &["token"])
        .env("LANYARD_CHECK_INTERVAL_SECS", "0")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty());
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let out = s.run("desk", &["token"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "not asked again within the interval"
    );
}

#[tokio::test]
async fn login_asks_for_the_chosen_session_duration_capped_by_the_tenant() {
    let s = stack().await;
    for (profile, duration, want_secs) in [("short", "2h", 7200), ("long", "30d", 86_400)] {
        let mut child = s
            .cmd(
                profile,
                &["login", "--tenant", "acme", "--session-duration", duration],
            )
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let url = read_url(child.stderr.take().unwrap()).await;
        complete_login_form(&url, "alice").await;
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{profile}");
        let out = s.run(profile, &["status", "--json"]).await;
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        let now = lanyard_clock::Clock::now(&lanyard_clock::SystemClock).unix_timestamp();
        let until = status["session_valid_until"].as_i64().unwrap();
        assert!(
            (now + want_secs - 120..=now + want_secs + 60).contains(&until),
            "{profile}: {until} vs now {now}"
        );
    }
    let out = s.run("bad", &["login", "--session-duration", "3m"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test]
async fn the_vault_notice_is_given_once_per_profile_at_login_and_never_on_later_commands() {
    let s = stack().await;
    let login_lines = |profile: &'static str| {
        let mut child = s
            .cmd(profile, &["login", "--tenant", "acme"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        async move {
            let (url, rest) = common::read_url_and_stderr(child.stderr.take().unwrap()).await;
            complete_login_form(&url, "alice").await;
            assert!(child.wait().await.unwrap().success());
            rest.await.unwrap()
        }
    };
    let notices = |lines: &[String]| lines.iter().filter(|l| l.contains("vault")).count();
    assert_eq!(
        notices(&login_lines("default").await),
        1,
        "said at the first login"
    );
    for args in [
        &["token"][..],
        &["token", "--kind", "id"],
        &["accounts"],
        &["devices"],
        &["status"],
    ] {
        let out = s.run("default", args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("vault"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        notices(&login_lines("default").await),
        0,
        "not at a second login"
    );
    // Per profile: another profile is told once too.
    assert_eq!(notices(&login_lines("work").await), 1);
    let out = s.run("work", &["status"]).await;
    assert!(!stderr(&out).contains("vault"), "{}", stderr(&out));
}

#[tokio::test]
async fn revoking_this_devices_own_session_by_id_wipes_its_tokens_at_once() {
    let s = stack().await;
    s.login("laptop", "acme", "alice").await;
    s.login("phone", "acme", "alice").await;
    let out = s.run("laptop", &["devices", "--json"]).await;
    let devices: Value = serde_json::from_slice(&out.stdout).unwrap();
    let own = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["current"] == true)
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = s.run("laptop", &["revoke", &own]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // No registry is asked from here on: the wipe happened with the revoke.
    assert_eq!(s.accounts("laptop").await[0]["session"], "signed_out");
    let out = s.run("laptop", &["token", "--kind", "id"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let out = s.run("phone", &["status"]).await;
    assert!(out.status.success(), "the phone is kept: {}", stderr(&out));
}

#[tokio::test]
async fn a_bad_lanyard_environment_value_is_a_usage_error_naming_it() {
    let s = stack().await;
    for (var, value, args) in [
        ("LANYARD_REFRESH_MARGIN_SECS", "five", &["accounts"][..]),
        ("LANYARD_CHECK_INTERVAL_SECS", "-1", &["token"][..]),
        ("LANYARD_STORE_BACKEND", "floppy", &["accounts"][..]),
    ] {
        let out = s
            .cmd("default", args)
            .env(var, value)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}: {}", stderr(&out));
        assert!(stderr(&out).contains(value), "{var}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("[env: {var}=")) || stderr(&out).contains(var),
            "{var} is named: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn exec_runs_a_command_with_the_token_in_its_environment_and_passes_its_exit_code_on() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    let token = s.run("default", &["token"]).await;
    assert!(token.status.success(), "{}", stderr(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();

    // The token and the account reach the command's environment, not its command line.
    let out = s
        .run(
            "default",
            &[
                "exec",
                "--",
                "sh",
                "-c",
                r#"printf '%s\n%s\n%s' "$LANYARD_ACCESS_TOKEN" "$LANYARD_ACCOUNT" "$*"; exit 7"#,
                "sh",
                "an-argument",
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], token, "a fresh token (the same, not yet due)");
    assert_eq!(lines[1], "alice@acme");
    assert_eq!(lines[2], "an-argument", "the arguments as given");
    assert!(
        stderr(&out).is_empty(),
        "the command spoke for itself: {}",
        stderr(&out)
    );

    let out = s
        .run(
            "default",
            &[
                "exec",
                "--env",
                "GITHUB_TOKEN",
                "--",
                "sh",
                "-c",
                r#"printf %s "$GITHUB_TOKEN""#,
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), token);

    for bad in [
        &["exec", "--env", "NOT-A-NAME", "--", "true"][..],
        &["exec"][..],
        &["exec", "--", "/nonexistent/program"][..],
    ] {
        let out = s.run("default", bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn pin_writes_and_clears_a_directorys_account() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "globex", "carol").await;
    let project = s.home.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let in_project = |args: &[&str]| {
        let mut c = s.cmd("default", args);
        c.current_dir(&project);
        c
    };
    let out = in_project(&["pin", "nobody@nowhere"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!project.join(".lanyard.toml").exists(), "nothing written");

    let out = in_project(&["pin", "alice@acme"]).output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(project.join(".lanyard.toml")).unwrap(),
        "account = \"alice@acme\"\n"
    );
    // carol is the active account; the directory's pin wins there, and only there.
    let status = |c: &mut tokio::process::Command| {
        let out = c.output();
        async move {
            let out = out.await.unwrap();
            serde_json::from_slice::<Value>(&out.stdout).unwrap()["account"]["account"].clone()
        }
    };
    assert_eq!(
        status(&mut in_project(&["status", "--json"])).await,
        "alice@acme"
    );
    assert_eq!(
        status(&mut s.cmd("default", &["status", "--json"])).await,
        "carol@globex"
    );

    let out = in_project(&["pin", "--clear"]).output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!project.join(".lanyard.toml").exists());
    assert_eq!(
        status(&mut in_project(&["status", "--json"])).await,
        "carol@globex"
    );
}
