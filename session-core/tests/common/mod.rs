//! Shared by the SessionManager tests: the real mock IdP and the real registry (embedded SQLite,
//! tenant `acme` trusting the IdP), spawned per test.
#![allow(dead_code)]

use std::sync::Arc;

use session_core::LoginRequest;
use session_registry::config::{RegistryConfig, TenantConfig};
use test_harness::TestIdp;

pub struct Stack {
    pub idp: TestIdp,
    pub registry: String,
    _dir: tempfile::TempDir,
}

pub async fn stack() -> Stack {
    let idp = TestIdp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let settings =
        session_registry::Settings::for_tests(&format!("sqlite://{}/r.db", dir.path().display()));
    let config = RegistryConfig {
        key_dir: None,
        tenants: vec![TenantConfig {
            slug: "acme".into(),
            issuer: idp.issuer("acme"),
            audiences: vec!["lanyard-cli".into()],
            idle_timeout_secs: 3600,
            absolute_timeout_secs: 86_400,
            api_key: None,
        }],
        web_clients: vec![],
    };
    let app = session_registry::Application::build_with(
        &settings,
        &config,
        Arc::new(lanyard_clock::SystemClock),
    )
    .await
    .unwrap();
    let registry = app.base_url().to_owned();
    tokio::spawn(app.run_until_stopped());
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
