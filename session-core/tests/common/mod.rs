//! Shared by the SessionManager tests: the real mock IdP and the real registry (embedded SQLite,
//! tenant `acme` trusting the IdP), spawned per test.
#![allow(dead_code)]

use session_core::LoginRequest;
use test_harness::TestIdp;

pub struct Stack {
    pub idp: TestIdp,
    pub registry: String,
    _dir: tempfile::TempDir,
}

pub async fn stack() -> Stack {
    let idp = TestIdp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = session_registry::startup::Application::spawn_for_tests(
        &format!("sqlite://{}/r.db", dir.path().display()),
        &[("acme", idp.issuer("acme"))],
    )
    .await
    .unwrap();
    Stack {
        idp,
        registry,
        _dir: dir,
    }
}

/// Sign in to `acme` at the stack's IdP, with a session at its registry.
pub fn request(stack: &Stack) -> LoginRequest {
    LoginRequest {
        issuer: stack.idp.issuer("acme"),
        client_id: "lanyard-cli".into(),
        registry_url: Some(stack.registry.clone()),
        tenant: Some("acme".into()),
    }
}
