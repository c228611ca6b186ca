#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Guests in the SessionManager, against the real mock IdP and the real registry (embedded
//! SQLite): sign in as a guest, upgrade keeping the account, the subject and the registry session.

use std::sync::Arc;
use std::time::Duration;

use account_store::memory::MemoryStore;
use account_store::{AccountStore, ItemKind};
use lanyard_clock::ManualClock;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use session_core::registry::RegistryClient;
use session_core::{
    DeviceIdentity, LoginMethod, ManagerEvent, ManagerOptions, SessionManager, SessionState,
    UpgradeError, UpgradeRequest,
};
mod common;

use common::{request, stack, Stack};

fn manager() -> (SessionManager, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            id: "laptop".into(),
            name: "the laptop".into(),
            platform: "linux".into(),
        },
        Arc::new(ManualClock::new()),
        dir.path().join("locks"),
    );
    options.backoff = Duration::from_millis(20);
    (SessionManager::new(store, options), dir)
}

/// The browser of a person who picked the guest choice: follows `prompt=create` back to the
/// loopback listener. (`prompt` is a space-separated list: `consent` comes along, for
/// `offline_access`.)
fn guest_browser(url: &url::Url) {
    assert!(
        url.query_pairs()
            .any(|(k, v)| k == "prompt" && v.split(' ').any(|p| p == "create")),
        "{url}"
    );
    let url = url.to_string();
    tokio::spawn(async move { test_harness::idp::continue_as_guest_at(&url).await });
}

fn upgrade(username: &str) -> UpgradeRequest {
    UpgradeRequest {
        username: username.into(),
        password: SecretString::from("correct horse battery"),
        email: Some(format!("{username}@acme.example")),
        name: Some("Dana Scully".into()),
    }
}

/// What the registry says of the account's sessions, asked with its stored session token.
async fn registry_sessions(
    stack: &Stack,
    m: &SessionManager,
    key: &account_store::AccountKey,
) -> Vec<Value> {
    let token = m
        .store()
        .secrets()
        .get(key, ItemKind::SessionToken)
        .unwrap()
        .unwrap();
    let list = RegistryClient::new(&stack.registry)
        .list(&token, key.as_str())
        .await
        .unwrap();
    serde_json::from_value(serde_json::to_value(list).unwrap()).unwrap()
}

fn claims(jwt: &str) -> Value {
    session_core::tokens::jwt_claims(jwt).unwrap()
}

#[tokio::test]
async fn a_guest_upgrades_keeping_its_account_subject_and_registry_session() {
    let stack = stack().await;
    let (m, _dir) = manager();
    let guest = m
        .login_guest(request(&stack), &guest_browser, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(guest.is_guest);
    assert_eq!(guest.email, None);
    let before = registry_sessions(&stack, &m, &guest.key).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["is_guest"], true);
    let session_id = before[0]["session_id"].as_str().unwrap().to_owned();
    let guest_jwt = m
        .store()
        .secrets()
        .get(&guest.key, ItemKind::SessionJwt)
        .unwrap()
        .unwrap();
    assert_eq!(claims(guest_jwt.expose_secret())["is_guest"], true);

    let mut events = m.events();
    let done = m.upgrade_guest(&guest.key, upgrade("dana")).await.unwrap();

    // The same account: key, subject, nothing duplicated.
    assert_eq!(done.account.key, guest.key);
    assert_eq!(done.account.id.subject, guest.id.subject);
    assert!(!done.account.is_guest);
    assert_eq!(done.account.email.as_deref(), Some("dana@acme.example"));
    assert_eq!(done.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(done.username.as_deref(), Some("dana"));
    let accounts = m.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].key, guest.key);
    assert!(!accounts[0].is_guest);
    assert_eq!(m.active().await.unwrap().unwrap().key, guest.key);

    // The stored tokens are the registered user's.
    let id_token = m
        .store()
        .secrets()
        .get(&guest.key, ItemKind::IdToken)
        .unwrap()
        .unwrap();
    let c = claims(id_token.expose_secret());
    assert_eq!(c["is_guest"], false);
    assert_eq!(c["sub"], guest.id.subject.as_str());
    let jwt = m
        .store()
        .secrets()
        .get(&guest.key, ItemKind::SessionJwt)
        .unwrap()
        .unwrap();
    assert_eq!(claims(jwt.expose_secret())["is_guest"], false);
    assert_eq!(claims(jwt.expose_secret())["sid"], session_id.as_str());

    // The registry agrees: the same single session, no longer a guest's.
    let after = registry_sessions(&stack, &m, &guest.key).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["session_id"], session_id.as_str());
    assert_eq!(after[0]["is_guest"], false);
    assert_eq!(after[0]["email"], "dana@acme.example");
    match &*m.state(&guest.key).borrow() {
        SessionState::Available { session_id: s, .. } => assert_eq!(s, &session_id),
        other => panic!("unexpected state {other:?}"),
    }
    let upgraded = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let ManagerEvent::Upgraded { account } = events.recv().await.unwrap() {
                return account;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(upgraded, guest.key);

    // Tokens keep working for the registered user.
    assert!(!m
        .access_token(Some(&guest.key))
        .await
        .unwrap()
        .expose_secret()
        .is_empty());
}

#[tokio::test]
async fn upgrading_a_registered_account_is_refused_and_changes_nothing() {
    let stack = stack().await;
    let (m, _dir) = manager();
    let browser = |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move { test_harness::idp::sign_in_at(&url, "alice").await });
    };
    let alice = m
        .login(
            request(&stack),
            LoginMethod::Browser(&browser, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert!(!alice.is_guest);
    let tokens_before = m
        .store()
        .secrets()
        .get(&alice.key, ItemKind::RefreshToken)
        .unwrap();
    let err = m
        .upgrade_guest(&alice.key, upgrade("alice2"))
        .await
        .unwrap_err();
    assert!(matches!(err, UpgradeError::NotAGuest { .. }), "{err}");
    assert!(err.to_string().contains("not a guest"), "{err}");
    let after = m.accounts().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].email, alice.email);
    assert!(!after[0].is_guest);
    assert_eq!(
        m.store()
            .secrets()
            .get(&alice.key, ItemKind::RefreshToken)
            .unwrap()
            .map(|t| t.expose_secret().to_owned()),
        tokens_before.map(|t| t.expose_secret().to_owned()),
        "no token was touched"
    );
    // The IdP never heard of it.
    let audit = stack.idp.audit("acme").await;
    assert!(!audit.to_string().contains("guest_upgraded"));
}

#[tokio::test]
async fn a_taken_username_or_weak_password_leaves_the_guest_a_guest_and_a_retry_works() {
    let stack = stack().await;
    let (m, _dir) = manager();
    let guest = m
        .login_guest(request(&stack), &guest_browser, Duration::from_secs(20))
        .await
        .unwrap();
    let err = m
        .upgrade_guest(&guest.key, upgrade("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, UpgradeError::UsernameTaken { .. }), "{err}");
    let mut weak = upgrade("dana");
    weak.password = SecretString::from("short");
    let err = m.upgrade_guest(&guest.key, weak).await.unwrap_err();
    assert!(matches!(err, UpgradeError::Refused { .. }), "{err}");
    assert!(m.accounts().await.unwrap()[0].is_guest);
    assert_eq!(
        registry_sessions(&stack, &m, &guest.key).await[0]["is_guest"],
        true
    );
    let done = m.upgrade_guest(&guest.key, upgrade("dana")).await.unwrap();
    assert_eq!(done.account.key, guest.key);
    assert!(!done.account.is_guest);
}

#[test]
fn an_upgrade_request_never_shows_its_password() {
    let shown = format!("{:?}", upgrade("dana"));
    assert!(!shown.contains("correct horse"), "{shown}");
    assert!(shown.contains("dana"));
}

#[tokio::test]
async fn an_upgrade_the_idp_already_made_is_completed_on_the_next_try() {
    let stack = stack().await;
    let (m, _dir) = manager();
    let guest = m
        .login_guest(request(&stack), &guest_browser, Duration::from_secs(20))
        .await
        .unwrap();
    // An earlier try got as far as the IdP, then failed (the registry was unreachable, say).
    let access = m.access_token(Some(&guest.key)).await.unwrap();
    let (status, body) = test_harness::idp::upgrade_guest(
        &stack.idp.issuer("acme"),
        access.expose_secret(),
        serde_json::json!({"username": "dana", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        m.accounts().await.unwrap()[0].is_guest,
        "still a guest here"
    );

    // Retried with the same name (taken — by this user) or another: it completes as "dana".
    let done = m.upgrade_guest(&guest.key, upgrade("dana")).await.unwrap();
    assert_eq!(done.account.key, guest.key);
    assert!(!done.account.is_guest);
    assert_eq!(done.username.as_deref(), Some("dana"));
    let sessions = registry_sessions(&stack, &m, &guest.key).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["is_guest"], false);
    assert_eq!(
        done.session_id.as_deref(),
        sessions[0]["session_id"].as_str()
    );
}
