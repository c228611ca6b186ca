//! Opens registry sessions through the API for `bench/registry.sh`: signs `--user` in at the
//! mock IdP (the authorization-code flow with PKCE, the login form posted as a browser would),
//! then trades the ID token at `POST /v1/sessions`, once per session, each on its own device.
//!
//! ```text
//! cargo run --release -p session-registry --example bench_sessions -- \
//!     --issuer http://127.0.0.1:8700/acme --registry http://127.0.0.1:8701 --user alice --count 16
//! ```
//! Prints one JSON object per session on stdout:
//! `{"session_id", "account_id", "session_token", "session_jwt"}`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench tool: a panic is a report

use serde_json::{json, Value};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let issuer = arg(&args, "--issuer").expect("--issuer ISSUER");
    let registry = arg(&args, "--registry").expect("--registry URL");
    let user = arg(&args, "--user").unwrap_or_else(|| "alice".into());
    let client = arg(&args, "--client-id").unwrap_or_else(|| "lanyard-cli".into());
    let count: usize = arg(&args, "--count")
        .map(|c| c.parse().expect("--count N"))
        .unwrap_or(16);
    let device_prefix = arg(&args, "--device-prefix").unwrap_or_else(|| "bench".into());

    let http = reqwest::Client::new();
    for i in 0..count {
        // An ID token opens one session (single use): a sign-in per session.
        let tokens = test_harness::idp::login(&issuer, &user, &client).await;
        let id_token = tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no ID token in {tokens}"))
            .to_owned();
        let res = http
            .post(format!("{registry}/v1/sessions"))
            .json(&json!({
                "id_token": id_token,
                "device": {
                    "id": format!("{device_prefix}-{i}"),
                    "name": format!("{device_prefix} device {i}"),
                    "platform": "linux",
                },
            }))
            .send()
            .await
            .expect("POST /v1/sessions");
        let status = res.status();
        let body: Value = res.json().await.expect("JSON answer");
        assert!(status.is_success(), "POST /v1/sessions: {status} {body}");
        println!(
            "{}",
            json!({
                "session_id": body["session"]["session_id"],
                "account_id": body["session"]["account_id"],
                "session_token": body["session_token"],
                "session_jwt": body["session_jwt"],
            })
        );
    }
}
