#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Faults, each with its assertion (issue #16 item 3): the IdP down and then slow during a
//! refresh storm, and clock skew of ±5 minutes between the IdP, the registry and the client,
//! within and beyond the configured leeway. The mock IdP's fault injection (its admin API) makes
//! the faults, on the `mock-idp` binary run as a process; the registry runs in the test's process
//! (so that its clock can be set off) on a fresh Postgres database; every device is a
//! `SessionManager` with its own account store. (Postgres restarted and a registry process
//! killed under load: session-registry's database_restart.rs and scale_out.rs; the vault's disk
//! full: account-store's vault_disk_full.rs.)

use std::sync::Arc;
use std::time::Duration;

use account_store::memory::MemoryStore;
use account_store::{AccountKey, AccountStore, ItemKind};
use lanyard_clock::ManualClock;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use session_core::registry::RegistryClient;
use session_core::{
    DeviceIdentity, LoginMethod, LoginRequest, ManagerOptions, SessionError, SessionManager,
    SessionState,
};
use session_registry::config::{RegistryConfig, Settings, TenantConfig};
use session_registry::startup::Application;
use test_harness::idp::IdpEndpoint;
use test_harness::{workspace_binary, IdpProcess, TestDatabase};

/// The `mock-idp` binary, a process of its own, seeded with `config`: the faults are injected
/// through its admin API.
async fn idp_process(config: &mock_idp::config::IdpConfig) -> IdpProcess {
    IdpProcess::start(&workspace_binary("mock-idp").unwrap(), config)
        .await
        .expect("mock-idp starts")
}

/// A registry on `db` trusting tenant acme of `idp`, with `--clock-leeway leeway`.
async fn registry(idp: &IdpEndpoint, db: &TestDatabase, leeway: i64) -> String {
    registry_on_clock(idp, db, leeway, Arc::new(lanyard_clock::SystemClock)).await
}

/// A registry as [`registry`] whose own clock is `clock` (a machine whose clock is off).
async fn registry_on_clock(
    idp: &IdpEndpoint,
    db: &TestDatabase,
    leeway: i64,
    clock: lanyard_clock::SharedClock,
) -> String {
    let mut settings = Settings::for_tests(&db.url);
    settings.clock_leeway = leeway;
    let config = RegistryConfig {
        key_dir: None,
        tenants: vec![TenantConfig {
            slug: "acme".into(),
            issuer: idp.issuer("acme"),
            audiences: vec!["lanyard-cli".into()],
            idle_timeout_secs: 3600,
            absolute_timeout_secs: 86_400,
            max_id_token_age_secs: session_registry::config::default_max_age(),
            max_auth_age_secs: session_registry::config::default_max_age(),
            api_key: None,
        }],
        web_clients: vec![],
    };
    let app = Application::build_with(&settings, &config, clock)
        .await
        .expect("the registry starts");
    let url = app.base_url().to_owned();
    tokio::spawn(app.run_until_stopped());
    url
}

struct Device {
    manager: SessionManager,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// A device of its own profile; `tune` adjusts its options (timeouts, retries, leeway, clock).
fn device(id: String, tune: impl FnOnce(&mut ManagerOptions)) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            name: format!("{id} of the fault tests"),
            id,
            platform: "linux".into(),
        },
        clock.clone(),
        dir.path().join("locks"),
    );
    tune(&mut options);
    Device {
        manager: SessionManager::new(store, options),
        clock,
        _dir: dir,
    }
}

fn browser(user: &'static str) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move { test_harness::idp::sign_in_at(&url, user).await });
    }
}

async fn login(
    idp: &IdpEndpoint,
    registry: &str,
    d: &Device,
    user: &'static str,
) -> Result<AccountKey, SessionError> {
    d.manager
        .login(
            LoginRequest {
                issuer: idp.issuer("acme"),
                client_id: "lanyard-cli".into(),
                registry_url: Some(registry.to_owned()),
                tenant: Some("acme".into()),
            },
            LoginMethod::Browser(&browser(user), Duration::from_secs(30)),
        )
        .await
        .map(|meta| meta.key)
}

async fn fault(idp: &IdpEndpoint, spec: Value) -> String {
    let res = idp
        .admin(Method::POST, "tenants/acme/faults", Some(spec))
        .await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn clear_faults(idp: &IdpEndpoint) {
    let res = idp.admin(Method::DELETE, "tenants/acme/faults", None).await;
    assert_eq!(res.status(), 200);
}

/// How many times fault `id` (a `count` fault of `count`) fired.
async fn fired(idp: &IdpEndpoint, id: &str, count: u64) -> u64 {
    let list: Value = idp
        .admin(Method::GET, "tenants/acme/faults", None)
        .await
        .json()
        .await
        .unwrap();
    let remaining = list
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .map(|f| f["remaining"].as_u64().unwrap())
        .unwrap_or(0);
    count - remaining
}

/// Audit events of `kind` at tenant acme.
async fn audit_events(idp: &IdpEndpoint, kind: &str) -> usize {
    let audit: Value = idp
        .admin(Method::GET, "tenants/acme/audit", None)
        .await
        .json()
        .await
        .unwrap();
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

fn is_available(d: &Device, account: &AccountKey) -> bool {
    matches!(
        &*d.manager.state(account).borrow(),
        SessionState::Available { .. }
    )
}

/// The registry's live sessions of `account`, as `d` lists them with its own session token.
async fn live_sessions(registry: &str, d: &Device, account: &AccountKey) -> usize {
    let token = d
        .manager
        .store()
        .secrets()
        .require(account, ItemKind::SessionToken)
        .unwrap();
    RegistryClient::new(registry)
        .list(&token, account.as_str())
        .await
        .expect("the session is live at the registry")
        .len()
}

/// Every device asks for alice's access token at once; the results, in device order.
async fn storm(devices: &[Device], accounts: &[AccountKey]) -> Vec<Result<String, SessionError>> {
    let calls = devices.iter().zip(accounts).map(|(d, a)| async move {
        d.manager
            .access_token(Some(a))
            .await
            .map(|t| t.expose_secret().to_owned())
    });
    futures_util::future::join_all(calls).await
}

const DEVICES: usize = 6;

/// The IdP of the storm: lanyard-cli with a refresh-token reuse grace of 30 s (Okta's default
/// "grace period for token rotation", Auth0's "reuse interval"). Without one, a refresh the IdP
/// completed after the device gave up waiting leaves the device with a spent token: its retry
/// trips reuse detection and the family is revoked — a slow IdP would sign everyone out (this
/// test, run with the grace at 0, shows exactly that).
fn storm_idp_config() -> mock_idp::config::IdpConfig {
    let mut config = mock_idp::config::IdpConfig::defaults();
    for tenant in &mut config.tenants {
        for client in &mut tenant.clients {
            if client.client_id.as_str() == "lanyard-cli" {
                client.refresh_reuse_grace = 30;
            }
        }
    }
    config
}

#[tokio::test]
async fn the_idp_down_then_slow_during_a_refresh_storm_signs_no_one_out_and_recovers() {
    let idp = idp_process(&storm_idp_config()).await;
    let db = TestDatabase::create().await;
    let registry = registry(&idp, &db, session_registry::oidc::DEFAULT_LEEWAY).await;
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| {
            device(format!("storm-{i}"), |o| {
                o.max_tries = 3;
                o.backoff = Duration::from_millis(50);
                o.http_timeout = Duration::from_secs(2);
            })
        })
        .collect();
    let mut accounts = Vec::new();
    for d in &devices {
        accounts.push(login(&idp, &registry, d, "alice").await.unwrap());
    }
    let first: Vec<String> = storm(&devices, &accounts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let refresh_tokens = |devices: &[Device]| -> Vec<String> {
        devices
            .iter()
            .zip(&accounts)
            .map(|(d, a)| {
                d.manager
                    .store()
                    .secrets()
                    .require(a, ItemKind::RefreshToken)
                    .unwrap()
                    .expose_secret()
                    .to_owned()
            })
            .collect()
    };
    let before = refresh_tokens(&devices);
    // Every access token now within the refresh margin (5 minutes) of its expiry (10 minutes).
    for d in &devices {
        d.clock.advance(time::Duration::seconds(310));
    }

    // 1. The token endpoint down (the connection closed without an answer).
    const BUDGET: u64 = 1000;
    let down = fault(
        &idp,
        json!({"endpoint": "token", "down": true, "count": BUDGET}),
    )
    .await;
    for (i, r) in storm(&devices, &accounts).await.into_iter().enumerate() {
        match r {
            Err(e @ SessionError::Transient { .. }) => {
                assert!(e.to_string().contains("nothing was lost"), "{e}")
            }
            other => panic!("device {i} with the IdP down: {other:?}"),
        }
    }
    let tries = fired(&idp, &down, BUDGET).await;
    assert_eq!(
        tries,
        DEVICES as u64 * 3,
        "token requests for {DEVICES} devices: each tries 3 times, no more, no fewer"
    );
    clear_faults(&idp).await;
    assert_eq!(
        refresh_tokens(&devices),
        before,
        "a failed refresh keeps the stored grant"
    );
    for (d, a) in devices.iter().zip(&accounts) {
        assert!(is_available(d, a), "the IdP down signed {a} out");
        assert_eq!(live_sessions(&registry, d, a).await, DEVICES);
    }

    // 2. The token endpoint slow: 5 s, beyond the devices' 2 s timeout, on the next 3 × 6
    //    requests (each device's every try).
    let slow = fault(
        &idp,
        json!({"endpoint": "token", "latency_ms": 5000, "count": DEVICES * 3}),
    )
    .await;
    for (i, r) in storm(&devices, &accounts).await.into_iter().enumerate() {
        assert!(
            matches!(r, Err(SessionError::Transient { .. })),
            "device {i} with the IdP slow: {r:?}"
        );
    }
    let slow_tries = fired(&idp, &slow, (DEVICES * 3) as u64).await;
    assert_eq!(slow_tries, DEVICES as u64 * 3, "each device tried 3 times");
    // The slow answers the devices gave up on arrive at nobody: wait until the IdP has finished
    // them (the first rotated each grant; the repeats were answered inside the reuse grace).
    let mut grace_repeats = 0;
    for _ in 0..200 {
        grace_repeats = audit_events(&idp, "refresh_token_grace_reuse").await;
        if grace_repeats >= DEVICES * 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        grace_repeats >= DEVICES * 2,
        "the IdP finished the abandoned rotations and answered each device's 2 repeats inside \
         the grace: {grace_repeats}"
    );
    clear_faults(&idp).await;

    // 3. Recovery: every device refreshes, no reuse alarm, nobody signed out.
    let after = storm(&devices, &accounts).await;
    for (i, r) in after.iter().enumerate() {
        let token = r
            .as_ref()
            .unwrap_or_else(|e| panic!("device {i} after recovery: {e}"));
        assert_ne!(token, &first[i], "device {i} got a refreshed access token");
    }
    assert_eq!(
        audit_events(&idp, "refresh_token_reuse").await,
        0,
        "no refresh-token reuse alarm"
    );
    let rotated = refresh_tokens(&devices);
    for i in 0..DEVICES {
        assert_ne!(
            rotated[i], before[i],
            "device {i}'s grant rotated once recovered"
        );
    }
    for (d, a) in devices.iter().zip(&accounts) {
        assert!(is_available(d, a));
        assert_eq!(live_sessions(&registry, d, a).await, DEVICES);
    }
    println!(
        "fault idp-down-then-slow: ok — {DEVICES} devices; down: {tries} token requests (≤ 3 each), \
         slow: {slow_tries} ({grace_repeats} repeats inside the reuse grace); no sign-out, no reuse \
         alarm, all refreshed after recovery"
    );
}

/// The IdP's clock `offset` seconds from the others' (its tokens' `iat`/`exp`/`auth_time` moved).
async fn skew_idp(idp: &IdpEndpoint, offset: i64) {
    clear_faults(idp).await;
    if offset != 0 {
        fault(idp, json!({"clock_offset_secs": offset})).await;
    }
}

#[tokio::test]
async fn clock_skew_of_five_minutes_within_the_leeway_signs_in_and_beyond_it_is_refused_losing_nothing(
) {
    let idp = idp_process(&mock_idp::config::IdpConfig::defaults()).await;
    let db = TestDatabase::create().await;
    // A registry and devices configured for 5 minutes of skew, and a registry left at 60 s.
    let tolerant = registry(&idp, &db, 300).await;
    let strict_db = TestDatabase::create().await;
    let strict = registry(&idp, &strict_db, session_registry::oidc::DEFAULT_LEEWAY).await;
    // On the wall clock (a manual one stands still while the sign-in takes its second).
    let tolerant_device = |id: &str| {
        device(id.to_owned(), |o| {
            o.id_token_leeway = Duration::from_secs(300);
            o.clock = Arc::new(lanyard_clock::SystemClock);
        })
    };

    // A bystander signed in before any skew: nothing below may touch it.
    let bystander = tolerant_device("bystander");
    let bystander_account = login(&idp, &tolerant, &bystander, "bob").await.unwrap();

    // IdP 5 minutes ahead, and 5 minutes behind: within the leeway, signed in and working.
    for offset in [300, -300] {
        skew_idp(&idp, offset).await;
        let d = tolerant_device(&format!("skew{offset}"));
        let account = login(&idp, &tolerant, &d, "alice")
            .await
            .unwrap_or_else(|e| panic!("IdP clock {offset:+} s, leeway 300 s: {e}"));
        assert!(is_available(&d, &account));
        d.manager.access_token(Some(&account)).await.unwrap();
        assert!(live_sessions(&tolerant, &d, &account).await >= 1);
    }

    // Beyond the client's leeway: refused by the client, with the reason; nothing stored.
    skew_idp(&idp, 360).await;
    let d = tolerant_device("beyond-client");
    let client_err = login(&idp, &tolerant, &d, "alice").await.unwrap_err();
    assert_client_refused_time_claim(&client_err, &d, "IdP 6 min ahead").await;

    // Within the client's leeway, beyond the registry's (60 s): the registry refuses the ID
    // token, saying why; the device keeps no half-signed-in account.
    skew_idp(&idp, 300).await;
    let d = tolerant_device("beyond-registry");
    let sessions_before = tenant_session_count(&strict_db).await;
    let err = login(&idp, &strict, &d, "alice").await.unwrap_err();
    assert_registry_refused_time_claim(&err, &d, &strict_db, sessions_before, "IdP 5 min ahead")
        .await;

    skew_idp(&idp, 0).await;
    assert!(is_available(&bystander, &bystander_account));
    bystander
        .manager
        .access_token(Some(&bystander_account))
        .await
        .unwrap();
    assert_eq!(
        live_sessions(&tolerant, &bystander, &bystander_account).await,
        1
    );
    println!(
        "fault clock-skew: ok — IdP ±300 s signs in with 300 s leeways; +360 s refused by the \
         client (\"{client_err}\"); +300 s refused by a 60 s registry (\"{err}\"); nothing stored, bystander \
         untouched"
    );
}

/// A device whose clock is `offset` seconds off the wall clock (running, not standing still), with
/// an ID-token leeway of `leeway` seconds.
fn skewed_device(id: &str, offset: i64, leeway: u64) -> Device {
    device(id.to_owned(), |o| {
        o.id_token_leeway = Duration::from_secs(leeway);
        o.clock = Arc::new(lanyard_clock::OffsetClock::new(time::Duration::seconds(
            offset,
        )));
    })
}

/// The other two clocks of the three: the registry's own and the client's, each ±5 minutes off
/// while the IdP keeps time. Within the leeway (300 s) sign-in and token use work; a clock behind
/// by more than the leeway sees the ID token issued in its future and refuses it, naming the
/// claim, and nothing is stored anywhere: no account on the device, no session at the registry,
/// and an account signed in before is untouched. (A clock ahead sees the ID token as older: it is
/// refused only past its lifetime plus the leeway, 600 s + 300 s here, not at 5 minutes.)
#[tokio::test]
async fn clock_skew_of_the_registry_or_the_client_within_the_leeway_works_and_beyond_it_is_refused()
{
    let idp = idp_process(&mock_idp::config::IdpConfig::defaults()).await;
    let skewed_registry = |offset: i64, leeway: i64| {
        let idp = &idp;
        async move {
            let db = TestDatabase::create().await;
            let clock = Arc::new(lanyard_clock::OffsetClock::new(time::Duration::seconds(
                offset,
            )));
            let url = registry_on_clock(idp, &db, leeway, clock).await;
            (url, db)
        }
    };

    // The registry's clock 5 minutes ahead and 5 minutes behind, leeway 300 s.
    for offset in [300, -300] {
        let (reg, db) = skewed_registry(offset, 300).await;
        let d = skewed_device(&format!("registry{offset}"), 0, 300);
        let account = login(&idp, &reg, &d, "alice")
            .await
            .unwrap_or_else(|e| panic!("registry clock {offset:+} s, leeway 300 s: {e}"));
        assert!(is_available(&d, &account));
        d.manager.access_token(Some(&account)).await.unwrap();
        assert_eq!(live_sessions(&reg, &d, &account).await, 1);
        assert_eq!(tenant_session_count(&db).await, 1);
    }
    // The registry's clock behind by more than its leeway: 6 minutes with 300 s, 5 minutes with
    // the default 60 s.
    let mut registry_refusals = Vec::new();
    for (offset, leeway) in [(-360, 300), (-300, session_registry::oidc::DEFAULT_LEEWAY)] {
        let (reg, db) = skewed_registry(offset, leeway).await;
        let d = skewed_device(&format!("registry{offset}-leeway{leeway}"), 0, 300);
        let err = login(&idp, &reg, &d, "alice").await.unwrap_err();
        let what = format!("registry clock {offset:+} s, leeway {leeway} s");
        assert_registry_refused_time_claim(&err, &d, &db, 0, &what).await;
        registry_refusals.push(err.to_string());
    }

    // The client's clock 5 minutes ahead and 5 minutes behind (leeway 300 s), the registry on time.
    let db = TestDatabase::create().await;
    let reg = registry(&idp, &db, session_registry::oidc::DEFAULT_LEEWAY).await;
    let bystander = skewed_device("bystander", 0, 60);
    let bystander_account = login(&idp, &reg, &bystander, "bob").await.unwrap();
    for (signed_in, offset) in [300, -300].into_iter().enumerate() {
        let d = skewed_device(&format!("client{offset}"), offset, 300);
        let account = login(&idp, &reg, &d, "alice")
            .await
            .unwrap_or_else(|e| panic!("client clock {offset:+} s, leeway 300 s: {e}"));
        assert!(is_available(&d, &account));
        d.manager.access_token(Some(&account)).await.unwrap();
        // alice's sessions: this device's and those of the devices before it.
        assert_eq!(live_sessions(&reg, &d, &account).await, signed_in + 1);
    }
    // The client's clock behind by more than its leeway: refused by the client, naming the claim.
    let sessions_before = tenant_session_count(&db).await;
    let mut client_refusals = Vec::new();
    for (offset, leeway) in [(-360, 300), (-300, 60)] {
        let d = skewed_device(&format!("client{offset}-leeway{leeway}"), offset, leeway);
        let err = login(&idp, &reg, &d, "alice").await.unwrap_err();
        let what = format!("client clock {offset:+} s, leeway {leeway} s");
        assert_client_refused_time_claim(&err, &d, &what).await;
        client_refusals.push(err.to_string());
    }
    assert_eq!(tenant_session_count(&db).await, sessions_before);
    assert!(is_available(&bystander, &bystander_account));
    bystander
        .manager
        .access_token(Some(&bystander_account))
        .await
        .unwrap();
    assert_eq!(live_sessions(&reg, &bystander, &bystander_account).await, 1);
    println!(
        "fault clock-skew-registry-and-client: ok — registry and client clocks ±300 s sign in with \
         300 s leeways; registry -360 s (leeway 300) and -300 s (leeway 60) refused (\"{}\"); client \
         -360 s (leeway 300) and -300 s (leeway 60) refused (\"{}\"); nothing stored, bystander \
         untouched",
        registry_refusals.join("\"; \""),
        client_refusals.join("\"; \"")
    );
}

/// A sign-in the client refused for a time claim of the ID token: the error is an invalid ID
/// token naming the claim, and the device keeps no account.
async fn assert_client_refused_time_claim(err: &SessionError, d: &Device, what: &str) {
    assert!(
        matches!(err, SessionError::IdTokenInvalid(_)),
        "{what}: {err:?}"
    );
    let message = err.to_string().to_lowercase();
    assert!(
        message.contains("iat") || message.contains("future"),
        "{what}: the error names the time claim: {err}"
    );
    assert!(d.manager.accounts().await.unwrap().is_empty(), "{what}");
}

/// A sign-in the registry refused for a time claim of the ID token: the refusal names the
/// claim, the device keeps no half-signed-in account, and the registry database `db` still holds
/// `sessions` sessions.
async fn assert_registry_refused_time_claim(
    err: &SessionError,
    d: &Device,
    db: &TestDatabase,
    sessions: i64,
    what: &str,
) {
    let message = err.to_string().to_lowercase();
    assert!(
        message.contains("future") || message.contains("iat") || message.contains("issued"),
        "{what}: the registry's refusal names the time claim: {err}"
    );
    assert!(
        d.manager.accounts().await.unwrap().is_empty(),
        "{what}: no account kept after the registry refused"
    );
    assert_eq!(tenant_session_count(db).await, sessions, "{what}");
}

/// Sessions in the registry database `db`, every tenant.
async fn tenant_session_count(db: &TestDatabase) -> i64 {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// A refresh the IdP answered while its clock was beyond the client's leeway: the refreshed ID
/// token is refused, but the IdP has already rotated the refresh token. The device keeps the
/// rotated one, so once the clocks agree again the next refresh works: no reuse alarm at the
/// IdP, no sign-out, the registry session untouched.
#[tokio::test]
async fn a_refresh_answered_with_an_unusable_id_token_keeps_the_rotated_refresh_token() {
    let idp = idp_process(&mock_idp::config::IdpConfig::defaults()).await;
    let db = TestDatabase::create().await;
    let registry_url = registry(&idp, &db, session_registry::oidc::DEFAULT_LEEWAY).await;
    let d = device("rotated".into(), |o| {
        o.clock = Arc::new(lanyard_clock::SystemClock);
    });
    let account = login(&idp, &registry_url, &d, "alice").await.unwrap();
    let stored = |d: &Device| {
        d.manager
            .store()
            .secrets()
            .require(&account, ItemKind::RefreshToken)
            .unwrap()
            .expose_secret()
            .to_owned()
    };
    let before = stored(&d);

    // IdP 6 minutes ahead, the client's leeway 60 s: the refreshed ID token is "issued in the
    // future" and refused, with the reason.
    skew_idp(&idp, 360).await;
    let err = d.manager.refresh(&account, true).await.unwrap_err();
    assert!(
        matches!(err, SessionError::IdTokenInvalid(_)),
        "a refreshed ID token from the future: {err:?}"
    );
    assert!(is_available(&d, &account), "not signed out: {err}");
    let kept = stored(&d);
    assert_ne!(kept, before, "the rotated refresh token is kept");

    // Clocks agree again: the next refresh presents the rotated token and works.
    skew_idp(&idp, 0).await;
    d.manager
        .refresh(&account, true)
        .await
        .expect("the refresh after the skew works");
    assert!(is_available(&d, &account));
    assert_eq!(
        audit_events(&idp, "refresh_token_reuse").await,
        0,
        "no reuse alarm at the IdP"
    );
    assert_eq!(live_sessions(&registry_url, &d, &account).await, 1);
    println!(
        "fault refresh-answer-refused: ok — the IdP 360 s ahead: refresh refused (\"{err}\"), \
         rotated refresh token kept; the next refresh works, no reuse alarm"
    );
}
