//! The built binary, as a developer or a script runs it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use test_harness::TestDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{command, files_under, signal, Stack};

/// Every file a fresh SQLite stack writes, all inside its data folder.
fn sqlite_stack_files() -> [&'static str; 3] {
    ["idp-keys/acme/", "idp-keys/globex/", "registry-keys/"]
}

fn assert_keys_and_nothing_outside(stack: &Stack) {
    let written: Vec<String> = files_under(&stack.data_dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for prefix in sqlite_stack_files() {
        assert!(
            written
                .iter()
                .any(|f| f.starts_with(prefix) && f.ends_with(".pem")),
            "a signing key under {prefix} in {written:?}"
        );
    }
    assert_eq!(
        files_under(&stack.outside),
        Vec::<PathBuf>::new(),
        "nothing is written outside the data folder (working directory, HOME, TMPDIR)"
    );
}

#[tokio::test]
async fn alice_logs_in_at_acme_and_the_registry_opens_her_device_session() {
    let mut stack = Stack::start().await;
    let token = stack.device_session("acme", "alice", "laptop").await;
    assert!(token.starts_with("lyst_"), "{token}");

    let sessions: Value = reqwest::Client::new()
        .get(format!("{}/v1/sessions", stack.registry))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = sessions["sessions"].as_array().expect("a session list");
    assert_eq!(list.len(), 1, "{sessions}");
    assert_eq!(list[0]["tenant"], "acme");
    assert_eq!(list[0]["email"], "alice@acme.example");
    assert_eq!(list[0]["device"]["id"], "laptop");

    stack.terminate();
    assert!(stack.exit_within(Duration::from_secs(15)).await.success());
    let written: Vec<String> = files_under(&stack.data_dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        written.iter().any(|f| f == "registry.db"),
        "the registry's SQLite database is in the data folder: {written:?}"
    );
    assert_keys_and_nothing_outside(&stack);
}

#[tokio::test]
async fn the_banner_goes_to_stderr_with_urls_users_tokens_and_next_commands() {
    let mut stack = Stack::start().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stack.stderr().contains("Ctrl-C stops both") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let banner = stack.stderr();
    for expected in [
        stack.idp.as_str(),
        stack.registry.as_str(),
        &stack.issuer("acme"),
        &stack.issuer("globex"),
        "alice, bob",
        "carol, alice",
        "`lanyard-dev`",
        "lanyard-dev-admin",
        "lanyard-dev-registry-admin",
        "lanyard-dev-acme-admin",
        "lanyard login --tenant acme",
        &stack.data_dir.display().to_string(),
    ] {
        assert!(
            banner.contains(expected),
            "{expected:?} missing from:\n{banner}"
        );
    }
    stack.terminate();
    assert!(stack.exit_within(Duration::from_secs(15)).await.success());
}

/// Reads stdout by hand (no harness) to prove it carries the two readiness lines and nothing
/// else, then stops the stack with SIGTERM.
#[tokio::test]
async fn stdout_is_exactly_two_readiness_lines_and_sigterm_exits_0_promptly() {
    let dirs = tempfile::tempdir().unwrap();
    let outside = dirs.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut child = command(&outside, &dirs.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < 2 {
            seen.push(lines.next_line().await.unwrap().expect("a readiness line"));
        }
    })
    .await
    .expect("both readiness lines within 60 s");
    assert!(
        seen[0].starts_with("mock-idp listening on http://127.0.0.1:"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("session-registry listening on http://127.0.0.1:"),
        "{seen:?}"
    );
    let registry_addr: std::net::SocketAddr = seen[1]
        .trim_start_matches("session-registry listening on http://")
        .parse()
        .unwrap();

    let sent = Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("devstack exits within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(line);
    }
    assert_eq!(
        rest,
        Vec::<String>::new(),
        "nothing on stdout but the readiness lines"
    );
    assert!(
        tokio::net::TcpStream::connect(registry_addr).await.is_err(),
        "the registry's port is closed after the stop"
    );
}

/// An open event stream does not hold the stop until the registry's 10 s shutdown timeout: the
/// registry's own graceful shutdown ends it.
#[tokio::test]
async fn sigterm_with_an_event_stream_open_still_exits_0_promptly() {
    let mut stack = Stack::start().await;
    let token = stack.device_session("acme", "alice", "laptop").await;
    let mut events = reqwest::Client::new()
        .get(format!("{}/v1/events", stack.registry))
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);

    let sent = Instant::now();
    stack.terminate();
    assert!(stack.exit_within(Duration::from_secs(30)).await.success());
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}; stderr:\n{}",
        sent.elapsed(),
        stack.stderr()
    );
    // The stream was ended, not left hanging.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended with the stack");
}

#[tokio::test]
async fn ctrl_c_stops_the_stack_with_exit_code_0() {
    let mut stack = Stack::start().await;
    signal(&stack.services.child, nix::sys::signal::Signal::SIGINT);
    assert!(stack.exit_within(Duration::from_secs(15)).await.success());
}

#[tokio::test]
async fn two_stacks_run_side_by_side_on_port_zero_each_trusting_only_its_own_idp() {
    let (a, b) = tokio::join!(Stack::start(), Stack::start());
    let addrs = [
        a.services.addr("mock-idp").unwrap(),
        a.services.addr("session-registry").unwrap(),
        b.services.addr("mock-idp").unwrap(),
        b.services.addr("session-registry").unwrap(),
    ];
    for (i, x) in addrs.iter().enumerate() {
        assert!(x.ip().is_loopback());
        assert!(addrs[i + 1..].iter().all(|y| y != x), "{addrs:?}");
    }
    a.device_session("acme", "alice", "laptop").await;
    b.device_session("globex", "carol", "desk").await;

    // Each registry trusts its own IdP's issuers only.
    let from_a = test_harness::idp::login(&a.issuer("acme"), "bob", "lanyard-cli").await;
    let (status, body) = b
        .create_session(from_a["id_token"].as_str().unwrap(), "phone")
        .await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_ne!(a.data_dir, b.data_dir);
}

/// The IdP's `lanyard-registry` client posts logout tokens to the registry on its real (port 0)
/// address: signing alice out at the IdP ends her device session at the registry.
#[tokio::test]
async fn an_idp_sign_out_reaches_the_registry_on_its_real_port() {
    let stack = Stack::start().await;
    let browser = test_harness::idp::browser();
    let issuer = stack.issuer("acme");
    let tokens = test_harness::idp::login_in(&browser, &issuer, "alice", "lanyard-cli").await;
    let (status, body) = stack
        .create_session(tokens["id_token"].as_str().unwrap(), "laptop")
        .await;
    assert_eq!(status, 201, "{body}");
    let session_token = body["session_token"].as_str().unwrap().to_owned();

    // The registry's web client joins alice's IdP session (single sign-on, no form).
    let verifier = "a-verifier-long-enough-for-pkce-0123456789abcdefghijkl";
    let res = browser
        .get(format!("{issuer}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "lanyard-registry"),
            ("redirect_uri", "http://127.0.0.1/auth/callback"),
            ("scope", "openid"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", &mock_idp::pkce::s256(verifier)),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(location.contains("code="), "{} {location}", res.status());

    let res = reqwest::Client::new()
        .post(format!(
            "{}/admin/tenants/acme/users/alice/logout",
            stack.idp
        ))
        .bearer_auth(mock_idp::config::DEV_ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    let http = reqwest::Client::new();
    for _ in 0..200 {
        let status = http
            .get(format!("{}/v1/sessions", stack.registry))
            .bearer_auth(&session_token)
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the back-channel logout did not reach the registry at {}; stderr:\n{}",
        stack.registry,
        stack.stderr()
    );
}

#[tokio::test]
async fn a_postgres_database_url_puts_the_registry_on_postgres() {
    let db = TestDatabase::create().await;
    let mut stack = Stack::start_with_env(&[("DATABASE_URL", db.url.as_str())]).await;
    stack.device_session("acme", "alice", "laptop").await;

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    // Row-level security scopes the session rows by tenant, even for the table's owner.
    sqlx::query("SELECT set_config('lanyard.tenant', 'acme', false)")
        .execute(&mut conn)
        .await
        .unwrap();
    let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "alice's session is a row in Postgres");
    let (issuer,): (String,) = sqlx::query_as("SELECT issuer FROM tenants WHERE slug = 'acme'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(issuer, stack.issuer("acme"));
    drop(conn);

    stack.terminate();
    assert!(stack.exit_within(Duration::from_secs(15)).await.success());
    assert!(
        !files_under(&stack.data_dir)
            .iter()
            .any(|f| f.to_string_lossy().starts_with("registry.db")),
        "no SQLite database when on Postgres"
    );
    assert_keys_and_nothing_outside(&stack);
}
