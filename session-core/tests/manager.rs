#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The SessionManager against the real mock IdP and the real registry (embedded SQLite), each
//! spawned per test.

use std::sync::Arc;
use std::time::Duration;

use account_store::memory::MemoryStore;
use account_store::{AccountStore, ItemKind};
use lanyard_clock::ManualClock;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use session_core::{
    DeviceIdentity, LoginMethod, LogoutScope, ManagerOptions, SessionManager, SessionState,
    UnavailableReason,
};
mod common;

use common::{event_streams_attached, request, stack, Stack};

struct Device {
    manager: SessionManager,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// The manager options of device `name`, its locks in `dir`.
fn options(name: &str, clock: Arc<ManualClock>, dir: &std::path::Path) -> ManagerOptions {
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            id: name.into(),
            name: format!("{name}'s machine"),
            platform: "linux".into(),
        },
        clock,
        dir.join("locks"),
    );
    options.backoff = Duration::from_millis(20);
    options
}

fn device(name: &str) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    Device {
        manager: SessionManager::new(store, options(name, clock.clone(), dir.path())),
        clock,
        _dir: dir,
    }
}

/// Presents `refresh_token` at the stack's token endpoint, as `lanyard-cli`.
async fn redeem_refresh_token(stack: &Stack, refresh_token: &str) -> reqwest::Response {
    stack
        .idp
        .http
        .post(format!("{}/token", stack.idp.issuer("acme")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "lanyard-cli"),
        ])
        .send()
        .await
        .unwrap()
}

/// A browser stand-in: opens the URL, posts the login form as `user`, follows the redirect to
/// the loopback listener.
fn browser(user: &'static str) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move { test_harness::idp::sign_in_at(&url, user).await });
    }
}

async fn counter(stack: &Stack, name: &str) -> u64 {
    stack.idp.audit("acme").await["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_for_state(
    d: &Device,
    key: &account_store::AccountKey,
    want: impl Fn(&SessionState) -> bool,
) -> SessionState {
    let mut rx = d.manager.state(key);
    let state = tokio::time::timeout(Duration::from_secs(10), async {
        rx.wait_for(|s| want(s)).await.map(|s| s.clone())
    })
    .await
    .expect("state changed in time")
    .unwrap();
    state
}

#[tokio::test]
async fn a_browser_login_stores_every_token_under_the_account_and_opens_a_registry_session() {
    let stack = stack().await;
    let d = device("laptop");
    let prompt = browser("alice");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&prompt, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(meta.email.as_deref(), Some("alice@acme.example"));
    assert_eq!(d.manager.active().await.unwrap().unwrap().key, meta.key);
    for item in ItemKind::ALL {
        assert!(
            d.manager
                .store()
                .secrets()
                .get(&meta.key, item)
                .unwrap()
                .is_some(),
            "{item:?} missing"
        );
    }
    assert!(matches!(
        &*d.manager.state(&meta.key).borrow(),
        SessionState::Available { .. }
    ));
    assert_eq!(
        d.manager.running_tasks(&meta.key),
        2,
        "heartbeat and event stream"
    );

    // Signing in again as the same person updates the same account.
    let again = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&prompt, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(again.key, meta.key);
    assert_eq!(d.manager.accounts().await.unwrap().len(), 1);
}

/// Two processes of one profile: managers on the same directory and vault (what two `lanyard`
/// processes of a profile share), each with its own memory.
fn two_processes(name: &str) -> (Device, SessionManager) {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut cfg = account_store::StoreConfig::new(dir.path(), "default")
            .backend(account_store::BackendChoice::Vault)
            .passphrase("correct horse battery staple".to_owned().into());
        cfg.argon2_memory_kib = Some(256);
        AccountStore::open(cfg).unwrap()
    };
    let clock = Arc::new(ManualClock::new());
    let first = SessionManager::new(open(), options(name, clock.clone(), dir.path()));
    let second = SessionManager::new(open(), options(name, clock.clone(), dir.path()));
    (
        Device {
            manager: first,
            clock,
            _dir: dir,
        },
        second,
    )
}

#[tokio::test]
async fn signing_in_again_ends_the_session_and_grant_it_replaces_and_other_processes_keep_the_new_one(
) {
    let stack = stack().await;
    let (laptop, other) = two_processes("laptop");
    let prompt = browser("alice");
    let first = laptop
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&prompt, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let secrets = |item| {
        laptop
            .manager
            .store()
            .secrets()
            .require(&first.key, item)
            .unwrap()
    };
    let (old_token, old_refresh) = (
        secrets(ItemKind::SessionToken),
        secrets(ItemKind::RefreshToken),
    );
    // Another process of the profile follows the session too (a watcher holding the old token).
    other.start().await.unwrap();
    let old_id = match &*other.state(&first.key).borrow() {
        SessionState::Available { session_id, .. } => session_id.clone(),
        s => panic!("the other process is not following the session: {s:?}"),
    };
    event_streams_attached(&stack, 2).await;

    let again = laptop
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&prompt, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(again.key, first.key);
    let new_token = secrets(ItemKind::SessionToken);
    assert_ne!(new_token.expose_secret(), old_token.expose_secret());

    // The replaced registry session is ended: refused, and no longer listed beside the new one.
    let registry = session_core::registry::RegistryClient::new(&stack.registry);
    let refused = registry
        .authenticate(&old_token, None, "a")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            session_core::SessionError::ReauthenticationRequired { .. }
        ),
        "{refused:?}"
    );
    let listed = laptop.manager.list_sessions(&first.key).await.unwrap();
    assert_eq!(listed.len(), 1, "one session for this device: {listed:?}");
    assert!(listed[0].current);
    assert_ne!(listed[0].session_id, old_id);

    // The replaced refresh grant is revoked at the IdP.
    let res = redeem_refresh_token(&stack, old_refresh.expose_secret()).await;
    assert_eq!(res.status(), 400, "the replaced refresh token still works");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    // The other process heard its session end, found the new one stored, and follows that one:
    // nothing was wiped.
    let state = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rx = other.state(&first.key);
        rx.wait_for(|s| match s {
            SessionState::Available { session_id, .. } => *session_id != old_id,
            SessionState::Unavailable { .. } => true,
        })
        .await
        .map(|s| s.clone())
    })
    .await
    .expect("the other process heard of the new session")
    .unwrap();
    assert!(
        matches!(&state, SessionState::Available { session_id, .. } if *session_id == listed[0].session_id),
        "{state:?}"
    );
    for item in ItemKind::ALL {
        assert!(
            other
                .store()
                .secrets()
                .get(&first.key, item)
                .unwrap()
                .is_some(),
            "{item:?} was wiped"
        );
    }
    assert_eq!(
        secrets(ItemKind::SessionToken).expose_secret(),
        new_token.expose_secret()
    );
    other.verify_session(&first.key).await.unwrap();
    // The new grant lives: a refresh through it succeeds.
    laptop.manager.refresh(&first.key, true).await.unwrap();
    assert_eq!(other.running_tasks(&first.key), 2, "still watching");
}

#[tokio::test]
async fn two_accounts_coexist_and_switching_changes_the_active_one() {
    let stack = stack().await;
    let d = device("laptop");
    let alice = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let bob = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("bob"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(
        d.manager.active().await.unwrap().unwrap().key,
        bob.key,
        "the last login is active"
    );
    let mut events = d.manager.events();
    d.manager.switch(&alice.key).await.unwrap();
    assert_eq!(d.manager.active().await.unwrap().unwrap().key, alice.key);
    assert!(matches!(
        events.recv().await.unwrap(),
        session_core::ManagerEvent::Switched { .. }
    ));
    let a = d.manager.access_token(None).await.unwrap();
    let b = d.manager.access_token(Some(&bob.key)).await.unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
}

#[tokio::test]
async fn access_tokens_refresh_proactively_and_concurrent_callers_share_one_refresh() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let first = d.manager.access_token(None).await.unwrap();
    assert_eq!(
        counter(&stack, "token.refresh_token.ok").await,
        0,
        "a fresh token needs no refresh"
    );
    // 10 minutes of lifetime, 5 minutes of margin: at +6 min a refresh is due.
    d.clock.advance(time::Duration::minutes(6));
    let calls = (0..10).map(|_| d.manager.access_token(Some(&meta.key)));
    let tokens = futures_util::future::join_all(calls).await;
    let tokens: Vec<String> = tokens
        .into_iter()
        .map(|t| t.unwrap().expose_secret().to_owned())
        .collect();
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "everyone got the one refreshed token"
    );
    assert_ne!(tokens[0], first.expose_secret());
    assert_eq!(
        counter(&stack, "token.refresh_token.ok").await,
        1,
        "ten callers, one refresh"
    );
    assert_eq!(
        counter(&stack, "token.refresh_token.invalid_grant").await,
        0,
        "no false reuse detection"
    );
}

#[tokio::test]
async fn a_rejected_refresh_token_signs_the_account_out_cleanly() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    // Someone else uses the refresh token first: ours is now a replay.
    let rt = d
        .manager
        .store()
        .secrets()
        .require(&meta.key, ItemKind::RefreshToken)
        .unwrap();
    let res = redeem_refresh_token(&stack, rt.expose_secret()).await;
    assert_eq!(res.status(), 200);
    d.clock.advance(time::Duration::minutes(6));
    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(
        matches!(
            err,
            session_core::SessionError::ReauthenticationRequired { .. }
        ),
        "{err:?}"
    );
    for item in ItemKind::ALL {
        assert!(
            d.manager
                .store()
                .secrets()
                .get(&meta.key, item)
                .unwrap()
                .is_none(),
            "{item:?} was kept"
        );
    }
    assert_eq!(
        *d.manager.state(&meta.key).borrow(),
        SessionState::Unavailable {
            reason: UnavailableReason::SignedOut
        }
    );
    assert_eq!(d.manager.running_tasks(&meta.key), 0);
}

#[tokio::test]
async fn an_idp_outage_during_refresh_keeps_every_token_and_retries_at_most_three_times() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let before: Vec<Option<String>> = ItemKind::ALL
        .iter()
        .map(|i| {
            d.manager
                .store()
                .secrets()
                .get(&meta.key, *i)
                .unwrap()
                .map(|s| s.expose_secret().to_owned())
        })
        .collect();
    d.clock.advance(time::Duration::minutes(6));
    stack
        .idp
        .inject_fault(
            "acme",
            json!({"endpoint": "token", "down": true, "count": 3}),
        )
        .await;
    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let after: Vec<Option<String>> = ItemKind::ALL
        .iter()
        .map(|i| {
            d.manager
                .store()
                .secrets()
                .get(&meta.key, *i)
                .unwrap()
                .map(|s| s.expose_secret().to_owned())
        })
        .collect();
    assert_eq!(before, after, "nothing is lost on a transient failure");
    assert!(stack.idp.audit("acme").await["counters"]
        .get("token.refresh_token.ok")
        .is_none());
    // Two failures then success: the third try wins.
    stack
        .idp
        .inject_fault(
            "acme",
            json!({"endpoint": "token", "status": 503, "count": 2}),
        )
        .await;
    let token = d.manager.access_token(None).await.unwrap();
    assert_ne!(Some(token.expose_secret().to_owned()), before[3]);
    assert_eq!(counter(&stack, "token.refresh_token.ok").await, 1);
}

#[tokio::test]
async fn a_revoke_on_another_device_signs_this_one_out_within_a_second_or_so() {
    let stack = stack().await;
    let (laptop, phone) = (device("laptop"), device("phone"));
    let a = laptop
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let p = phone
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(a.key, p.key, "same account on two devices");
    // Both devices' event streams attach (a revoke before the phone's would be history to it).
    event_streams_attached(&stack, 2).await;
    let token = laptop
        .manager
        .store()
        .secrets()
        .require(&a.key, ItemKind::SessionToken)
        .unwrap();
    let revoked = session_core::registry::RegistryClient::new(&stack.registry)
        .revoke(
            &token,
            &session_core::registry_api::RevokeRequest {
                scope: Some(session_core::registry_api::RevokeScope::Others),
                session_id: None,
            },
            "a",
        )
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    let state = wait_for_state(&phone, &p.key, |s| {
        matches!(s, SessionState::Unavailable { .. })
    })
    .await;
    assert_eq!(
        state,
        SessionState::Unavailable {
            reason: UnavailableReason::RevokedRemotely
        }
    );
    assert!(
        phone
            .manager
            .store()
            .secrets()
            .get(&p.key, ItemKind::RefreshToken)
            .unwrap()
            .is_none(),
        "tokens wiped"
    );
    assert!(
        matches!(
            &*laptop.manager.state(&a.key).borrow(),
            SessionState::Available { .. }
        ),
        "the laptop stays signed in"
    );
}

#[tokio::test]
async fn logout_revokes_remotely_wipes_locally_and_stops_every_background_task() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let session_token = d
        .manager
        .store()
        .secrets()
        .require(&meta.key, ItemKind::SessionToken)
        .unwrap();
    let rt = d
        .manager
        .store()
        .secrets()
        .require(&meta.key, ItemKind::RefreshToken)
        .unwrap();
    assert_eq!(d.manager.running_tasks(&meta.key), 2);
    let report = d
        .manager
        .logout(LogoutScope::Account(meta.key.clone()))
        .await
        .unwrap();
    assert!(report.not_revoked.is_empty(), "{:?}", report.not_revoked);
    assert_eq!(d.manager.running_tasks(&meta.key), 0);
    assert!(d.manager.accounts().await.unwrap().is_empty());
    let registry = session_core::registry::RegistryClient::new(&stack.registry);
    assert!(matches!(
        registry.authenticate(&session_token, None, "x").await,
        Err(session_core::SessionError::ReauthenticationRequired { .. })
    ));
    let introspect: Value = stack
        .idp
        .http
        .post(format!("{}/introspect", stack.idp.issuer("acme")))
        .basic_auth("lanyard-registry", Some("lanyard-registry-dev-secret"))
        .form(&[("token", rt.expose_secret())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        introspect["active"], false,
        "the refresh token was revoked at the IdP"
    );
}

#[tokio::test]
async fn logout_with_the_network_down_still_wipes_locally_and_says_what_was_not_revoked() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    stack
        .idp
        .inject_fault("acme", json!({"endpoint": "revocation", "down": true}))
        .await;
    let report = d
        .manager
        .logout(LogoutScope::Account(meta.key.clone()))
        .await
        .unwrap();
    assert_eq!(report.not_revoked.len(), 1, "{:?}", report.not_revoked);
    assert!(report.not_revoked[0].contains("refresh token"));
    assert!(d
        .manager
        .store()
        .secrets()
        .get(&meta.key, ItemKind::RefreshToken)
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    // Revoke the access token at the IdP: userinfo now answers 401 until a refresh.
    let at = d.manager.access_token(None).await.unwrap();
    stack
        .idp
        .http
        .post(format!("{}/revoke", stack.idp.issuer("acme")))
        .form(&[("token", at.expose_secret()), ("client_id", "lanyard-cli")])
        .send()
        .await
        .unwrap();
    let url = format!("{}/userinfo", stack.idp.issuer("acme"));
    let http = reqwest::Client::new();
    let res = d
        .manager
        .send_authenticated(Some(&meta.key), |token| http.get(&url).bearer_auth(token))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(counter(&stack, "token.refresh_token.ok").await, 1);
    // A resource that always says 401 gets exactly one refresh and one retry.
    let res = d
        .manager
        .send_authenticated(Some(&meta.key), |_| http.get(&url).bearer_auth("garbage"))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(counter(&stack, "token.refresh_token.ok").await, 2);
}

#[tokio::test]
async fn a_refreshed_id_token_of_another_issuer_subject_audience_or_party_wipes_the_account() {
    let stack = stack().await;
    for tamper in ["wrong_sub", "wrong_iss", "wrong_aud", "wrong_azp"] {
        let d = device("laptop");
        let meta = d
            .manager
            .login(
                request(&stack),
                LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
            )
            .await
            .unwrap();
        stack
            .idp
            .inject_fault("acme", json!({"id_token": tamper, "count": 1}))
            .await;
        d.clock.advance(time::Duration::minutes(6));
        let refreshes = counter(&stack, "token.refresh_token.ok").await;
        let err = d.manager.access_token(None).await.unwrap_err();
        let session_core::SessionError::ReauthenticationRequired { reason, .. } = &err else {
            panic!("{tamper}: {err:?}");
        };
        assert!(reason.contains("does not match"), "{tamper}: {reason}");
        for item in ItemKind::ALL {
            assert!(
                d.manager
                    .store()
                    .secrets()
                    .get(&meta.key, item)
                    .unwrap()
                    .is_none(),
                "{tamper}: {item:?} was kept"
            );
        }
        assert!(
            d.manager.store().index().get(&meta.key).unwrap().is_some(),
            "{tamper}: the account stays listed, to sign in again"
        );
        // Marked for a new sign-in: the spent refresh token is never presented again.
        assert!(matches!(
            d.manager.access_token(None).await,
            Err(session_core::SessionError::ReauthenticationRequired { .. })
        ));
        assert_eq!(
            counter(&stack, "token.refresh_token.ok").await,
            refreshes + 1,
            "{tamper}: one refresh, no retry with the spent token"
        );
        assert_eq!(
            counter(&stack, "token.refresh_token.invalid_grant").await,
            0,
            "{tamper}: no reuse detection tripped"
        );
    }
}

#[tokio::test]
async fn a_login_asks_for_30_days_and_learns_the_tenants_cap() {
    let stack = stack().await;
    let d = device("laptop");
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let SessionState::Available { expires_at, .. } = d.manager.state(&meta.key).borrow().clone()
    else {
        panic!("no session");
    };
    let now = lanyard_clock::Clock::now(&*d.clock).unix_timestamp();
    // The test tenant's absolute limit is one day: 30 days asked, one day granted (the
    // registry's own default would have been one hour).
    assert!(
        (now + 86_400 - 120..=now + 86_400 + 120).contains(&expires_at),
        "{expires_at} vs now {now}"
    );
    let note = d.manager.session_note(&meta.key);
    assert_eq!(note.duration_minutes, Some(30 * 24 * 60));
    assert_eq!(note.absolute_expires_at, Some(expires_at));
}

#[tokio::test]
async fn a_session_in_use_is_extended_when_half_its_lifetime_is_left_at_most_once_per_period() {
    let stack = stack().await;
    let mut d = device("laptop");
    // A 10-minute session (the shortest the person could choose is 5).
    let dir = tempfile::tempdir().unwrap();
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            id: "laptop".into(),
            name: "laptop's machine".into(),
            platform: "linux".into(),
        },
        d.clock.clone(),
        dir.path().join("locks"),
    );
    options.session_duration = Duration::from_secs(600);
    d.manager = SessionManager::new(
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap(),
        options,
    );
    let meta = d
        .manager
        .login(
            request(&stack),
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let first = d.manager.session_note(&meta.key);
    assert_eq!(first.last_extended_at, None);
    // More than half left: used, not extended.
    d.manager.access_token(None).await.unwrap();
    assert_eq!(d.manager.session_note(&meta.key).last_extended_at, None);
    // 6 minutes later (4 left of 10): the next use extends it.
    d.clock.advance(time::Duration::minutes(6));
    d.manager.access_token(None).await.unwrap();
    let extended = d.manager.session_note(&meta.key);
    let now = lanyard_clock::Clock::now(&*d.clock).unix_timestamp();
    assert_eq!(extended.last_extended_at, Some(now));
    // Still less than half left on this clock, but it was extended just now: not again.
    d.manager.access_token(None).await.unwrap();
    assert_eq!(d.manager.session_note(&meta.key), extended);
    drop(dir);
}
