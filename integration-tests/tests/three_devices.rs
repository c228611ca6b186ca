#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The whole flow, end to end: the `mock-idp` binary (a process of its own) with two tenants, the session registry on a fresh
//! Postgres database (migrated at start, row-level security on), and three devices — each a
//! `SessionManager` with its own account store — signed in to two accounts in two tenants
//! (alice in acme, carol in globex). Every wait on a state is a wait on its watch channel with a
//! generous timeout; nothing asserts how long anything took.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use account_store::memory::MemoryStore;
use account_store::{AccountKey, AccountStore, ItemKind};
use lanyard_clock::ManualClock;
use secrecy::SecretString;
use serde_json::Value;
use session_core::registry::RegistryClient;
use session_core::{
    DeviceIdentity, LoginMethod, LoginRequest, LogoutScope, ManagerEvent, ManagerOptions,
    SessionError, SessionManager, SessionState, UnavailableReason,
};
use test_harness::{workspace_binary, IdpProcess, TestDatabase};

/// How long a pushed change may take before the test gives up (not an assertion on speed).
const GENEROUS: Duration = Duration::from_secs(30);

struct Stack {
    idp: IdpProcess,
    registry: String,
    _db: TestDatabase,
}

async fn stack() -> Stack {
    let idp = IdpProcess::start(
        &workspace_binary("mock-idp").unwrap(),
        &mock_idp::IdpConfig::defaults(),
    )
    .await
    .expect("mock-idp starts");
    let db = TestDatabase::create().await;
    let registry = session_registry::startup::Application::spawn_for_tests(
        &db.url,
        &[
            ("acme", idp.issuer("acme")),
            ("globex", idp.issuer("globex")),
        ],
    )
    .await
    .expect("the registry starts on the fresh Postgres database");
    Stack {
        idp,
        registry,
        _db: db,
    }
}

struct Device {
    id: &'static str,
    manager: SessionManager,
    _dir: tempfile::TempDir,
}

/// A device with its own profile: account index, secrets and refresh locks of its own. The
/// heartbeat keeps its default (3 minutes), so a change seen within the test came pushed.
fn device(id: &'static str) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    let options = ManagerOptions::new(
        DeviceIdentity {
            id: id.into(),
            name: format!("{id} of the test"),
            platform: "linux".into(),
        },
        Arc::new(ManualClock::new()),
        dir.path().join("locks"),
    );
    Device {
        id,
        manager: SessionManager::new(store, options),
        _dir: dir,
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
    let meta = d
        .manager
        .login(
            LoginRequest {
                issuer: stack.idp.issuer(tenant),
                client_id: "lanyard-cli".into(),
                registry_url: Some(stack.registry.clone()),
                tenant: Some(tenant.into()),
            },
            LoginMethod::Browser(&browser(user), Duration::from_secs(30)),
        )
        .await
        .unwrap_or_else(|e| panic!("{} signs in as {user}@{tenant}: {e}", d.id));
    meta.key
}

fn session_token(d: &Device, account: &AccountKey) -> SecretString {
    d.manager
        .store()
        .secrets()
        .require(account, ItemKind::SessionToken)
        .unwrap()
}

fn session_id(d: &Device, account: &AccountKey) -> String {
    match &*d.manager.state(account).borrow() {
        SessionState::Available { session_id, .. } => session_id.clone(),
        other => panic!("{} is not signed in to {account}: {other:?}", d.id),
    }
}

/// The registry's list of `account`'s live sessions, as `d` sees it.
async fn sessions(stack: &Stack, d: &Device, account: &AccountKey) -> Vec<Value> {
    let list = RegistryClient::new(&stack.registry)
        .list(&session_token(d, account), account.as_str())
        .await
        .unwrap();
    serde_json::from_value(serde_json::to_value(list).unwrap()).unwrap()
}

fn device_ids(sessions: &[Value]) -> BTreeSet<String> {
    sessions
        .iter()
        .map(|s| s["device"]["id"].as_str().unwrap().to_owned())
        .collect()
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

fn is_available(d: &Device, account: &AccountKey) -> bool {
    matches!(
        *d.manager.state(account).borrow(),
        SessionState::Available { .. }
    )
}

#[tokio::test]
async fn three_devices_two_tenants_revoke_one_device_then_log_out_everywhere() {
    let stack = stack().await;
    let devices = [device("laptop"), device("phone"), device("desktop")];
    let [laptop, phone, desktop] = &devices;

    // Every device signs in to both accounts: alice in acme, carol in globex.
    let mut alice = None;
    let mut carol = None;
    for d in &devices {
        let a = login(&stack, d, "acme", "alice").await;
        let c = login(&stack, d, "globex", "carol").await;
        assert_eq!(alice.get_or_insert_with(|| a.clone()), &a, "one alice");
        assert_eq!(carol.get_or_insert_with(|| c.clone()), &c, "one carol");
        assert_ne!(a, c);
        assert_eq!(d.manager.accounts().await.unwrap().len(), 2, "{}", d.id);
        assert!(is_available(d, &a) && is_available(d, &c), "{}", d.id);
    }
    let (alice, carol) = (alice.unwrap(), carol.unwrap());

    // Each device lists the others: three live sessions per account, one per device, exactly
    // one of them this device's own; the two tenants' sessions never mix.
    let all = BTreeSet::from(["desktop", "laptop", "phone"].map(String::from));
    let mut alice_sessions = BTreeSet::new();
    let mut carol_sessions = BTreeSet::new();
    for d in &devices {
        for (account, seen) in [(&alice, &mut alice_sessions), (&carol, &mut carol_sessions)] {
            let list = sessions(&stack, d, account).await;
            assert_eq!(list.len(), 3, "{}: {list:?}", d.id);
            assert_eq!(device_ids(&list), all, "{}", d.id);
            let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
            assert_eq!(current.len(), 1, "{}: {list:?}", d.id);
            assert_eq!(current[0]["device"]["id"], d.id);
            assert_eq!(
                current[0]["session_id"].as_str(),
                Some(session_id(d, account).as_str())
            );
            seen.extend(list.iter().map(|s| s["session_id"].to_string()));
        }
    }
    assert_eq!(alice_sessions.len(), 3);
    assert_eq!(carol_sessions.len(), 3);
    assert!(alice_sessions.is_disjoint(&carol_sessions));

    // The laptop revokes the phone's alice session: the registry pushes the revoke and the
    // phone signs alice out by itself (its heartbeat is minutes away).
    let mut phone_events = phone.manager.events();
    // Read before revoking: the pushed revoke may turn the phone's state before the answer is in.
    let phone_alice = session_id(phone, &alice);
    let revoked = RegistryClient::new(&stack.registry)
        .revoke(
            &session_token(laptop, &alice),
            &session_core::registry_api::RevokeRequest {
                session_id: Some(phone_alice.clone()),
                scope: None,
            },
            alice.as_str(),
        )
        .await
        .unwrap();
    assert_eq!(revoked, [phone_alice]);
    let state = wait_for(phone, &alice, |s| {
        !matches!(s, SessionState::Available { .. })
    })
    .await;
    assert_eq!(
        state,
        SessionState::Unavailable {
            reason: UnavailableReason::RevokedRemotely
        }
    );
    let event = tokio::time::timeout(GENEROUS, async {
        loop {
            match phone_events.recv().await.unwrap() {
                e @ ManagerEvent::RevokedRemotely { .. } => return e,
                _ => continue,
            }
        }
    })
    .await
    .expect("the phone announces the remote revoke");
    assert_eq!(
        event,
        ManagerEvent::RevokedRemotely {
            account: alice.clone()
        }
    );
    for item in ItemKind::ALL {
        assert!(
            phone
                .manager
                .store()
                .secrets()
                .get(&alice, item)
                .unwrap()
                .is_none(),
            "the phone wiped alice's {item:?}"
        );
    }
    assert!(is_available(phone, &carol), "the phone keeps carol");
    assert!(is_available(laptop, &alice) && is_available(desktop, &alice));
    let list = sessions(&stack, desktop, &alice).await;
    assert_eq!(
        device_ids(&list),
        BTreeSet::from(["desktop", "laptop"].map(String::from)),
        "the phone's session is gone from every list"
    );

    // The desktop logs alice out everywhere: the laptop is told and signs alice out too.
    let laptop_alice_token = session_token(laptop, &alice);
    let report = desktop
        .manager
        .logout(LogoutScope::Everywhere(alice.clone()))
        .await
        .unwrap();
    assert_eq!(report.removed, std::slice::from_ref(&alice));
    assert!(report.not_revoked.is_empty(), "{:?}", report.not_revoked);
    let state = wait_for(laptop, &alice, |s| {
        !matches!(s, SessionState::Available { .. })
    })
    .await;
    assert_eq!(
        state,
        SessionState::Unavailable {
            reason: UnavailableReason::RevokedRemotely
        }
    );
    assert!(
        desktop
            .manager
            .accounts()
            .await
            .unwrap()
            .iter()
            .all(|a| a.key != alice),
        "the desktop forgot alice"
    );
    // The registry agrees: the laptop's alice session no longer authenticates.
    let err = RegistryClient::new(&stack.registry)
        .authenticate(&laptop_alice_token, None, alice.as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::ReauthenticationRequired { .. }),
        "{err:?}"
    );
    for d in &devices {
        assert!(
            d.manager
                .store()
                .secrets()
                .get(&alice, ItemKind::RefreshToken)
                .unwrap()
                .is_none(),
            "{} holds no token of alice",
            d.id
        );
    }

    // carol is untouched everywhere: available, three live sessions, tokens still served.
    for d in &devices {
        assert!(is_available(d, &carol), "{} keeps carol", d.id);
        let token = d.manager.access_token(Some(&carol)).await.unwrap();
        assert!(!secrecy::ExposeSecret::expose_secret(&token).is_empty());
        RegistryClient::new(&stack.registry)
            .authenticate(&session_token(d, &carol), None, carol.as_str())
            .await
            .unwrap_or_else(|e| panic!("{}: carol's session still authenticates: {e}", d.id));
    }
    assert_eq!(device_ids(&sessions(&stack, laptop, &carol).await), all);

    for d in &devices {
        d.manager.logout(LogoutScope::Device).await.unwrap();
    }
}
