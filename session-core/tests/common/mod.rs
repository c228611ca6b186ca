//! Shared by the SessionManager tests: the real mock IdP and the real registry (embedded SQLite,
//! tenant `acme` trusting the IdP), spawned per test.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use lanyard_clock::{ManualClock, SharedClock, SystemClock};
use session_core::LoginRequest;
use session_registry::config::{default_max_age, RegistryConfig, TenantConfig};
use session_registry::events::Hub;
use test_harness::TestIdp;

pub struct Stack {
    pub idp: TestIdp,
    pub registry: String,
    /// The registry's event hub: [`Hub::subscribers`] counts the attached event streams.
    pub hub: Arc<Hub>,
    /// The one clock of the IdP and the registry, for [`stack_on_one_clock`] stacks.
    pub clock: Option<Arc<ManualClock>>,
    _dir: tempfile::TempDir,
}

pub async fn stack() -> Stack {
    let idp = TestIdp::spawn().await;
    spawn_registry(idp, Arc::new(SystemClock), None).await
}

/// The IdP and the registry on one manual clock (give the same clock to the managers, and
/// every party agrees on what time it is): moving it ages sign-ins, sessions and tokens.
pub async fn stack_on_one_clock() -> Stack {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().expect("a manual clock");
    spawn_registry(idp, clock.clone(), Some(clock)).await
}

/// The registry in process (embedded SQLite, tenant `acme` trusting `idp` for `lanyard-cli`,
/// one-hour idle and one-day absolute timeout), serving in the background on port 0.
async fn spawn_registry(
    idp: TestIdp,
    registry_clock: SharedClock,
    clock: Option<Arc<ManualClock>>,
) -> Stack {
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
        registry_clock,
    )
    .await
    .unwrap();
    let registry = app.base_url().to_owned();
    let hub = app.registry().hub.clone();
    tokio::spawn(app.run_until_stopped());
    Stack {
        idp,
        registry,
        hub,
        clock,
        _dir: dir,
    }
}

/// Waits until at least `n` event streams are attached to the stack's registry (each device's
/// manager opens one after sign-in): a revoke stored before a stream attaches is history to
/// it, never pushed. Fails after 10 s.
pub async fn event_streams_attached(stack: &Stack, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.hub.subscribers() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} event streams attached within 10 s (found {})",
            stack.hub.subscribers()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
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
