#![allow(clippy::unwrap_used, clippy::expect_used)]
//! RFC 9470 step-up: the registry refuses to end other sessions on a sign-in older than ten
//! minutes (`401 insufficient_user_authentication, max_age=600`); the manager then signs the
//! person in again with `max_age=0` — the same person or nothing —, re-authenticates the session
//! with the new ID token and retries the revoke once. Against the real mock IdP and registry on
//! one manual clock (the managers read it too), and a registry stand-in that challenges twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use account_store::memory::MemoryStore;
use account_store::{AccountKey, AccountStore, ItemKind};
use lanyard_clock::SharedClock;
use serde_json::json;
use session_core::{
    DeviceIdentity, LoginMethod, LogoutScope, ManagerOptions, RevokeTarget, SessionError,
    SessionManager,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
mod common;

use common::{request, stack_on_one_clock, Stack};

const ELEVEN_MINUTES: time::Duration = time::Duration::minutes(11);
const TIMEOUT: Duration = Duration::from_secs(20);

struct Device {
    manager: SessionManager,
    _dir: tempfile::TempDir,
}

fn device(name: &str, clock: SharedClock) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    let options = ManagerOptions::new(
        DeviceIdentity {
            id: name.into(),
            name: format!("{name}'s machine"),
            platform: "linux".into(),
        },
        clock,
        dir.path().join("locks"),
    );
    Device {
        manager: SessionManager::new(store, options),
        _dir: dir,
    }
}

/// A person at a browser that keeps its cookies (the IdP session) between sign-ins: opens an
/// authorization URL, fills the login form as `user` when the IdP shows one, and follows the
/// redirect to the client's loopback callback. Counts the login forms it was shown.
#[derive(Clone)]
struct Person {
    browser: reqwest::Client,
    user: Arc<Mutex<&'static str>>,
    forms: Arc<AtomicUsize>,
    sign_ins: Arc<AtomicUsize>,
}

impl Person {
    fn new(user: &'static str) -> Self {
        Self {
            browser: test_harness::idp::browser(),
            user: Arc::new(Mutex::new(user)),
            forms: Arc::default(),
            sign_ins: Arc::default(),
        }
    }

    /// Who fills the next login form.
    fn answer_as(&self, user: &'static str) {
        *self.user.lock().unwrap() = user;
    }

    fn forms_shown(&self) -> usize {
        self.forms.load(Ordering::SeqCst)
    }

    fn sign_ins(&self) -> usize {
        self.sign_ins.load(Ordering::SeqCst)
    }

    fn prompt(&self) -> impl Fn(&url::Url) + Send + Sync {
        let me = self.clone();
        move |url: &url::Url| {
            let me = me.clone();
            let url = url.clone();
            tokio::spawn(async move { me.sign_in_at(url).await });
        }
    }

    async fn sign_in_at(&self, url: url::Url) {
        self.sign_ins.fetch_add(1, Ordering::SeqCst);
        let issuer = format!(
            "{}://{}{}",
            url.scheme(),
            url.authority(),
            url.path().trim_end_matches("/authorize")
        );
        let res = self.browser.get(url.as_str()).send().await.unwrap();
        let callback = if res.status().is_redirection() {
            location(&res) // the IdP's session answered: no form
        } else {
            let page = res.text().await.unwrap();
            let marker = r#"name="auth_request" value=""#;
            let start = page.find(marker).expect("a login page") + marker.len();
            let id = page[start..].split('"').next().unwrap().to_owned();
            self.forms.fetch_add(1, Ordering::SeqCst);
            let user = *self.user.lock().unwrap();
            let res = self
                .browser
                .post(format!("{issuer}/login"))
                .form(&[
                    ("auth_request", id.as_str()),
                    ("username", user),
                    ("password", mock_idp::config::DEV_PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            location(&res)
        };
        self.browser.get(callback).send().await.unwrap();
    }
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
        .to_owned()
}

async fn sign_in(d: &Device, stack: &Stack, person: &Person) -> AccountKey {
    let prompt = person.prompt();
    d.manager
        .login(request(stack), LoginMethod::Browser(&prompt, TIMEOUT))
        .await
        .unwrap()
        .key
}

/// alice on a laptop and a phone, signed in eleven minutes ago (by every clock).
struct TwoDevices {
    stack: Stack,
    laptop: Device,
    phone: Device,
    laptop_person: Person,
    laptop_key: AccountKey,
    phone_key: AccountKey,
}

async fn alice_on_two_devices_eleven_minutes_ago() -> TwoDevices {
    let stack = stack_on_one_clock().await;
    let clock = stack.clock.clone().unwrap();
    let laptop = device("laptop", clock.clone());
    let phone = device("phone", clock.clone());
    let laptop_person = Person::new("alice");
    let laptop_key = sign_in(&laptop, &stack, &laptop_person).await;
    let phone_key = sign_in(&phone, &stack, &Person::new("alice")).await;
    assert_eq!(laptop_person.forms_shown(), 1);
    clock.advance(ELEVEN_MINUTES);
    TwoDevices {
        stack,
        laptop,
        phone,
        laptop_person,
        laptop_key,
        phone_key,
    }
}

async fn has_session(d: &Device, key: &AccountKey) -> bool {
    d.manager
        .store()
        .secrets()
        .get(key, ItemKind::SessionToken)
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn revoking_others_ten_minutes_after_the_sign_in_asks_for_a_fresh_one_then_revokes_them() {
    let t = alice_on_two_devices_eleven_minutes_ago().await;
    let prompt = t.laptop_person.prompt();
    let revoked = t
        .laptop
        .manager
        .revoke_sessions(
            &t.laptop_key,
            RevokeTarget::Others,
            Some(LoginMethod::Browser(&prompt, TIMEOUT)),
        )
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1, "the phone's session: {revoked:?}");
    // The browser still held alice's IdP session: max_age=0 made the IdP ask again.
    assert_eq!(t.laptop_person.sign_ins(), 2);
    assert_eq!(t.laptop_person.forms_shown(), 2, "the login form again");
    // The phone is out; the laptop is kept, its session still accepted.
    assert!(matches!(
        t.phone.manager.verify_session(&t.phone_key).await,
        Err(SessionError::ReauthenticationRequired { .. })
    ));
    assert!(!has_session(&t.phone, &t.phone_key).await);
    t.laptop
        .manager
        .verify_session(&t.laptop_key)
        .await
        .unwrap();
    assert!(has_session(&t.laptop, &t.laptop_key).await);
    let sessions = t.laptop.manager.list_sessions(&t.laptop_key).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].current);
}

#[tokio::test]
async fn a_step_up_sign_in_as_another_person_is_refused_and_revokes_nothing() {
    let t = alice_on_two_devices_eleven_minutes_ago().await;
    t.laptop_person.answer_as("bob");
    let prompt = t.laptop_person.prompt();
    let refused = t
        .laptop
        .manager
        .revoke_sessions(
            &t.laptop_key,
            RevokeTarget::Others,
            Some(LoginMethod::Browser(&prompt, TIMEOUT)),
        )
        .await;
    assert!(
        matches!(refused, Err(SessionError::StepUpAccountMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(t.laptop_person.forms_shown(), 2);
    // Nothing ended: both sessions are accepted, both devices keep their tokens.
    t.phone.manager.verify_session(&t.phone_key).await.unwrap();
    t.laptop
        .manager
        .verify_session(&t.laptop_key)
        .await
        .unwrap();
    assert!(has_session(&t.laptop, &t.laptop_key).await);
    assert_eq!(
        t.laptop
            .manager
            .list_sessions(&t.laptop_key)
            .await
            .unwrap()
            .len(),
        2
    );
    // And bob's sign-in did not count for alice: without a step-up, still a challenge.
    assert!(matches!(
        t.laptop
            .manager
            .revoke_sessions(&t.laptop_key, RevokeTarget::Others, None)
            .await,
        Err(SessionError::StepUpRequired { max_age: Some(600) })
    ));
}

#[tokio::test]
async fn logout_everywhere_ten_minutes_after_the_sign_in_asks_for_a_fresh_one_and_ends_every_session(
) {
    let t = alice_on_two_devices_eleven_minutes_ago().await;
    let prompt = t.laptop_person.prompt();
    let report = t
        .laptop
        .manager
        .logout_with_step_up(
            LogoutScope::Everywhere(t.laptop_key.clone()),
            Some(LoginMethod::Browser(&prompt, TIMEOUT)),
        )
        .await
        .unwrap();
    assert!(report.not_revoked.is_empty(), "{:?}", report.not_revoked);
    assert_eq!(report.removed, vec![t.laptop_key.clone()]);
    assert_eq!(t.laptop_person.forms_shown(), 2, "the login form again");
    assert!(matches!(
        t.phone.manager.verify_session(&t.phone_key).await,
        Err(SessionError::ReauthenticationRequired { .. })
    ));
    assert!(t.laptop.manager.accounts().await.unwrap().is_empty());
    drop(t.stack);
}

/// A registry that answers every revoke with the step-up challenge, even after a successful
/// re-authentication: the manager signs in once, re-authenticates once, retries once, and then
/// gives up (`StepUpNotAccepted`) — no loop of sign-ins.
#[tokio::test]
async fn a_registry_that_challenges_again_after_the_step_up_is_not_looped_on() {
    let stack = stack_on_one_clock().await;
    let clock = stack.clock.clone().unwrap();
    let registry = MockServer::start().await;
    let now = lanyard_clock::Clock::now(clock.as_ref()).unix_timestamp();
    let session = json!({
        "session": {
            "session_id": "ses_laptop", "tenant": "acme", "account_id": "acc", "subject": "alice",
            "email": null, "is_guest": false,
            "device": {"id": "laptop", "name": "n", "platform": "linux", "last_seen": now},
            "created_at": now, "last_authenticated_at": now, "expires_at": now + 3600,
            "absolute_expires_at": now + 86_400, "revoked_at": null, "revoked_reason": null,
            "auth_method": "oidc", "auth_time": now, "current": true
        },
        "session_token": "lyst_acme_stand_in",
        "session_jwt": "eyJ.stand.in"
    });
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(session.clone()))
        .mount(&registry)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions/revoke"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header(
                    "WWW-Authenticate",
                    r#"Bearer error="insufficient_user_authentication", max_age=600"#,
                )
                .set_body_json(json!({
                    "error": "insufficient_user_authentication",
                    "error_description": "sign in again",
                    "max_age": 600
                })),
        )
        .expect(2)
        .named("revoke: the first try and one retry")
        .mount(&registry)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions/reauthenticate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(session))
        .expect(1)
        .named("one re-authentication")
        .mount(&registry)
        .await;

    let laptop = device("laptop", clock.clone());
    let person = Person::new("alice");
    let mut req = request(&stack);
    req.registry_url = Some(registry.uri());
    let prompt = person.prompt();
    let key = laptop
        .manager
        .login(req, LoginMethod::Browser(&prompt, TIMEOUT))
        .await
        .unwrap()
        .key;
    let result = laptop
        .manager
        .revoke_sessions(
            &key,
            RevokeTarget::Others,
            Some(LoginMethod::Browser(&prompt, TIMEOUT)),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(SessionError::StepUpNotAccepted { max_age: Some(600) })
        ),
        "{result:?}"
    );
    assert_eq!(person.sign_ins(), 2, "the sign-in and one step-up, no more");
    // A challenge is no sign-out: the tokens stay.
    assert!(has_session(&laptop, &key).await);
    registry.verify().await;
}

/// Every stored item of `key`: what "every token kept" compares.
fn stored_items(d: &Device, key: &AccountKey) -> Vec<Option<String>> {
    use secrecy::ExposeSecret;
    ItemKind::ALL
        .iter()
        .map(|i| {
            d.manager
                .store()
                .secrets()
                .get(key, *i)
                .unwrap()
                .map(|s| s.expose_secret().to_owned())
        })
        .collect()
}

/// alice signed in on the laptop against a registry stand-in that challenges every revoke
/// (`401 insufficient_user_authentication`) and answers the re-authentication with
/// `reauthenticate`. Expects exactly `revokes` revoke requests.
async fn laptop_against_a_registry_answering_reauthentication_with(
    reauthenticate: ResponseTemplate,
    revokes: u64,
) -> (Stack, MockServer, Device, Person, AccountKey) {
    let stack = stack_on_one_clock().await;
    let clock = stack.clock.clone().unwrap();
    let registry = MockServer::start().await;
    let now = lanyard_clock::Clock::now(clock.as_ref()).unix_timestamp();
    let session = json!({
        "session": {
            "session_id": "ses_laptop", "tenant": "acme", "account_id": "acc", "subject": "alice",
            "email": null, "is_guest": false,
            "device": {"id": "laptop", "name": "n", "platform": "linux", "last_seen": now},
            "created_at": now, "last_authenticated_at": now, "expires_at": now + 3600,
            "absolute_expires_at": now + 86_400, "revoked_at": null, "revoked_reason": null,
            "auth_method": "oidc", "auth_time": now, "current": true
        },
        "session_token": "lyst_acme_stand_in",
        "session_jwt": "eyJ.stand.in"
    });
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(session))
        .mount(&registry)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions/revoke"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header(
                    "WWW-Authenticate",
                    r#"Bearer error="insufficient_user_authentication", max_age=600"#,
                )
                .set_body_json(json!({
                    "error": "insufficient_user_authentication",
                    "error_description": "sign in again",
                    "max_age": 600
                })),
        )
        .expect(revokes)
        .named("revoke")
        .mount(&registry)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions/reauthenticate"))
        .respond_with(reauthenticate)
        .expect(1)
        .named("one re-authentication")
        .mount(&registry)
        .await;
    let laptop = device("laptop", clock);
    let person = Person::new("alice");
    let mut req = request(&stack);
    req.registry_url = Some(registry.uri());
    let prompt = person.prompt();
    let key = laptop
        .manager
        .login(req, LoginMethod::Browser(&prompt, TIMEOUT))
        .await
        .unwrap()
        .key;
    (stack, registry, laptop, person, key)
}

/// The registry's refusal of a re-authentication ID token, with its `reason`.
fn id_token_refused(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": "invalid_id_token",
        "reason": "auth_time_too_old",
        "error_description": "the ID token is not accepted"
    }))
}

/// A refused step-up ID token says nothing of the session: as a 401 (the registry's older
/// answer) or a 400 (its answer now), the revoke fails with the registry's reason and the
/// laptop keeps every token.
#[tokio::test]
async fn a_refused_step_up_id_token_fails_the_revoke_with_its_reason_and_keeps_every_token() {
    for status in [401, 400] {
        let (_stack, registry, laptop, person, key) =
            laptop_against_a_registry_answering_reauthentication_with(id_token_refused(status), 1)
                .await;
        let before = stored_items(&laptop, &key);
        assert!(before.iter().all(Option::is_some), "{status}: signed in");
        let prompt = person.prompt();
        let result = laptop
            .manager
            .revoke_sessions(
                &key,
                RevokeTarget::Others,
                Some(LoginMethod::Browser(&prompt, TIMEOUT)),
            )
            .await;
        let err = result.expect_err("the revoke fails");
        assert!(
            !matches!(err, SessionError::ReauthenticationRequired { .. }),
            "{status}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("invalid_id_token") && text.contains("auth_time_too_old"),
            "{status}: the reason is reported: {text}"
        );
        assert_eq!(
            stored_items(&laptop, &key),
            before,
            "{status}: every token kept"
        );
        registry.verify().await;
    }
}

/// `logout --everywhere` whose step-up the registry refuses (the ID token) or cannot take (a
/// 503): the logout fails, revokes nothing more and wipes nothing — never "the session is
/// gone already, so sign out here only".
#[tokio::test]
async fn a_failed_step_up_fails_logout_everywhere_and_keeps_the_account() {
    for reauthenticate in [
        id_token_refused(401),
        id_token_refused(400),
        ResponseTemplate::new(503).set_body_json(json!({"error": "unavailable"})),
    ] {
        let (_stack, registry, laptop, person, key) =
            laptop_against_a_registry_answering_reauthentication_with(reauthenticate, 1).await;
        let before = stored_items(&laptop, &key);
        let prompt = person.prompt();
        let result = laptop
            .manager
            .logout_with_step_up(
                LogoutScope::Everywhere(key.clone()),
                Some(LoginMethod::Browser(&prompt, TIMEOUT)),
            )
            .await;
        let err = result.expect_err("the logout fails");
        assert!(
            !matches!(err, SessionError::ReauthenticationRequired { .. }),
            "{err:?}"
        );
        assert_eq!(stored_items(&laptop, &key), before, "every token kept");
        assert_eq!(laptop.manager.accounts().await.unwrap().len(), 1);
        // One revoke (the challenged one) and no `scope: all` after the failed step-up.
        registry.verify().await;
    }
}
