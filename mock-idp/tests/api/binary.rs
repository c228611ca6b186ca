//! The `mock-idp` binary: flags, environment, readiness line.

use std::path::Path;

use test_harness::ChildService;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mock-idp"))
}

#[tokio::test]
async fn the_binary_prints_its_readiness_line_and_serves_on_the_bound_port() {
    let svc = ChildService::start(bin(), &["--bind", "127.0.0.1:0"], "mock-idp")
        .await
        .unwrap();
    assert_ne!(svc.addr.port(), 0);
    let d: serde_json::Value = reqwest::get(format!(
        "{}/acme/.well-known/openid-configuration",
        svc.base_url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(d["issuer"], format!("{}/acme", svc.base_url));
}

#[tokio::test]
async fn public_url_and_admin_token_flags_take_effect() {
    let svc = ChildService::start(
        bin(),
        &[
            "--bind",
            "127.0.0.1:0",
            "--public-url",
            "http://idp.test:1234/",
            "--admin-token",
            "s3cret",
        ],
        "mock-idp",
    )
    .await
    .unwrap();
    let d: serde_json::Value = reqwest::get(format!(
        "{}/acme/.well-known/openid-configuration",
        svc.base_url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(d["issuer"], "http://idp.test:1234/acme");
    let client = reqwest::Client::new();
    let url = format!("{}/admin/tenants", svc.base_url);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("lanyard-dev-admin")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn environment_variables_configure_the_binary() {
    let out = tokio::process::Command::new(bin())
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bind",
        "--config",
        "--admin-token",
        "--public-url",
        "MOCK_IDP_BIND",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    // Start through the same readiness protocol, configured only by the environment.
    let svc = {
        let script = format!(
            "MOCK_IDP_BIND=127.0.0.1:0 MOCK_IDP_ADMIN_TOKEN=from-env exec {}",
            bin().display()
        );
        ChildService::start(Path::new("/bin/sh"), &["-c", &script], "mock-idp")
            .await
            .unwrap()
    };
    let res = reqwest::Client::new()
        .get(format!("{}/admin/tenants", svc.base_url))
        .bearer_auth("from-env")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_bad_config_file_stops_start_up_with_an_error_naming_the_key() {
    let path = std::env::temp_dir().join(format!("mock-idp-bad-{}.toml", mock_idp::random::id()));
    std::fs::write(
        &path,
        "[[tenants]]\nslug = \"acme\"\nunexpected_key = true\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(bin())
        .args(["--bind", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unexpected_key"), "{err}");
    assert!(out.stdout.is_empty(), "no readiness line on failure");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn sigint_and_sigterm_stop_the_binary_gracefully_with_exit_0() {
    for signal in ["-INT", "-TERM"] {
        let mut svc = ChildService::start(bin(), &["--bind", "127.0.0.1:0"], "mock-idp")
            .await
            .unwrap();
        let pid = svc.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(std::time::Duration::from_secs(15), svc.child.wait())
            .await
            .expect("exits promptly")
            .unwrap();
        assert!(exit.success(), "{signal}: {exit:?}");
    }
}

/// `mock-idp healthcheck`, as a container healthcheck runs it.
fn healthcheck(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    std::process::Command::new(bin())
        .arg("healthcheck")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_running_idp_and_1_for_none() {
    let svc = ChildService::start(bin(), &["--bind", "127.0.0.1:0"], "mock-idp")
        .await
        .unwrap();
    let url = format!("{}/healthz", svc.base_url);
    assert_eq!(healthcheck(&["--url", &url], &[]).status.code(), Some(0));
    // Without --url: the health endpoint on the configured bind (0.0.0.0 asked on loopback).
    let bind = format!("0.0.0.0:{}", svc.addr.port());
    assert_eq!(
        healthcheck(&[], &[("MOCK_IDP_BIND", bind)]).status.code(),
        Some(0)
    );
    drop(svc);
    let down = healthcheck(&["--url", "http://127.0.0.1:1/healthz"], &[]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("did not answer"));
    assert_eq!(healthcheck(&["--bogus"], &[]).status.code(), Some(2));
}
