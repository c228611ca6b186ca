#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The multi-device scenarios of issue #16 (item 1), on real processes: the `mock-idp` binary
//! (tenants acme and globex), and two `session-registry` processes — A and B — on one fresh
//! Postgres database, their events through NATS JetStream (`--events nats://…`, a deployment of
//! the test's own) unless a scenario says otherwise. The laptop is a `SessionManager` with its own
//! account store that talks to registry A; the desktop, one that talks to registry B; the
//! refresh storm is eight real `lanyard token` processes.
//!
//! The accounts: alice@acme, alice@globex (another person with the same username, in the other
//! tenant) and carol@globex — mock-idp's default directory.
//!
//! Every scenario is a test of its own (nextest runs them side by side) and ends by printing one
//! line, `scenario NAME: ok — what happened`; latencies are printed, never asserted. Every wait is
//! a wait for a state with a generous timeout.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use account_store::memory::MemoryStore;
use account_store::{AccountKey, AccountMeta, AccountStore, ItemKind};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use session_core::registry_api::SessionView;
use session_core::{
    DeviceIdentity, LoginMethod, LoginRequest, LogoutScope, ManagerEvent, ManagerOptions,
    RevokeTarget, SessionError, SessionManager, SessionState, UnavailableReason, UpgradeRequest,
};
use test_harness::{workspace_binary, ChildService, IdpProcess, TestDatabase};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long a pushed change or a sign-in may take before the test gives up (not an assertion on
/// speed).
const GENEROUS: Duration = Duration::from_secs(30);

/// The three accounts every device signs in to: two tenants, two people named alice.
const ACCOUNTS: [(&str, &str); 3] = [("acme", "alice"), ("globex", "alice"), ("globex", "carol")];

/// One line per scenario, the suite's report.
fn summary(scenario: &str, what: impl Display) {
    println!("scenario {scenario}: ok — {what}");
}

/// How events travel between the registry processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// LISTEN/NOTIFY on the shared database.
    Postgres,
    /// An outbox relayed through NATS JetStream (the scale-out setting).
    Nats,
}

impl Display for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Feed::Postgres => "postgres",
            Feed::Nats => "nats",
        })
    }
}

/// A `session-registry` process.
struct RegistryProcess {
    name: &'static str,
    url: String,
    http: reqwest::Client,
    _service: ChildService,
}

impl RegistryProcess {
    async fn start(
        name: &'static str,
        config: &Path,
        database_url: &str,
        feed: Feed,
        deployment: &str,
        migrate: bool,
    ) -> Self {
        let events = match feed {
            Feed::Postgres => "postgres".to_owned(),
            Feed::Nats => test_harness::nats::nats_url(),
        };
        let mut args = vec![
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            database_url,
            "--config",
            config.to_str().unwrap(),
            "--events",
            &events,
            "--deployment",
            deployment,
            // Every process signs and verifies session JWTs with the same keys.
            "--key-encryption-key",
            session_registry::config::TEST_KEY_ENCRYPTION_KEY,
        ];
        if migrate {
            args.push("--migrate");
        }
        let service = ChildService::start(
            &workspace_binary("session-registry").unwrap(),
            &args,
            "session-registry",
        )
        .await
        .unwrap_or_else(|e| panic!("registry {name} starts: {e}"));
        Self {
            name,
            url: service.base_url.clone(),
            http: reqwest::Client::new(),
            _service: service,
        }
    }

    /// `POST path` with a JSON body, as `bearer` if given: the status and the body.
    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.url)).json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str, bearer: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// What this process answers a heartbeat of `credential` (`{"session_token": …}` or
    /// `{"session_jwt": …}`): the status and the `error` code, if any.
    async fn authenticate(&self, credential: Value) -> (u16, Option<String>) {
        let (status, body) = self
            .post("/v1/sessions/authenticate", None, credential)
            .await;
        (status, body["error"].as_str().map(str::to_owned))
    }

    /// How many event streams this process has opened so far (its `/metrics`).
    async fn event_streams_opened(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                // `lanyard_registry_http_requests_total{route="/v1/events",status="200"} 3`
                l.starts_with("lanyard_registry_http_requests_total{")
                    && l.contains(r#"route="/v1/events""#)
                    && l.contains(r#"status="200""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until this process has opened `n` event streams: a revoke stored before a device's
    /// stream attaches is history to it, never pushed (its heartbeat would find it minutes later).
    async fn wait_for_event_streams(&self, n: u64) {
        tokio::time::timeout(GENEROUS, async {
            while self.event_streams_opened().await < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("registry {} did not open {n} event streams", self.name));
    }

    /// Every session of `tenant` (all states), through the tenant's admin API.
    async fn admin_sessions(&self, tenant: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/v1/admin/tenants/{tenant}/sessions"),
                &format!("{tenant}-admin-key"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["sessions"].as_array().unwrap().clone()
    }
}

struct Stack {
    idp: IdpProcess,
    feed: Feed,
    /// The laptop's registry.
    a: RegistryProcess,
    /// The desktop's registry.
    b: RegistryProcess,
    _config: tempfile::TempDir,
    _db: TestDatabase,
}

async fn stack(feed: Feed) -> Stack {
    stack_with(idp(mock_idp::IdpConfig::defaults()).await, feed).await
}

/// The `mock-idp` binary, a process of its own, seeded with `config`.
async fn idp(config: mock_idp::IdpConfig) -> IdpProcess {
    IdpProcess::start(&workspace_binary("mock-idp").unwrap(), &config)
        .await
        .expect("mock-idp starts")
}

/// Registries A and B on one fresh database, both trusting `idp`'s tenants for `lanyard-cli`.
async fn stack_with(idp: IdpProcess, feed: Feed) -> Stack {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.toml");
    let tenants: String = ["acme", "globex"]
        .iter()
        .map(|slug| {
            format!(
                "[[tenants]]\nslug = \"{slug}\"\nissuer = \"{}\"\naudiences = [\"lanyard-cli\"]\n\
                 api_key = \"{slug}-admin-key\"\n\n",
                idp.issuer(slug)
            )
        })
        .collect();
    std::fs::write(&config, tenants).unwrap();
    let deployment = test_harness::nats::unique_deployment();
    // A migrates the fresh database before it announces itself; B starts on it afterwards.
    let a = RegistryProcess::start("A", &config, &db.url, feed, &deployment, true).await;
    let b = RegistryProcess::start("B", &config, &db.url, feed, &deployment, false).await;
    Stack {
        idp,
        feed,
        a,
        b,
        _config: dir,
        _db: db,
    }
}

struct Device {
    id: &'static str,
    /// The URL of the registry process this device talks to.
    registry: String,
    manager: SessionManager,
    _dir: tempfile::TempDir,
}

/// A device with its own profile (account index, secrets, refresh locks) on the wall clock. The
/// heartbeat keeps its default (3 minutes), so a change seen within a test came pushed.
fn device(id: &'static str, registry: &RegistryProcess) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    let options = ManagerOptions::new(
        DeviceIdentity {
            id: id.into(),
            name: format!("{id} of the test"),
            platform: "linux".into(),
        },
        Arc::new(lanyard_clock::SystemClock),
        dir.path().join("locks"),
    );
    Device {
        id,
        registry: registry.url.clone(),
        manager: SessionManager::new(store, options),
        _dir: dir,
    }
}

fn request(stack: &Stack, d: &Device, tenant: &str) -> LoginRequest {
    LoginRequest {
        issuer: stack.idp.issuer(tenant),
        client_id: "lanyard-cli".into(),
        registry_url: Some(d.registry.clone()),
        tenant: Some(tenant.into()),
    }
}

/// A browser stand-in: opens the authorization URL and signs `user` in on the IdP's form.
fn browser(user: &'static str) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move { test_harness::idp::sign_in_at(&url, user).await });
    }
}

async fn login(stack: &Stack, d: &Device, tenant: &str, user: &'static str) -> AccountKey {
    d.manager
        .login(
            request(stack, d, tenant),
            LoginMethod::Browser(&browser(user), GENEROUS),
        )
        .await
        .unwrap_or_else(|e| panic!("{} signs in as {user}@{tenant}: {e}", d.id))
        .key
}

/// Signs `d` in to every account of [`ACCOUNTS`], in order.
async fn login_all(stack: &Stack, d: &Device) -> Vec<AccountKey> {
    let mut keys = Vec::new();
    for (tenant, user) in ACCOUNTS {
        keys.push(login(stack, d, tenant, user).await);
    }
    keys
}

fn secret(d: &Device, account: &AccountKey, item: ItemKind) -> SecretString {
    d.manager
        .store()
        .secrets()
        .require(account, item)
        .unwrap_or_else(|e| panic!("{} holds {account}'s {item:?}: {e}", d.id))
}

fn session_id(d: &Device, account: &AccountKey) -> String {
    match &*d.manager.state(account).borrow() {
        SessionState::Available { session_id, .. } => session_id.clone(),
        other => panic!("{} is not signed in to {account}: {other:?}", d.id),
    }
}

fn is_available(d: &Device, account: &AccountKey) -> bool {
    matches!(
        *d.manager.state(account).borrow(),
        SessionState::Available { .. }
    )
}

async fn meta(d: &Device, account: &AccountKey) -> AccountMeta {
    d.manager
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|m| &m.key == account)
        .unwrap_or_else(|| panic!("{} knows {account}", d.id))
}

/// The registry's list of `account`'s live sessions, asked by `d` through its own registry.
async fn sessions(d: &Device, account: &AccountKey) -> Vec<SessionView> {
    d.manager
        .list_sessions(account)
        .await
        .unwrap_or_else(|e| panic!("{} lists {account}'s sessions: {e}", d.id))
}

fn device_ids(sessions: &[SessionView]) -> BTreeSet<String> {
    sessions.iter().map(|s| s.device.id.clone()).collect()
}

fn devices(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

async fn wait_for(
    d: &Device,
    account: &AccountKey,
    want: impl Fn(&SessionState) -> bool,
) -> SessionState {
    let mut rx = d.manager.state(account);
    tokio::time::timeout(GENEROUS, async {
        rx.wait_for(|s| want(s)).await.map(|s| s.clone())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{}: {account} did not reach the expected state; it is {:?}",
            d.id,
            *d.manager.state(account).borrow()
        )
    })
    .unwrap()
}

/// Waits for the first event `pick` recognises.
async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<ManagerEvent>,
    pick: impl Fn(ManagerEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(GENEROUS, async {
        loop {
            if let Some(found) = pick(events.recv().await.unwrap()) {
                return found;
            }
        }
    })
    .await
    .expect("the expected manager event")
}

/// The claims of a JWT, unverified.
fn claims(jwt: &str) -> Value {
    session_core::tokens::jwt_claims(jwt).expect("a JWT")
}

/// `d` holds no secret of `account` any more.
fn wiped(d: &Device, account: &AccountKey) -> bool {
    ItemKind::ALL.into_iter().all(|item| {
        d.manager
            .store()
            .secrets()
            .get(account, item)
            .unwrap()
            .is_none()
    })
}

/// Both devices keep `account`: available, a valid access token handed out (after a refresh at
/// the IdP), the session accepted by both registries.
async fn untouched(stack: &Stack, ds: &[&Device], account: &AccountKey) {
    for d in ds {
        assert!(is_available(d, account), "{} keeps {account}", d.id);
        d.manager
            .refresh(account, true)
            .await
            .unwrap_or_else(|e| panic!("{}: {account} still refreshes: {e}", d.id));
        let token = d.manager.access_token(Some(account)).await.unwrap();
        assert!(!token.expose_secret().is_empty());
        let session_token = secret(d, account, ItemKind::SessionToken);
        for reg in [&stack.a, &stack.b] {
            assert_eq!(
                reg.authenticate(json!({"session_token": session_token.expose_secret()}))
                    .await,
                (200, None),
                "registry {} still accepts {}'s session of {account}",
                reg.name,
                d.id
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn three_accounts_in_two_tenants_on_a_laptop_and_a_desktop_and_switching_between_them() {
    let stack = stack(Feed::Nats).await;
    let laptop = device("laptop", &stack.a);
    let desktop = device("desktop", &stack.b);
    let keys = login_all(&stack, &laptop).await;
    assert_eq!(
        login_all(&stack, &desktop).await,
        keys,
        "the same three accounts on both devices"
    );
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        3,
        "three accounts, not one alice: {keys:?}"
    );
    for d in [&laptop, &desktop] {
        assert_eq!(d.manager.accounts().await.unwrap().len(), 3, "{}", d.id);
        for account in &keys {
            assert!(is_available(d, account), "{}: {account}", d.id);
        }
    }

    // Each account has one session per device, and both registries list the same two: the
    // laptop asks A, the desktop asks B. Each list marks the asking device's own session, and
    // never shows another account's (or another tenant's) session.
    let mut registry_accounts = BTreeSet::new();
    for (account, (tenant, _)) in keys.iter().zip(ACCOUNTS) {
        let via_a = sessions(&laptop, account).await;
        let via_b = sessions(&desktop, account).await;
        for (d, list) in [(&laptop, &via_a), (&desktop, &via_b)] {
            assert_eq!(
                device_ids(list),
                devices(&["desktop", "laptop"]),
                "{}: {list:?}",
                d.id
            );
            assert!(list.iter().all(|s| s.tenant == tenant), "{list:?}");
            let current: Vec<&SessionView> = list.iter().filter(|s| s.current).collect();
            assert_eq!(current.len(), 1, "{}: {list:?}", d.id);
            assert_eq!(current[0].device.id, d.id);
            assert_eq!(current[0].session_id, session_id(d, account));
        }
        let ids = |l: &[SessionView]| l.iter().map(|s| s.session_id.clone()).collect::<Vec<_>>();
        let (mut a_ids, mut b_ids) = (ids(&via_a), ids(&via_b));
        a_ids.sort();
        b_ids.sort();
        assert_eq!(a_ids, b_ids, "A and B list the same sessions of {account}");
        let owners: BTreeSet<&str> = via_a.iter().map(|s| s.account_id.as_str()).collect();
        assert_eq!(owners.len(), 1, "{account}: {via_a:?}");
        registry_accounts.extend(owners.into_iter().map(str::to_owned));
    }
    assert_eq!(
        registry_accounts.len(),
        3,
        "three accounts at the registry too"
    );

    // Switching on the laptop: the active account follows, and the default access token is
    // the active account's (issued by its tenant, for its subject).
    let mut events = laptop.manager.events();
    let order = [&keys[0], &keys[2], &keys[1], &keys[0]];
    for account in order {
        laptop.manager.switch(account).await.unwrap();
        let switched = next_event(&mut events, |e| match e {
            ManagerEvent::Switched { account } => Some(account),
            _ => None,
        })
        .await;
        assert_eq!(&switched, account);
        let active = laptop
            .manager
            .active()
            .await
            .unwrap()
            .expect("an active account");
        assert_eq!(&active.key, account);
        let token = laptop.manager.access_token(None).await.unwrap();
        let c = claims(token.expose_secret());
        assert_eq!(c["iss"], active.id.issuer.as_str(), "{account}");
        assert_eq!(c["sub"], active.id.subject.as_str(), "{account}");
        assert_eq!(
            token.expose_secret(),
            secret(&laptop, account, ItemKind::AccessToken).expose_secret()
        );
    }
    // The active account is the device's own choice: the desktop's is still its last sign-in.
    assert_eq!(
        desktop.manager.active().await.unwrap().unwrap().key,
        keys[2]
    );

    for d in [&laptop, &desktop] {
        d.manager.logout(LogoutScope::Device).await.unwrap();
    }
    summary(
        "accounts-and-switching",
        format!(
            "3 accounts in 2 tenants on 2 devices, 6 sessions listed alike by registries A and B \
             ({}); {} switches on the laptop, each serving the active account's token",
            stack.feed,
            order.len()
        ),
    );
}

/// The desktop (on B) revokes the laptop's alice@acme session; the laptop (on A) hears of it
/// through its event stream and signs alice@acme out by itself; nothing else moves.
async fn a_revoke_from_the_desktop_reaches_the_laptop(feed: Feed) {
    let stack = stack(feed).await;
    let laptop = device("laptop", &stack.a);
    let desktop = device("desktop", &stack.b);
    let keys = login_all(&stack, &laptop).await;
    login_all(&stack, &desktop).await;
    let alice = &keys[0];
    // One stream per laptop account on A.
    stack.a.wait_for_event_streams(keys.len() as u64).await;

    let target = session_id(&laptop, alice);
    let revoked_token = secret(&laptop, alice, ItemKind::SessionToken);
    let started = Instant::now();
    let revoked = desktop
        .manager
        .revoke_sessions(alice, RevokeTarget::Session(target.clone()), None)
        .await
        .unwrap();
    let state = wait_for(&laptop, alice, |s| {
        !matches!(s, SessionState::Available { .. })
    })
    .await;
    let latency = started.elapsed();
    assert_eq!(revoked, std::slice::from_ref(&target));
    assert_eq!(
        state,
        SessionState::Unavailable {
            reason: UnavailableReason::RevokedRemotely
        }
    );
    assert!(wiped(&laptop, alice), "the laptop wiped alice@acme");

    // Both registries refuse the revoked session, saying so.
    for reg in [&stack.a, &stack.b] {
        assert_eq!(
            reg.authenticate(json!({"session_token": revoked_token.expose_secret()}))
                .await,
            (401, Some("session_revoked".to_owned())),
            "registry {}",
            reg.name
        );
    }
    // Nothing else: the desktop keeps alice@acme (its session now the only one), both devices
    // keep the globex accounts.
    assert_eq!(
        device_ids(&sessions(&desktop, alice).await),
        devices(&["desktop"])
    );
    untouched(&stack, &[&desktop], alice).await;
    for account in &keys[1..] {
        untouched(&stack, &[&laptop, &desktop], account).await;
    }
    summary(
        &format!("revoke-reaches-other-device ({feed})"),
        format!(
            "delivered in {} ms: revoked through registry B, pushed to the laptop by registry A",
            latency.as_millis()
        ),
    );
}

#[tokio::test]
async fn a_revoke_from_the_desktop_reaches_the_laptop_on_nats() {
    a_revoke_from_the_desktop_reaches_the_laptop(Feed::Nats).await
}

#[tokio::test]
async fn a_revoke_from_the_desktop_reaches_the_laptop_on_postgres() {
    a_revoke_from_the_desktop_reaches_the_laptop(Feed::Postgres).await
}

#[tokio::test]
async fn signing_alice_at_acme_out_everywhere_leaves_alice_at_globex_alone() {
    let stack = stack(Feed::Nats).await;
    let laptop = device("laptop", &stack.a);
    let desktop = device("desktop", &stack.b);
    let keys = login_all(&stack, &laptop).await;
    login_all(&stack, &desktop).await;
    let (alice_acme, alice_globex) = (&keys[0], &keys[1]);
    stack.a.wait_for_event_streams(keys.len() as u64).await;

    let laptop_token = secret(&laptop, alice_acme, ItemKind::SessionToken);
    let started = Instant::now();
    let report = desktop
        .manager
        .logout(LogoutScope::Everywhere(alice_acme.clone()))
        .await
        .unwrap();
    let state = wait_for(&laptop, alice_acme, |s| {
        !matches!(s, SessionState::Available { .. })
    })
    .await;
    let latency = started.elapsed();
    assert_eq!(report.removed, std::slice::from_ref(alice_acme));
    assert!(report.not_revoked.is_empty(), "{:?}", report.not_revoked);
    assert_eq!(
        state,
        SessionState::Unavailable {
            reason: UnavailableReason::RevokedRemotely
        }
    );
    assert!(wiped(&laptop, alice_acme) && wiped(&desktop, alice_acme));
    assert!(
        desktop
            .manager
            .accounts()
            .await
            .unwrap()
            .iter()
            .all(|a| &a.key != alice_acme),
        "the desktop forgot alice@acme"
    );
    for reg in [&stack.a, &stack.b] {
        assert_eq!(
            reg.authenticate(json!({"session_token": laptop_token.expose_secret()}))
                .await,
            (401, Some("session_revoked".to_owned())),
            "registry {} refuses the laptop's alice@acme",
            reg.name
        );
    }

    // alice@globex — the same name in the other tenant — and carol are untouched: both
    // devices keep them, both registries list both sessions of each.
    for account in &keys[1..] {
        untouched(&stack, &[&laptop, &desktop], account).await;
        for d in [&laptop, &desktop] {
            assert_eq!(
                device_ids(&sessions(d, account).await),
                devices(&["desktop", "laptop"]),
                "{} lists both sessions of {account}",
                d.id
            );
        }
    }
    assert_ne!(alice_acme, alice_globex);
    summary(
        "sign-out-everywhere",
        format!(
            "alice@acme signed out on the laptop {} ms after the desktop's request; alice@globex \
             and carol@globex kept on both devices",
            latency.as_millis()
        ),
    );
}

/// One person's browser, its IdP session cookie kept: opens an authorization URL and, where the
/// IdP answers at once with a redirect (a new guest, or single sign-on with the IdP session this
/// browser holds), follows it back to the device's callback.
fn same_browser(browser: reqwest::Client) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let (browser, url) = (browser.clone(), url.to_string());
        tokio::spawn(async move {
            let res = browser.get(&url).send().await.expect("the IdP answers");
            let callback = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "the IdP showed a page ({}) instead of answering at once",
                        res.status()
                    )
                })
                .to_owned();
            browser
                .get(callback)
                .send()
                .await
                .expect("the device's callback answers");
        });
    }
}

#[tokio::test]
async fn a_guest_upgraded_on_the_laptop_is_seen_as_registered_on_the_desktop() {
    let stack = stack(Feed::Nats).await;
    let laptop = device("laptop", &stack.a);
    let desktop = device("desktop", &stack.b);
    // A person without an account tries the app as a guest on the laptop, then opens it on the
    // desktop in the same browser: the IdP's session signs the same guest in there.
    let person = test_harness::idp::browser();
    let guest = laptop
        .manager
        .login_guest(
            request(&stack, &laptop, "acme"),
            &same_browser(person.clone()),
            GENEROUS,
        )
        .await
        .unwrap();
    assert!(guest.is_guest);
    let on_desktop = desktop
        .manager
        .login(
            request(&stack, &desktop, "acme"),
            LoginMethod::Browser(&same_browser(person), GENEROUS),
        )
        .await
        .unwrap();
    assert_eq!(on_desktop.key, guest.key, "the same guest on both devices");
    assert!(on_desktop.is_guest);
    let account = &guest.key;
    let desktop_session = session_id(&desktop, account);
    let before = sessions(&desktop, account).await;
    assert_eq!(device_ids(&before), devices(&["desktop", "laptop"]));
    assert!(before.iter().all(|s| s.is_guest), "{before:?}");

    // The laptop upgrades the guest (at the IdP, then its registry session through A).
    let started = Instant::now();
    let upgraded = laptop
        .manager
        .upgrade_guest(
            account,
            UpgradeRequest {
                username: "dana".into(),
                password: SecretString::from("correct horse battery"),
                email: Some("dana@acme.example".into()),
                name: Some("Dana Scully".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(&upgraded.account.key, account);
    assert!(!upgraded.account.is_guest);

    // The desktop, asking B, sees a registered account: every session of it, its own included.
    let seen = tokio::time::timeout(GENEROUS, async {
        loop {
            let list = sessions(&desktop, account).await;
            if list.iter().all(|s| !s.is_guest) {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the desktop sees the account registered");
    let latency = started.elapsed();
    assert_eq!(device_ids(&seen), devices(&["desktop", "laptop"]));
    assert!(seen
        .iter()
        .all(|s| s.email.as_deref() == Some("dana@acme.example")));
    // Its session is the same one, still good; its next heartbeat brings a registered session
    // JWT, and its next refresh a registered ID token of the same subject.
    assert_eq!(session_id(&desktop, account), desktop_session);
    desktop.manager.verify_session(account).await.unwrap();
    let jwt = secret(&desktop, account, ItemKind::SessionJwt);
    assert_eq!(claims(jwt.expose_secret())["is_guest"], false);
    assert_eq!(claims(jwt.expose_secret())["sid"], desktop_session.as_str());
    desktop.manager.refresh(account, true).await.unwrap();
    let id_token = claims(secret(&desktop, account, ItemKind::IdToken).expose_secret());
    assert_eq!(id_token["is_guest"], false);
    assert_eq!(id_token["sub"], guest.id.subject.as_str());
    assert_eq!(id_token["preferred_username"], "dana");
    // And the desktop's own record of the account says so (`lanyard accounts`, `status`).
    let record = meta(&desktop, account).await;
    assert!(
        !record.is_guest,
        "the desktop still records a guest: {record:?}"
    );
    assert_eq!(record.email.as_deref(), Some("dana@acme.example"));
    assert_eq!(record.display_name, "dana@acme.example");
    assert!(is_available(&desktop, account) && is_available(&laptop, account));
    summary(
        "guest-upgrade-seen-elsewhere",
        format!(
            "upgraded on the laptop through registry A, seen registered by the desktop through \
             registry B {} ms after the upgrade began (same account, same sessions)",
            latency.as_millis()
        ),
    );
}

/// The `lanyard` binary in a home of the test's own: a passphrase vault, the stack's IdP and
/// registry A, nothing of the developer's environment.
fn lanyard(home: &Path, stack: &Stack, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(workspace_binary("lanyard").unwrap());
    c.args(args)
        .env("LANYARD_HOME", home)
        .env("LANYARD_NO_BROWSER", "1")
        .env("LANYARD_STORE_BACKEND", "vault")
        .env("LANYARD_VAULT_PASSPHRASE", "test passphrase")
        .env("LANYARD_IDP", &stack.idp.base_url)
        .env("LANYARD_REGISTRY", &stack.a.url)
        .env_remove("LANYARD_ACCOUNT")
        .env_remove("LANYARD_PROFILE")
        .env_remove("LANYARD_UPGRADE_PASSWORD")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .current_dir(home)
        .kill_on_drop(true);
    c
}

/// `lanyard login --tenant TENANT`, the IdP's form filled as `user`.
async fn lanyard_login(home: &Path, stack: &Stack, tenant: &str, user: &str) {
    let mut child = lanyard(home, stack, &["login", "--tenant", tenant])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(GENEROUS, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Open this URL to sign in: ") {
                return url.to_owned();
            }
        }
        panic!("lanyard login printed no sign-in URL")
    })
    .await
    .expect("lanyard login prints its sign-in URL");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    test_harness::idp::sign_in_at(&url, user).await;
    let out = tokio::time::timeout(GENEROUS, child.wait_with_output())
        .await
        .expect("lanyard login ends")
        .unwrap();
    assert!(
        out.status.success(),
        "lanyard login: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Moves the stored expiry of the default profile's access tokens `by` seconds earlier: to a
/// `lanyard` process, which decides on the index's expiry and its wall clock, that is `by`
/// seconds passing.
fn age_access_tokens(home: &Path, by: i64) {
    let index = home.join("data/profiles/default/accounts.json");
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    for account in file["accounts"].as_array_mut().unwrap() {
        let at = account["access_token_expires_at"].as_i64().unwrap();
        account["access_token_expires_at"] = (at - by).into();
    }
    std::fs::write(&index, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
}

#[tokio::test]
async fn eight_processes_asking_for_one_accounts_token_at_expiry_cause_one_refresh() {
    // Access tokens live 30 s at acme here; with a 27 s refresh margin a token is due 3 s after
    // issue, and the one a refresh issues is not.
    let mut config = mock_idp::IdpConfig::defaults();
    config.tenants[0].lifetimes.access_token = 30;
    let stack = stack_with(idp(config).await, Feed::Nats).await;
    let home = tempfile::tempdir().unwrap();
    lanyard_login(home.path(), &stack, "acme", "alice").await;
    let refreshes = |audit: &Value| audit["counters"]["token.refresh_token.ok"].as_u64();
    assert_eq!(refreshes(&stack.idp.audit("acme").await), None);
    age_access_tokens(home.path(), 4);

    // Eight processes started together; each runs to its end on its own.
    let started = Instant::now();
    let children: Vec<tokio::process::Child> = (0..8)
        .map(|_| {
            lanyard(home.path(), &stack, &["token"])
                .env("LANYARD_REFRESH_MARGIN_SECS", "27")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut results = Vec::new();
    for child in children {
        let out = tokio::time::timeout(GENEROUS, child.wait_with_output())
            .await
            .expect("lanyard token ends")
            .unwrap();
        assert!(
            out.status.success(),
            "lanyard token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        results.push(out);
    }
    let all_done = started.elapsed();
    let tokens: BTreeSet<&[u8]> = results.iter().map(|o| o.stdout.as_slice()).collect();
    assert_eq!(tokens.len(), 1, "all eight print the one refreshed token");
    let token = claims(String::from_utf8_lossy(tokens.first().unwrap()).trim());
    assert_eq!(token["iss"], stack.idp.issuer("acme").as_str());

    let audit = stack.idp.audit("acme").await;
    let counters = &audit["counters"];
    assert_eq!(refreshes(&audit), Some(1), "one refresh: {counters}");
    assert!(
        counters.get("token.refresh_token.invalid_grant").is_none(),
        "no refused refresh: {counters}"
    );
    let alarms: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap_or_default().contains("reuse"))
        .collect();
    assert!(alarms.is_empty(), "no reuse alarm: {alarms:?}");
    summary(
        "eight-processes-one-refresh",
        format!(
            "8 `lanyard token` processes at expiry, 1 refresh at the IdP, 0 reuse alarms \
             (all answered within {} ms)",
            all_done.as_millis()
        ),
    );
}

#[tokio::test]
async fn a_stolen_refresh_token_replayed_after_rotation_revokes_its_family_and_signs_the_device_out(
) {
    let stack = stack(Feed::Nats).await;
    let laptop = device("laptop", &stack.a);
    let desktop = device("desktop", &stack.b);
    let keys = login_all(&stack, &laptop).await;
    login_all(&stack, &desktop).await;
    let alice = &keys[0];
    let subject = meta(&laptop, alice).await.id.subject.as_str().to_owned();

    // A thief copies the laptop's alice@acme refresh token; then the laptop refreshes, which
    // rotates it.
    let stolen = secret(&laptop, alice, ItemKind::RefreshToken);
    laptop.manager.refresh(alice, true).await.unwrap();
    assert_ne!(
        secret(&laptop, alice, ItemKind::RefreshToken).expose_secret(),
        stolen.expose_secret(),
        "the refresh rotated the refresh token"
    );

    // The thief replays the stolen token: refused, and the IdP revokes the whole family.
    let replay = test_harness::idp::refresh(
        &stack.idp.issuer("acme"),
        "lanyard-cli",
        stolen.expose_secret(),
    )
    .await;
    assert_eq!(replay["error"], "invalid_grant", "{replay}");
    assert!(replay.get("access_token").is_none(), "{replay}");
    let reuse_alarms = |audit: Value| -> Vec<Value> {
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "refresh_token_reuse")
            .cloned()
            .collect()
    };
    let alarms = reuse_alarms(stack.idp.audit("acme").await);
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["sub"], subject.as_str());

    // The laptop's next refresh finds its (legitimate) token revoked with the family: alice@acme
    // is signed out there, with the IdP's reason.
    let mut events = laptop.manager.events();
    let laptop_session = secret(&laptop, alice, ItemKind::SessionToken);
    let reason = match laptop.manager.refresh(alice, true).await.unwrap_err() {
        SessionError::ReauthenticationRequired { account, reason } => {
            assert_eq!(account, alice.as_str());
            reason
        }
        other => panic!("the laptop must sign alice@acme in again, not {other:?}"),
    };
    assert_eq!(reason, "refresh token has been revoked");
    assert_eq!(
        *laptop.manager.state(alice).borrow(),
        SessionState::Unavailable {
            reason: UnavailableReason::SignedOut
        }
    );
    let signed_out = next_event(&mut events, |e| match e {
        ManagerEvent::SignedOut { account } => Some(account),
        _ => None,
    })
    .await;
    assert_eq!(&signed_out, alice);
    assert!(
        wiped(&laptop, alice),
        "the laptop holds no token of alice@acme"
    );
    // Whoever copied the refresh token from this account store may hold its session token
    // too: the signed-out device's registry session is revoked, not left live.
    for reg in [&stack.a, &stack.b] {
        assert_eq!(
            reg.authenticate(json!({"session_token": laptop_session.expose_secret()}))
                .await,
            (401, Some("session_revoked".to_owned())),
            "registry {}",
            reg.name
        );
    }
    assert_eq!(
        device_ids(&sessions(&desktop, alice).await),
        devices(&["desktop"]),
        "the laptop's alice@acme session is gone from the desktop's list"
    );

    // Nothing else: the laptop's other accounts, and the desktop's alice@acme (a grant of its
    // own), refresh and are served; the IdP raised no other alarm.
    for account in &keys[1..] {
        untouched(&stack, &[&laptop, &desktop], account).await;
    }
    untouched(&stack, &[&desktop], alice).await;
    assert_eq!(reuse_alarms(stack.idp.audit("acme").await).len(), 1);
    summary(
        "stolen-refresh-token",
        format!(
            "the replay was refused (invalid_grant) and its family revoked; the laptop's \
             alice@acme signed out (\"{reason}\") and its registry session revoked; its 2 other accounts and the desktop untouched"
        ),
    );
}

/// `jwt` with its payload claim `claim` set to `value`, the signature kept: a forgery.
fn with_claim(jwt: &str, claim: &str, value: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut payload = claims(jwt);
    payload[claim] = value.into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    parts.join(".")
}

/// What the tenant's admin listing says of its sessions, minus what a heartbeat moves: whether
/// a refused call changed anything.
async fn tenant_sessions(reg: &RegistryProcess, tenant: &str) -> BTreeSet<String> {
    reg.admin_sessions(tenant)
        .await
        .iter()
        .map(|s| {
            json!([
                s["session_id"],
                s["account_id"],
                s["tenant"],
                s["revoked_at"],
                s["expires_at"],
                s["auth_time"]
            ])
            .to_string()
        })
        .collect()
}

#[tokio::test]
async fn credentials_of_one_tenant_are_refused_in_the_other_by_every_process() {
    let stack = stack(Feed::Nats).await;
    let laptop = device("laptop", &stack.a);
    let desktop = device("desktop", &stack.b);
    let keys = login_all(&stack, &laptop).await;
    login_all(&stack, &desktop).await;
    let (alice_acme, alice_globex) = (&keys[0], &keys[1]);
    let before = (
        tenant_sessions(&stack.a, "acme").await,
        tenant_sessions(&stack.a, "globex").await,
    );
    assert_eq!((before.0.len(), before.1.len()), (2, 4));

    let mut refusals = 0;
    for (d, reg) in [(&laptop, &stack.a), (&desktop, &stack.b)] {
        let (from_acme, from_globex) = (
            secret(d, alice_acme, ItemKind::SessionToken),
            secret(d, alice_globex, ItemKind::SessionToken),
        );
        // A session token of one tenant relabelled as the other's: its checksum no longer
        // matches, so it is refused before any lookup — on a heartbeat and on a listing.
        for (token, from, to) in [
            (&from_acme, "acme", "globex"),
            (&from_globex, "globex", "acme"),
        ] {
            let forged =
                token
                    .expose_secret()
                    .replacen(&format!("_{from}_"), &format!("_{to}_"), 1);
            assert_ne!(&forged, token.expose_secret(), "the tenant is in the token");
            assert_eq!(
                reg.authenticate(json!({"session_token": forged})).await,
                (401, Some("malformed_token".to_owned())),
                "registry {}: {from}'s token as {to}'s",
                reg.name
            );
            let (status, body) = reg.get("/v1/sessions", &forged).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("malformed_token"))
            );
            refusals += 2;
        }
        // A session JWT of acme whose tenant claim says globex: its signature fails.
        let jwt = secret(d, alice_acme, ItemKind::SessionJwt);
        let forged = with_claim(jwt.expose_secret(), "tenant", "globex");
        assert_eq!(
            reg.authenticate(json!({"session_jwt": forged})).await,
            (401, Some("invalid_session_jwt".to_owned())),
            "registry {}: acme's session JWT as globex's",
            reg.name
        );
        // The untouched JWT still authenticates (so the refusal was the forgery's).
        assert_eq!(
            reg.authenticate(json!({"session_jwt": jwt.expose_secret()}))
                .await
                .0,
            200
        );
        refusals += 1;

        // ID tokens of one tenant offered to the other: a new session, a step-up
        // (re-authentication) and a guest upgrade of the other tenant's session.
        for (issuer_tenant, as_tenant) in [("acme", "globex"), ("globex", "acme")] {
            let tokens = stack.idp.login(issuer_tenant, "alice", "lanyard-cli").await;
            let id_token = tokens["id_token"].as_str().unwrap();
            let (status, body) = reg
                .post(
                    "/v1/sessions",
                    None,
                    json!({"id_token": id_token, "tenant": as_tenant,
                           "device": {"id": "intruder", "name": "intruder", "platform": "linux"}}),
                )
                .await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("untrusted_issuer")),
                "registry {}: a session of {as_tenant} from {issuer_tenant}'s ID token: {body}",
                reg.name
            );
            let other_session = if as_tenant == "acme" {
                &from_acme
            } else {
                &from_globex
            };
            let (status, body) = reg
                .post(
                    "/v1/sessions/reauthenticate",
                    Some(other_session.expose_secret()),
                    json!({"id_token": id_token}),
                )
                .await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_id_token")),
                "registry {}: a step-up of {as_tenant}'s session with {issuer_tenant}'s ID \
                 token: {body}",
                reg.name
            );
            let (status, body) = reg
                .post(
                    "/v1/sessions/upgrade",
                    Some(other_session.expose_secret()),
                    json!({"id_token": id_token}),
                )
                .await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("issuer_mismatch")),
                "registry {}: {body}",
                reg.name
            );
            refusals += 3;
        }
        // A tenant's admin key opens no other tenant.
        let (status, body) = reg
            .get("/v1/admin/tenants/globex/sessions", "acme-admin-key")
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_api_key"))
        );
        refusals += 1;
    }

    // At the IdP: acme's refresh and access tokens mean nothing to globex.
    let refresh = secret(&laptop, alice_acme, ItemKind::RefreshToken);
    let answer = test_harness::idp::refresh(
        &stack.idp.issuer("globex"),
        "lanyard-cli",
        refresh.expose_secret(),
    )
    .await;
    assert_eq!(answer["error"], "invalid_grant", "{answer}");
    let access = secret(&laptop, alice_acme, ItemKind::AccessToken);
    let userinfo = reqwest::Client::new()
        .get(format!("{}/userinfo", stack.idp.issuer("globex")))
        .bearer_auth(access.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
    refusals += 2;

    // Nothing changed: the same sessions, all live; every account still works on both devices.
    let after = (
        tenant_sessions(&stack.b, "acme").await,
        tenant_sessions(&stack.b, "globex").await,
    );
    assert_eq!(after, before, "no session was created, ended or stepped up");
    for account in &keys {
        untouched(&stack, &[&laptop, &desktop], account).await;
    }
    summary(
        "cross-tenant-credentials",
        format!(
            "{refusals} cross-tenant presentations refused by registries A and B and the IdP, \
             each with its error code; the 6 sessions unchanged"
        ),
    );
}
