//! Shared by the SessionManager tests: the real mock IdP and the real registry (embedded SQLite,
//! tenant `acme` trusting the IdP), spawned per test.
#![allow(dead_code)]

use std::sync::Arc;

use lanyard_clock::ManualClock;
use session_core::LoginRequest;
use session_registry::config::{default_max_age, RegistryConfig, TenantConfig};
use test_harness::TestIdp;

pub struct Stack {
    pub idp: TestIdp,
    pub registry: String,
    /// The one clock of the IdP and the registry, for [`stack_on_one_clock`] stacks.
    pub clock: Option<Arc<ManualClock>>,
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
        clock: None,
        _dir: dir,
    }
}

/// The IdP and the registry on one manual clock (give the same clock to the managers, and
/// every party agrees on what time it is): moving it ages sign-ins, sessions and tokens.
pub async fn stack_on_one_clock() -> Stack {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().expect("a manual clock");
    let dir = tempfile::tempdir().unwrap();
    let config = RegistryConfig {
        key_dir: None,
        tenants: vec![TenantConfig {
            slug: "acme".into(),
            issuer: idp.issuer("acme"),
            audiences: vec!["lanyard-cli".into()],
            idle_timeout_secs: 3600,
            absolute_timeout_secs: 86_400,
            max_id_token_age_secs: default_max_age(),
            max_auth_age_secs: default_max_age(),
            api_key: None,
        }],
        web_clients: vec![],
    };
    let app = session_registry::Application::build_with(
        &session_registry::Settings::for_tests(&format!("sqlite://{}/r.db", dir.path().display())),
        &config,
        clock.clone(),
    )
    .await
    .unwrap();
    let registry = app.base_url().to_owned();
    tokio::spawn(app.run_until_stopped());
    Stack {
        idp,
        registry,
        clock: Some(clock),
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
