//! The library, driven in process: what `main` does, without the process.

use std::time::Duration;

use devstack::{Devstack, DevstackError, Options};

fn on_port_zero(data_dir: &std::path::Path) -> Options {
    Options::on(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        data_dir.to_owned(),
    )
}

#[tokio::test]
async fn start_returns_both_real_addresses_and_the_readiness_lines_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Devstack::start(&on_port_zero(&dir.path().join("data")))
        .await
        .unwrap();
    assert_ne!(stack.idp_addr().port(), 0);
    assert_ne!(stack.registry_addr().port(), 0);
    assert_eq!(
        stack.readiness_lines(),
        [
            format!("mock-idp listening on http://{}", stack.idp_addr()),
            format!(
                "session-registry listening on http://{}",
                stack.registry_addr()
            ),
        ]
    );
    assert_eq!(stack.issuer("acme"), format!("{}/acme", stack.idp_url()));
    let discovery: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        stack.issuer("globex")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(discovery["issuer"], stack.issuer("globex"));

    // Stopping returns once both servers are down.
    let registry = stack.registry_addr();
    stack
        .run_until(async { Ok(()) })
        .await
        .expect("a clean stop");
    assert!(tokio::net::TcpStream::connect(registry).await.is_err());
}

#[tokio::test]
async fn a_taken_registry_port_is_an_error_that_says_how_to_pick_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = on_port_zero(dir.path());
    options.registry_bind = taken.local_addr().unwrap();
    let err = match Devstack::start(&options).await {
        Ok(_) => panic!("the port is taken"),
        Err(e) => e,
    };
    assert!(matches!(err, DevstackError::Registry(_)), "{err:?}");
    assert!(err.to_string().contains("--registry-bind"), "{err}");
}

#[tokio::test]
async fn a_taken_idp_port_fails_start_and_frees_the_registry_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry_addr = registry_port.local_addr().unwrap();
    drop(registry_port);
    let dir = tempfile::tempdir().unwrap();
    let mut options = on_port_zero(dir.path());
    options.idp_bind = taken.local_addr().unwrap();
    options.registry_bind = registry_addr;
    let err = match Devstack::start(&options).await {
        Ok(_) => panic!("the port is taken"),
        Err(e) => e,
    };
    assert!(matches!(err, DevstackError::Idp(_)), "{err:?}");
    // The registry that had started is stopped again: its port can be bound.
    let mut rebound = None;
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(registry_addr) {
            rebound = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rebound.is_some(),
        "the registry still holds {registry_addr}"
    );
}
