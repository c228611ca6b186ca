#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What a real server cannot easily be made to do, played by `wiremock`: a token endpoint or a
//! registry that hangs, answers a malformed body, or fails on the third call. Everything else is
//! tested against the real mock IdP and registry (`manager.rs`, `oidc.rs`).
//!
//! The fake IdP serves discovery and a JWKS whose key signs the ID tokens of its token answers,
//! so session-core's validation runs for real; accounts are seeded into the store as a previous
//! sign-in would have left them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use account_store::memory::MemoryStore;
use account_store::{AccountId, AccountKey, AccountMeta, AccountStore, ItemKind};
use base64::Engine;
use jose_keys::{SigningAlg, SigningKey};
use lanyard_clock::{Clock, ManualClock};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use session_core::{
    DeviceIdentity, LoginMethod, LoginRequest, ManagerOptions, SessionError, SessionManager,
    SessionState, UnavailableReason, UpgradeError, UpgradeRequest,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CLIENT_ID: &str = "lanyard-cli";
const SUBJECT: &str = "sub-alice";

/// An IdP played by wiremock: discovery and JWKS are mounted; the token endpoint is the test's.
struct FakeIdp {
    server: MockServer,
    key: Arc<SigningKey>,
}

impl FakeIdp {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A fake IdP whose discovery document `edit` may change (given the issuer).
    async fn start_with(edit: impl FnOnce(&mut Value)) -> Self {
        let server = MockServer::start().await;
        let key = Arc::new(SigningKey::generate(SigningAlg::ES256).unwrap());
        let issuer = server.uri();
        let mut discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
        });
        edit(&mut discovery);
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"keys": [key.public_jwk]})),
            )
            .mount(&server)
            .await;
        Self { server, key }
    }

    fn issuer(&self) -> String {
        self.server.uri()
    }

    /// A token answer as a well-behaved IdP gives it, with a freshly signed ID token.
    fn tokens(&self, n: usize) -> Value {
        token_answer(
            &self.key,
            &self.issuer(),
            n,
            lanyard_clock::SystemClock.now().unix_timestamp(),
        )
    }

    /// A fake IdP whose token endpoint answers with [`NoIdToken`].
    async fn answering_without_id_tokens() -> Self {
        let idp = Self::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(NoIdToken {
                calls: AtomicUsize::new(0),
            })
            .mount(&idp.server)
            .await;
        idp
    }

    async fn token_requests(&self) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == "/token")
            .collect()
    }
}

/// A token answer with an ID token issued at `now`.
fn token_answer(key: &SigningKey, issuer: &str, n: usize, now: i64) -> Value {
    json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": 600,
        "refresh_token": format!("rt-{n}"),
        "id_token": id_token(key, issuer, now),
    })
}

fn id_token(key: &SigningKey, issuer: &str, now: i64) -> String {
    sign(
        key,
        &json!({
            "iss": issuer,
            "sub": SUBJECT,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "email": "alice@edge.example",
        }),
    )
}

/// A JWT of `claims` signed ES256 by `key`.
fn sign(key: &SigningKey, claims: &Value) -> String {
    sign_with_header(
        key,
        json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}),
        claims,
    )
}

/// A JWS of `claims` with this header, signed ES256 by `key`.
fn sign_with_header(key: &SigningKey, header: Value, claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = b64(&header);
    let claims = b64(claims);
    let signing_input = format!("{header}.{claims}");
    let signature = key.es256().unwrap().sign(signing_input.as_bytes()).unwrap();
    format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The refresh token a token request presented.
fn presented_refresh_token(r: &Request) -> String {
    url::form_urlencoded::parse(&r.body)
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

struct Device {
    manager: SessionManager,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn device(max_tries: u32) -> Device {
    device_with_timeout(max_tries, session_core::oidc::DEFAULT_HTTP_TIMEOUT)
}

/// A device whose requests to the IdP and the registry time out after `http_timeout`.
fn device_with_timeout(max_tries: u32, http_timeout: Duration) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            id: "laptop".into(),
            name: "the laptop".into(),
            platform: "linux".into(),
        },
        clock.clone(),
        dir.path().join("locks"),
    );
    options.backoff = Duration::from_millis(20);
    options.heartbeat = Duration::from_millis(100);
    options.max_tries = max_tries;
    options.http_timeout = http_timeout;
    Device {
        manager: SessionManager::new(store, options),
        clock,
        _dir: dir,
    }
}

/// An account as an earlier sign-in left it: tokens `at-0`/`rt-0`, the access token expired,
/// optionally a registry session (`st-0`, `jwt-0`) at `registry`.
fn seed(d: &Device, idp: &FakeIdp, registry: Option<&str>) -> AccountKey {
    let id = AccountId::new(&idp.issuer(), SUBJECT).unwrap();
    let mut meta = AccountMeta::new(id, "alice@edge.example", d.clock.now());
    meta.email = Some("alice@edge.example".into());
    meta.client_id = Some(CLIENT_ID.into());
    meta.registry_url = registry.map(str::to_owned);
    meta.access_token_expires_at = Some(d.clock.now().unix_timestamp() - 1);
    let key = meta.key.clone();
    let secret = |s: &str| SecretString::from(s.to_owned());
    let mut items = vec![
        (ItemKind::AccessToken, secret("at-0")),
        (ItemKind::RefreshToken, secret("rt-0")),
        (
            ItemKind::IdToken,
            secret(&id_token(
                &idp.key,
                &idp.issuer(),
                d.clock.now().unix_timestamp(),
            )),
        ),
    ];
    if registry.is_some() {
        items.push((ItemKind::SessionToken, secret("st-0")));
        items.push((ItemKind::SessionJwt, secret("jwt-0")));
    }
    let store = d.manager.store();
    store.save_account(meta, &items).unwrap();
    store.set_active(&key, d.clock.now()).unwrap();
    key
}

/// Every stored item of `key` and its index entry: what "nothing changed" compares.
fn snapshot(d: &Device, key: &AccountKey) -> (Vec<Option<String>>, Option<AccountMeta>) {
    let items = ItemKind::ALL
        .iter()
        .map(|i| {
            d.manager
                .store()
                .secrets()
                .get(key, *i)
                .unwrap()
                .map(|s| s.expose_secret().to_owned())
        })
        .collect();
    (items, d.manager.store().index().get(key).unwrap())
}

#[tokio::test]
async fn a_token_endpoint_that_hangs_times_out_as_transient_and_keeps_the_session() {
    let idp = FakeIdp::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .mount(&idp.server)
        .await;
    // Two tries of a 300 ms timeout (the default is 10 s).
    let d = device_with_timeout(2, Duration::from_millis(300));
    let key = seed(&d, &idp, None);
    let before = snapshot(&d, &key);

    let err = tokio::time::timeout(Duration::from_secs(5), d.manager.access_token(None))
        .await
        .expect("the configured timeout applies, not the default 10 s")
        .unwrap_err();
    let SessionError::Transient { detail } = &err else {
        panic!("a hang is transient, got {err:?}");
    };
    assert!(
        detail.contains("timed out"),
        "the error says it timed out: {detail}"
    );
    assert_eq!(
        idp.token_requests().await.len(),
        2,
        "max_tries tries, no more"
    );
    assert_eq!(snapshot(&d, &key), before, "nothing stored changes");
    assert_ne!(
        *d.manager.state(&key).borrow(),
        SessionState::Unavailable {
            reason: UnavailableReason::SignedOut
        },
        "a hang never signs the account out"
    );
}

#[tokio::test]
async fn a_truncated_token_answer_is_a_transient_error_that_changes_nothing() {
    let idp = FakeIdp::start().await;
    let whole = idp.tokens(1).to_string();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(whole[..whole.len() / 2].to_owned(), "application/json"),
        )
        .mount(&idp.server)
        .await;
    let d = device(3);
    let key = seed(&d, &idp, None);
    let before = snapshot(&d, &key);

    let err = d.manager.access_token(None).await.unwrap_err();
    let SessionError::Transient { detail } = &err else {
        panic!("a body cut short is transient, got {err:?}");
    };
    assert!(detail.contains("unreadable"), "names the problem: {detail}");
    assert_eq!(idp.token_requests().await.len(), 3, "at most 3 tries");
    assert_eq!(snapshot(&d, &key), before, "nothing stored changes");
}

#[tokio::test]
async fn a_token_answer_without_a_valid_id_token_is_rejected_once_and_changes_nothing() {
    let idp = FakeIdp::start().await;
    let mut answer = idp.tokens(1);
    answer["id_token"] = json!("not-a-jwt");
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&idp.server)
        .await;
    let d = device(3);
    let key = seed(&d, &idp, None);
    let before = snapshot(&d, &key);

    let err = d.manager.access_token(None).await.unwrap_err();
    let SessionError::IdTokenInvalid(detail) = &err else {
        panic!("a malformed token answer is an invalid token, got {err:?}");
    };
    assert!(detail.contains("malformed"), "names the problem: {detail}");
    assert_eq!(
        idp.token_requests().await.len(),
        1,
        "a defective answer is not retried"
    );
    assert_eq!(snapshot(&d, &key), before, "nothing stored changes");
    assert!(
        d.manager.store().index().get(&key).unwrap().is_some(),
        "the account is not signed out by a defective answer"
    );
}

/// The provider rejects the client itself (`invalid_client`, `unauthorized_client`: deleted,
/// disabled, or its registration changed). That says nothing about the person's grant: the
/// error names the client configuration, the account is not signed out, nothing stored changes.
#[tokio::test]
async fn a_provider_that_rejects_the_client_is_a_configuration_error_that_signs_no_one_out() {
    for error in ["invalid_client", "unauthorized_client"] {
        let idp = FakeIdp::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!({"error": error, "error_description": "client authentication failed"}),
            ))
            .mount(&idp.server)
            .await;
        let d = device(3);
        let key = seed(&d, &idp, None);
        let before = snapshot(&d, &key);

        let err = d.manager.access_token(None).await.unwrap_err();
        let SessionError::Configuration(detail) = &err else {
            panic!("{error}: a rejected client is a configuration error, got {err:?}");
        };
        assert!(
            detail.contains(error),
            "names the provider's error: {detail}"
        );
        assert_eq!(idp.token_requests().await.len(), 1, "{error}: not retried");
        assert_eq!(
            snapshot(&d, &key),
            before,
            "{error}: nothing stored changes"
        );
        assert_ne!(
            *d.manager.state(&key).borrow(),
            SessionState::Unavailable {
                reason: UnavailableReason::SignedOut
            },
            "{error}: the account is not signed out"
        );
    }
}

/// Answers the first refresh with rotated tokens whose ID token is issued an hour in the future
/// (by the device's clock), then like a well-behaved IdP.
struct FutureIdTokenFirst {
    calls: AtomicUsize,
    key: Arc<SigningKey>,
    issuer: String,
    clock: Arc<ManualClock>,
}

impl Respond for FutureIdTokenFirst {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let now = self.clock.now().unix_timestamp();
        let issued = if call == 1 { now + 3600 } else { now };
        ResponseTemplate::new(200)
            .insert_header("cache-control", "no-store")
            .set_body_json(token_answer(&self.key, &self.issuer, call, issued))
    }
}

/// A refresh answer whose ID token is refused still rotated the refresh token at the provider:
/// the successor replaces the spent one in the store (nothing else of the answer is used), and
/// the next refresh presents it — never the spent one, which would trip reuse detection.
#[tokio::test]
async fn a_refused_refresh_answer_keeps_only_its_rotated_refresh_token() {
    let idp = FakeIdp::start().await;
    let d = device(3);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(FutureIdTokenFirst {
            calls: AtomicUsize::new(0),
            key: idp.key.clone(),
            issuer: idp.issuer(),
            clock: d.clock.clone(),
        })
        .mount(&idp.server)
        .await;
    let key = seed(&d, &idp, None);
    let (mut expected, meta_before) = snapshot(&d, &key);
    let refresh_slot = ItemKind::ALL
        .iter()
        .position(|i| *i == ItemKind::RefreshToken)
        .unwrap();

    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(
        matches!(err, SessionError::IdTokenInvalid(_)),
        "an ID token from the future is refused: {err:?}"
    );
    expected[refresh_slot] = Some("rt-1".into());
    let (items, meta) = snapshot(&d, &key);
    assert_eq!(items, expected, "only the refresh token changed, to rt-1");
    assert_eq!(
        meta.map(|m| m.access_token_expires_at),
        meta_before.map(|m| m.access_token_expires_at)
    );

    let token = d.manager.access_token(None).await.unwrap();
    assert_eq!(token.expose_secret(), "at-2");
    let presented: Vec<String> = idp
        .token_requests()
        .await
        .iter()
        .map(presented_refresh_token)
        .collect();
    assert_eq!(
        presented,
        ["rt-0", "rt-1"],
        "the spent rt-0 is presented once"
    );
}

/// Refresh answers with no ID token (`at-N`, `rt-N`), as OIDC Core §12.2 allows ("it might not
/// contain an id_token"): Okta, Keycloak and others leave it out depending on scope and settings.
struct NoIdToken {
    calls: AtomicUsize,
}

impl Respond for NoIdToken {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200)
            .insert_header("cache-control", "no-store")
            .set_body_json(json!({
                "access_token": format!("at-{n}"),
                "token_type": "Bearer",
                "expires_in": 600,
                "refresh_token": format!("rt-{n}"),
            }))
    }
}

/// A refresh answer without an ID token is a sound answer: its access and refresh tokens are
/// used and saved, the sign-in's ID token stays, and the next refresh presents the rotated
/// refresh token. (It was refused as "no ID token", the rotated refresh token thrown away, and
/// the next refresh presented the spent one: reuse detection at a real provider.)
#[tokio::test]
async fn a_refresh_answer_without_an_id_token_keeps_the_sign_ins_and_uses_the_rest() {
    let idp = FakeIdp::answering_without_id_tokens().await;
    let d = device(3);
    let key = seed(&d, &idp, None);
    let (before, _) = snapshot(&d, &key);
    let slot = |kind: ItemKind| ItemKind::ALL.iter().position(|i| *i == kind).unwrap();

    let token = d.manager.access_token(None).await.unwrap();
    assert_eq!(token.expose_secret(), "at-1");
    let (items, meta) = snapshot(&d, &key);
    assert_eq!(items[slot(ItemKind::AccessToken)].as_deref(), Some("at-1"));
    assert_eq!(items[slot(ItemKind::RefreshToken)].as_deref(), Some("rt-1"));
    assert_eq!(
        items[slot(ItemKind::IdToken)],
        before[slot(ItemKind::IdToken)],
        "the sign-in's ID token stays"
    );
    let meta = meta.unwrap();
    assert_eq!(
        meta.access_token_expires_at,
        Some(d.clock.now().unix_timestamp() + 600)
    );
    assert_eq!(meta.email.as_deref(), Some("alice@edge.example"));

    d.clock.advance(time::Duration::minutes(6));
    let token = d.manager.access_token(None).await.unwrap();
    assert_eq!(token.expose_secret(), "at-2");
    let presented: Vec<String> = idp
        .token_requests()
        .await
        .iter()
        .map(presented_refresh_token)
        .collect();
    assert_eq!(
        presented,
        ["rt-0", "rt-1"],
        "each refresh token presented once"
    );
}

/// With no ID token stored either, a refresh answer without one cannot be bound to the sign-in:
/// it is refused, naming why, and only the refresh token it rotated is kept.
#[tokio::test]
async fn a_refresh_answer_without_an_id_token_for_an_account_without_one_keeps_only_the_rotation() {
    let idp = FakeIdp::answering_without_id_tokens().await;
    let d = device(3);
    let key = seed(&d, &idp, None);
    d.manager
        .store()
        .secrets()
        .delete(&key, ItemKind::IdToken)
        .unwrap();
    let (mut expected, _) = snapshot(&d, &key);

    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(
        matches!(&err, SessionError::IdTokenInvalid(m) if m.contains("no ID token")),
        "{err:?}"
    );
    expected[ItemKind::ALL
        .iter()
        .position(|i| *i == ItemKind::RefreshToken)
        .unwrap()] = Some("rt-1".into());
    assert_eq!(
        snapshot(&d, &key).0,
        expected,
        "only the refresh token changed"
    );
}

/// A refresh answer without an ID token whose token is not a bearer token is refused as such,
/// and nothing of it is stored.
#[tokio::test]
async fn a_refresh_answer_without_an_id_token_must_still_be_a_bearer_token() {
    let idp = FakeIdp::start().await;
    let d = device(3);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-1",
            "token_type": "DPoP",
            "expires_in": 600,
            "refresh_token": "rt-1",
        })))
        .mount(&idp.server)
        .await;
    let key = seed(&d, &idp, None);
    let before = snapshot(&d, &key);

    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(
        matches!(&err, SessionError::UnexpectedTokenType { found } if found.eq_ignore_ascii_case("DPoP")),
        "{err:?}"
    );
    assert_eq!(
        snapshot(&d, &key),
        before,
        "nothing of the answer is stored"
    );
}

/// A guest upgrade is confirmed by the refreshed ID token only: when the provider's refresh
/// answer has none, the kept sign-in's ID token (a guest's) must not be read as "still a guest",
/// nor the account changed; the person is asked to sign in again to finish it.
#[tokio::test]
async fn a_guest_upgrade_whose_refresh_brings_no_id_token_asks_for_a_sign_in_and_changes_nothing() {
    let idp = FakeIdp::answering_without_id_tokens().await;
    let d = device(3);
    Mock::given(method("POST"))
        .and(path("/guest/upgrade"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&idp.server)
        .await;
    let key = seed(&d, &idp, None);
    let now = d.clock.now().unix_timestamp();
    let guest_id_token = sign(
        &idp.key,
        &json!({
            "iss": idp.issuer(),
            "sub": SUBJECT,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "is_guest": true,
        }),
    );
    let mut meta = d.manager.store().index().get(&key).unwrap().unwrap();
    meta.is_guest = true;
    d.manager
        .store()
        .save_account(
            meta,
            &[(
                ItemKind::IdToken,
                SecretString::from(guest_id_token.clone()),
            )],
        )
        .unwrap();

    let err = d
        .manager
        .upgrade_guest(
            &key,
            UpgradeRequest {
                username: "alice".into(),
                password: SecretString::from("correct horse battery".to_owned()),
                email: None,
                name: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            UpgradeError::Session(SessionError::ReauthenticationRequired { reason, .. })
                if reason.contains("no new ID token")
        ),
        "{err:?}"
    );
    let (items, meta) = snapshot(&d, &key);
    let slot = |kind: ItemKind| ItemKind::ALL.iter().position(|i| *i == kind).unwrap();
    assert!(meta.unwrap().is_guest, "still recorded as a guest");
    assert_eq!(
        items[slot(ItemKind::IdToken)].as_deref(),
        Some(guest_id_token.as_str())
    );
    assert_eq!(
        items[slot(ItemKind::RefreshToken)].as_deref(),
        Some("rt-2"),
        "the refreshes' rotations are kept"
    );
}

/// Answers refreshes 1 and 2, fails the third call with a 500, then answers again; or, with
/// `fail_from_third`, fails every call from the third on.
struct FailsOnTheThirdCall {
    calls: AtomicUsize,
    key: Arc<SigningKey>,
    issuer: String,
    fail_from_third: bool,
    /// The device's clock: the IdP and the device agree on the time.
    clock: Arc<ManualClock>,
}

impl Respond for FailsOnTheThirdCall {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == 3 || (self.fail_from_third && call > 3) {
            return ResponseTemplate::new(500).set_body_json(json!({"error": "server_error"}));
        }
        ResponseTemplate::new(200)
            .insert_header("cache-control", "no-store")
            .set_body_json(token_answer(
                &self.key,
                &self.issuer,
                call,
                self.clock.now().unix_timestamp(),
            ))
    }
}

#[tokio::test]
async fn a_500_on_the_third_call_is_retried_with_the_same_refresh_token_and_succeeds() {
    let idp = FakeIdp::start().await;
    let d = device(3);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(FailsOnTheThirdCall {
            calls: AtomicUsize::new(0),
            key: idp.key.clone(),
            issuer: idp.issuer(),
            fail_from_third: false,
            clock: d.clock.clone(),
        })
        .mount(&idp.server)
        .await;
    let key = seed(&d, &idp, None);

    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            d.manager
                .access_token(None)
                .await
                .unwrap()
                .expose_secret()
                .to_owned(),
        );
        // Past the 5-minute margin of the 10-minute token: the next call refreshes.
        d.clock.advance(time::Duration::minutes(6));
    }
    assert_eq!(tokens, ["at-1", "at-2", "at-4"]);
    let presented: Vec<String> = idp
        .token_requests()
        .await
        .iter()
        .map(presented_refresh_token)
        .collect();
    assert_eq!(
        presented,
        ["rt-0", "rt-1", "rt-2", "rt-2"],
        "the try after the 500 presents the same refresh token"
    );
    let (items, meta) = snapshot(&d, &key);
    assert_eq!(
        items[ItemKind::ALL
            .iter()
            .position(|i| *i == ItemKind::RefreshToken)
            .unwrap()]
        .as_deref(),
        Some("rt-4")
    );
    assert!(meta.is_some());
}

#[tokio::test]
async fn a_500_from_the_third_call_on_gives_up_after_three_tries_and_keeps_the_tokens() {
    let idp = FakeIdp::start().await;
    let d = device(3);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(FailsOnTheThirdCall {
            calls: AtomicUsize::new(0),
            key: idp.key.clone(),
            issuer: idp.issuer(),
            fail_from_third: true,
            clock: d.clock.clone(),
        })
        .mount(&idp.server)
        .await;
    let key = seed(&d, &idp, None);
    for want in ["at-1", "at-2"] {
        let token = d.manager.access_token(None).await.unwrap();
        assert_eq!(token.expose_secret(), want);
        d.clock.advance(time::Duration::minutes(6));
    }
    let before = snapshot(&d, &key);

    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("server_error"), "{err}");
    // Calls 3, 4 and 5: three tries of the third refresh, then it gives up.
    assert_eq!(idp.token_requests().await.len(), 5);
    assert_eq!(snapshot(&d, &key), before, "the tokens are kept");
}

/// The registry played by wiremock; the sign-in itself is real (the mock IdP in process).
/// A session as the registry describes it (`registry-api`'s `SessionView`).
fn session_view(session_id: &str, expires_at: i64) -> Value {
    json!({
        "session_id": session_id, "tenant": "acme", "account_id": "acc-1", "subject": "alice",
        "email": null, "is_guest": false,
        "device": {"id": "d", "name": "n", "platform": "linux", "last_seen": 0},
        "created_at": 0, "last_authenticated_at": 0, "expires_at": expires_at,
        "absolute_expires_at": expires_at + 31_536_000, "revoked_at": null, "revoked_reason": null,
        "auth_method": "oidc", "auth_time": 0, "current": true
    })
}

async fn registry_with_session_answer(answer: ResponseTemplate) -> MockServer {
    let registry = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions"))
        .respond_with(answer)
        .mount(&registry)
        .await;
    registry
}

fn browser(user: &'static str) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move { test_harness::idp::sign_in_at(&url, user).await });
    }
}

async fn login_against(
    d: &Device,
    idp: &test_harness::TestIdp,
    registry: &MockServer,
) -> Result<AccountMeta, SessionError> {
    d.manager
        .login(
            LoginRequest {
                issuer: idp.issuer("acme"),
                client_id: CLIENT_ID.into(),
                registry_url: Some(registry.uri()),
                tenant: Some("acme".into()),
            },
            LoginMethod::Browser(&browser("alice"), Duration::from_secs(20)),
        )
        .await
}

#[tokio::test]
async fn a_registry_answer_that_is_not_json_fails_the_login_and_stores_nothing() {
    let idp = test_harness::TestIdp::spawn().await;
    // A captive portal's page, with a success status.
    let registry = registry_with_session_answer(
        ResponseTemplate::new(201)
            .insert_header("content-type", "text/html")
            .set_body_string("<html><body>Sign in to the hotel Wi-Fi</body></html>"),
    )
    .await;
    let d = device(3);

    let err = login_against(&d, &idp, &registry).await.unwrap_err();
    let SessionError::Transient { detail } = &err else {
        panic!("a page instead of JSON is transient, got {err:?}");
    };
    assert!(detail.contains("not JSON"), "names the problem: {detail}");
    assert!(d.manager.accounts().await.unwrap().is_empty(), "no account");
    assert!(d.manager.active().await.unwrap().is_none());
}

#[tokio::test]
async fn a_registry_answer_without_a_session_token_fails_the_login_and_stores_nothing() {
    let idp = test_harness::TestIdp::spawn().await;
    let registry = registry_with_session_answer(ResponseTemplate::new(201).set_body_json(json!({
        "session": session_view("s-1", 4_000_000_000),
        "session_jwt": "jwt-1",
    })))
    .await;
    let d = device(3);

    let err = login_against(&d, &idp, &registry).await.unwrap_err();
    let SessionError::Registry(detail) = &err else {
        panic!("an answer without the token is a registry error, got {err:?}");
    };
    assert!(
        detail.contains("session_token"),
        "names the field: {detail}"
    );
    assert!(d.manager.accounts().await.unwrap().is_empty(), "no account");
}

/// `POST /v1/sessions/authenticate` answering like the registry, but answering call `fail_on`
/// with `failure`.
struct Authenticate {
    calls: AtomicUsize,
    fail_on: usize,
    failure: ResponseTemplate,
}

impl Respond for Authenticate {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.fail_on {
            return self.failure.clone();
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "session": session_view("s-1", 4_000_000_000),
            "session_jwt": format!("jwt-{call}"),
        }))
    }
}

async fn registry_for_heartbeats(authenticate: impl Respond + 'static) -> MockServer {
    let registry = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions/authenticate"))
        .respond_with(authenticate)
        .mount(&registry)
        .await;
    // An event stream that ends at once: the manager reconnects, quietly.
    Mock::given(method("GET"))
        .and(path("/v1/events"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(": nothing yet\n\n"),
        )
        .mount(&registry)
        .await;
    registry
}

async fn authenticate_calls(registry: &MockServer) -> usize {
    registry
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/sessions/authenticate")
        .count()
}

#[tokio::test]
async fn a_registry_500_on_the_third_heartbeat_keeps_the_session_and_the_heartbeat_goes_on() {
    heartbeat_goes_on_after_a_third_check_answered(
        ResponseTemplate::new(500).set_body_json(json!({"error": "server_error"})),
    )
    .await;
}

#[tokio::test]
async fn a_registry_answer_missing_a_field_on_the_third_heartbeat_keeps_the_session_and_the_heartbeat_goes_on(
) {
    // Neither transient nor a sign-out: a success without the session JWT.
    heartbeat_goes_on_after_a_third_check_answered(
        ResponseTemplate::new(200)
            .set_body_json(json!({"session": session_view("s-1", 4_000_000_000)})),
    )
    .await;
}

/// The heartbeat's third check gets `failure`: the session stays Available, nothing is signed
/// out and the heartbeat keeps checking.
async fn heartbeat_goes_on_after_a_third_check_answered(failure: ResponseTemplate) {
    let idp = FakeIdp::start().await;
    let registry = registry_for_heartbeats(Authenticate {
        calls: AtomicUsize::new(0),
        fail_on: 3,
        failure,
    })
    .await;
    let d = device(3);
    let key = seed(&d, &idp, Some(&registry.uri()));
    let mut states = d.manager.state(&key);
    let mut events = d.manager.events();

    // Call 1 is the check at start, calls 2.. are heartbeats (every ~100 ms here).
    d.manager.start().await.unwrap();
    assert!(matches!(
        *states.borrow_and_update(),
        SessionState::Available { .. }
    ));
    tokio::time::timeout(Duration::from_secs(20), async {
        while authenticate_calls(&registry).await < 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the heartbeat keeps going after the failed check");
    // The failed check changed nothing visible: still Available, and no sign-out was ever announced.
    assert!(
        matches!(*states.borrow(), SessionState::Available { .. }),
        "{:?}",
        *states.borrow()
    );
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(
                event,
                session_core::ManagerEvent::SignedOut { .. }
                    | session_core::ManagerEvent::RevokedRemotely { .. }
            ),
            "{event:?}"
        );
    }
    let (items, meta) = snapshot(&d, &key);
    let session_token = ItemKind::ALL
        .iter()
        .position(|i| *i == ItemKind::SessionToken)
        .unwrap();
    assert_eq!(items[session_token].as_deref(), Some("st-0"));
    let jwt = ItemKind::ALL
        .iter()
        .position(|i| *i == ItemKind::SessionJwt)
        .unwrap();
    assert_ne!(
        items[jwt].as_deref(),
        Some("jwt-3"),
        "call 3 failed; the JWT comes from a later one"
    );
    assert!(meta.is_some());
    d.manager
        .logout(session_core::LogoutScope::Device)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_registry_that_hangs_at_start_leaves_the_account_offline_with_its_tokens() {
    let idp = FakeIdp::start().await;
    let registry = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/sessions/authenticate"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .mount(&registry)
        .await;
    let d = device_with_timeout(3, Duration::from_millis(300));
    let key = seed(&d, &idp, Some(&registry.uri()));
    let before = snapshot(&d, &key);
    let started_at = d.clock.now().unix_timestamp();

    // The registry client gives up after the configured 300 ms (the default is 10 s).
    tokio::time::timeout(Duration::from_secs(5), d.manager.start())
        .await
        .expect("the configured timeout applies, not the default 10 s")
        .unwrap();
    assert_eq!(
        *d.manager.state(&key).borrow(),
        SessionState::Unavailable {
            reason: UnavailableReason::Offline { since: started_at }
        }
    );
    assert_eq!(snapshot(&d, &key), before, "nothing stored changes");
    assert_eq!(
        d.manager.running_tasks(&key),
        2,
        "heartbeat and event stream"
    );
    d.manager
        .logout(session_core::LogoutScope::Device)
        .await
        .unwrap();
}

/// The code exchange of a sign-in at the fake IdP: an ID token for `SUBJECT` carrying the nonce
/// the authorization URL sent, with `claims` merged in (`email`, `name`…), and a refresh token
/// only if `refresh_token`.
struct CodeExchange {
    key: Arc<SigningKey>,
    issuer: String,
    nonce: Arc<std::sync::Mutex<String>>,
    claims: Value,
    refresh_token: bool,
}

impl Respond for CodeExchange {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let now = lanyard_clock::SystemClock.now().unix_timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": SUBJECT,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "nonce": *self.nonce.lock().unwrap(),
        });
        for (k, v) in self.claims.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut answer = json!({
            "access_token": "at-login",
            "token_type": "Bearer",
            "expires_in": 600,
            "id_token": sign(&self.key, &claims),
        });
        if self.refresh_token {
            answer["refresh_token"] = json!("rt-login");
        }
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

/// A sign-in at the fake IdP: the token endpoint answers as `CodeExchange` does; the "browser"
/// records the authorization URL and delivers a code straight to the loopback listener.
struct FakeSignIn {
    nonce: Arc<std::sync::Mutex<String>>,
    authorization_url: Arc<std::sync::Mutex<Option<url::Url>>>,
}

impl FakeSignIn {
    async fn mount(idp: &FakeIdp, claims: Value, refresh_token: bool) -> Self {
        let nonce = Arc::new(std::sync::Mutex::new(String::new()));
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(CodeExchange {
                key: idp.key.clone(),
                issuer: idp.issuer(),
                nonce: nonce.clone(),
                claims,
                refresh_token,
            })
            .mount(&idp.server)
            .await;
        Self {
            nonce,
            authorization_url: Arc::default(),
        }
    }

    fn browser(&self) -> impl Fn(&url::Url) + Send + Sync {
        let nonce = self.nonce.clone();
        let seen = self.authorization_url.clone();
        move |url: &url::Url| {
            let q: std::collections::HashMap<String, String> =
                url.query_pairs().into_owned().collect();
            *nonce.lock().unwrap() = q["nonce"].clone();
            *seen.lock().unwrap() = Some(url.clone());
            let mut callback = url::Url::parse(&q["redirect_uri"]).unwrap();
            callback
                .query_pairs_mut()
                .append_pair("code", "code-1")
                .append_pair("state", &q["state"]);
            tokio::spawn(async move { reqwest::get(callback).await });
        }
    }

    /// The `prompt` parameter of the authorization URL, if any.
    fn prompt(&self) -> Option<String> {
        self.authorization_url
            .lock()
            .unwrap()
            .as_ref()
            .expect("the browser was opened")
            .query_pairs()
            .find(|(k, _)| k == "prompt")
            .map(|(_, v)| v.into_owned())
    }
}

async fn login_at_fake(
    d: &Device,
    idp: &FakeIdp,
    sign_in: &FakeSignIn,
) -> Result<AccountMeta, SessionError> {
    d.manager
        .login(
            LoginRequest {
                issuer: idp.issuer(),
                client_id: CLIENT_ID.into(),
                registry_url: None,
                tenant: None,
            },
            LoginMethod::Browser(&sign_in.browser(), Duration::from_secs(20)),
        )
        .await
}

#[tokio::test]
async fn offline_access_is_asked_with_prompt_consent_and_a_missing_refresh_token_is_recorded() {
    // A provider without `prompt_values_supported` (most): consent is asked for, as OIDC Core
    // §11 requires for `offline_access`. This one still issues no refresh token.
    let idp = FakeIdp::start().await;
    let sign_in = FakeSignIn::mount(
        &idp,
        json!({"email": "alice@edge.example", "name": "Alice"}),
        false,
    )
    .await;
    let d = device(3);

    let meta = login_at_fake(&d, &idp, &sign_in).await.unwrap();
    assert_eq!(sign_in.prompt().as_deref(), Some("consent"));
    assert!(meta.no_refresh_token, "the sign-in says it cannot refresh");
    let stored = d.manager.store().index().get(&meta.key).unwrap().unwrap();
    assert!(stored.no_refresh_token, "and the account index keeps it");

    // When the access token nears expiry there is nothing to refresh with: sign in again.
    d.clock.advance(time::Duration::minutes(9));
    let err = d.manager.access_token(None).await.unwrap_err();
    assert!(
        matches!(err, SessionError::ReauthenticationRequired { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_consent_prompt_goes_to_a_provider_that_lists_its_prompts_without_consent() {
    let idp =
        FakeIdp::start_with(|d| d["prompt_values_supported"] = json!(["none", "login"])).await;
    let sign_in = FakeSignIn::mount(
        &idp,
        json!({"email": "alice@edge.example", "name": "Alice"}),
        true,
    )
    .await;
    let d = device(3);

    let meta = login_at_fake(&d, &idp, &sign_in).await.unwrap();
    assert_eq!(sign_in.prompt(), None);
    assert!(!meta.no_refresh_token, "a refresh token came");
}

/// UserInfo at the fake IdP answering `claims` for the sign-in's access token.
async fn mount_userinfo(idp: &FakeIdp, claims: Value) {
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer at-login",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(claims))
        .mount(&idp.server)
        .await;
}

async fn idp_with_userinfo() -> FakeIdp {
    FakeIdp::start_with(|d| {
        let issuer = d["issuer"].as_str().unwrap().to_owned();
        d["userinfo_endpoint"] = json!(format!("{issuer}/userinfo"));
    })
    .await
}

#[tokio::test]
async fn email_and_name_the_id_token_lacks_come_from_userinfo() {
    let idp = idp_with_userinfo().await;
    mount_userinfo(
        &idp,
        json!({"sub": SUBJECT, "email": "alice@userinfo.example", "name": "Alice U."}),
    )
    .await;
    let sign_in = FakeSignIn::mount(&idp, json!({}), true).await;
    let d = device(3);

    let meta = login_at_fake(&d, &idp, &sign_in).await.unwrap();
    assert_eq!(meta.email.as_deref(), Some("alice@userinfo.example"));
    assert_eq!(meta.display_name, "alice@userinfo.example");
}

#[tokio::test]
async fn an_id_token_with_email_and_name_needs_no_userinfo() {
    let idp = idp_with_userinfo().await;
    mount_userinfo(
        &idp,
        json!({"sub": SUBJECT, "email": "other@userinfo.example"}),
    )
    .await;
    let sign_in = FakeSignIn::mount(
        &idp,
        json!({"email": "alice@edge.example", "name": "Alice"}),
        true,
    )
    .await;
    let d = device(3);

    let meta = login_at_fake(&d, &idp, &sign_in).await.unwrap();
    assert_eq!(meta.email.as_deref(), Some("alice@edge.example"));
    let userinfo_calls = idp
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/userinfo")
        .count();
    assert_eq!(userinfo_calls, 0);
}

#[tokio::test]
async fn a_userinfo_answer_for_another_subject_fails_the_sign_in_and_stores_nothing() {
    let idp = idp_with_userinfo().await;
    mount_userinfo(
        &idp,
        json!({"sub": "sub-mallory", "email": "mallory@userinfo.example"}),
    )
    .await;
    let sign_in = FakeSignIn::mount(&idp, json!({}), true).await;
    let d = device(3);

    let err = login_at_fake(&d, &idp, &sign_in).await.unwrap_err();
    assert!(
        matches!(err, SessionError::UserInfoSubjectMismatch { .. }),
        "{err:?}"
    );
    assert!(d.manager.accounts().await.unwrap().is_empty(), "no account");
}

#[tokio::test]
async fn a_failing_userinfo_costs_the_profile_not_the_sign_in() {
    let idp = idp_with_userinfo().await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&idp.server)
        .await;
    let sign_in = FakeSignIn::mount(&idp, json!({}), true).await;
    let d = device(3);

    let meta = login_at_fake(&d, &idp, &sign_in).await.unwrap();
    assert_eq!(meta.email, None);
    assert_eq!(meta.display_name, SUBJECT);
}

// ---- Trust boundaries (issue #12): what a real provider cannot be made to send. ----

/// The claims of a well-formed ID token for `SUBJECT` issued at `now`.
fn id_claims(idp: &FakeIdp, now: i64) -> Value {
    json!({
        "iss": idp.issuer(),
        "sub": SUBJECT,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 600,
        "auth_time": now - 100,
        "email": "alice@edge.example",
    })
}

/// Mounts a token endpoint answering every request with `answer`.
async fn answer_tokens_with(idp: &FakeIdp, answer: Value) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&idp.server)
        .await;
}

#[tokio::test]
async fn a_token_answer_that_is_not_a_bearer_token_is_refused_and_changes_nothing() {
    for token_type in ["DPoP", "mac", "N_A"] {
        let idp = FakeIdp::start().await;
        let d = device(3);
        let key = seed(&d, &idp, None);
        let before = snapshot(&d, &key);
        let mut answer = token_answer(&idp.key, &idp.issuer(), 1, d.clock.now().unix_timestamp());
        answer["token_type"] = json!(token_type);
        answer_tokens_with(&idp, answer).await;

        let err = d.manager.access_token(None).await.unwrap_err();
        assert!(
            matches!(&err, SessionError::UnexpectedTokenType { found } if found.eq_ignore_ascii_case(token_type)),
            "{token_type}: {err:?}"
        );
        assert_eq!(snapshot(&d, &key), before, "{token_type}: nothing stored");
    }
    // Bearer in any case is a bearer token (RFC 6749 §5.1: case-insensitive).
    let idp = FakeIdp::start().await;
    let d = device(3);
    seed(&d, &idp, None);
    let mut answer = token_answer(&idp.key, &idp.issuer(), 1, d.clock.now().unix_timestamp());
    answer["token_type"] = json!("BEARER");
    answer_tokens_with(&idp, answer).await;
    assert_eq!(
        d.manager.access_token(None).await.unwrap().expose_secret(),
        "at-1"
    );
}

#[tokio::test]
async fn a_jwt_typed_other_than_jwt_or_carrying_events_is_not_accepted_as_an_id_token() {
    let events = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let cases: Vec<(&str, Option<&str>, bool)> = vec![
        ("typ JOSE", Some("JOSE"), false),
        ("typ at+jwt", Some("at+jwt"), false),
        ("typ logout+jwt", Some("logout+jwt"), false),
        ("events claim", Some("JWT"), true),
    ];
    for (case, typ, with_events) in cases {
        let idp = FakeIdp::start().await;
        let d = device(3);
        let key = seed(&d, &idp, None);
        let before = snapshot(&d, &key);
        let mut claims = id_claims(&idp, d.clock.now().unix_timestamp());
        if with_events {
            claims["events"] = events.clone();
        }
        let mut header = json!({"alg": "ES256", "kid": idp.key.kid});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        let mut answer = token_answer(&idp.key, &idp.issuer(), 1, d.clock.now().unix_timestamp());
        answer["id_token"] = json!(sign_with_header(&idp.key, header, &claims));
        answer_tokens_with(&idp, answer).await;

        let err = d.manager.access_token(None).await.unwrap_err();
        assert!(
            matches!(err, SessionError::IdTokenInvalid(_)),
            "{case}: {err:?}"
        );
        assert_eq!(snapshot(&d, &key), before, "{case}: nothing stored");
    }
    // No typ at all is an ID token.
    let idp = FakeIdp::start().await;
    let d = device(3);
    seed(&d, &idp, None);
    let claims = id_claims(&idp, d.clock.now().unix_timestamp());
    let mut answer = token_answer(&idp.key, &idp.issuer(), 1, d.clock.now().unix_timestamp());
    answer["id_token"] = json!(sign_with_header(
        &idp.key,
        json!({"alg": "ES256", "kid": idp.key.kid}),
        &claims
    ));
    answer_tokens_with(&idp, answer).await;
    d.manager.access_token(None).await.unwrap();
}

/// A refresh in flight while the account is logged out (logout does not wait for the refresh
/// lock): its answer is refused (an ID token from the future) but rotated the refresh token.
/// The rotated token must not bring the account back: it is revoked at the IdP, not stored.
#[tokio::test]
async fn a_rotated_refresh_token_of_an_account_logged_out_meanwhile_is_revoked_not_stored() {
    let idp = FakeIdp::start().await;
    let d = device(3);
    let now = d.clock.now().unix_timestamp();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(token_answer(&idp.key, &idp.issuer(), 1, now + 3600))
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&idp.server)
        .await;
    let key = seed(&d, &idp, None);

    let manager = d.manager.clone();
    let refresh = tokio::spawn(async move { manager.access_token(None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.manager
        .logout(session_core::LogoutScope::Account(key.clone()))
        .await
        .unwrap();
    let err = refresh.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::IdTokenInvalid(_)), "{err:?}");

    let (items, meta) = snapshot(&d, &key);
    assert!(
        items.iter().all(Option::is_none) && meta.is_none(),
        "the logged-out account stays gone: {items:?} {meta:?}"
    );
    let revoked: Vec<String> = idp
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/revoke")
        .filter_map(|r| {
            url::form_urlencoded::parse(&r.body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert!(
        revoked.contains(&"rt-1".to_owned()),
        "the rotated token is revoked: {revoked:?}"
    );
}

/// A refresh answer whose ID token is not the sign-in's rotated the refresh token all the same:
/// nobody will present the successor, so it is revoked at the provider (RFC 7009) rather than
/// left live. A refreshed ID token that is both another sign-in's and out of its time range is
/// told apart as the mismatch it is, not as a clock problem whose token would be kept.
#[tokio::test]
async fn a_refresh_answer_not_the_sign_ins_has_its_rotated_refresh_token_revoked() {
    for (case, issued_in) in [("in time", 0), ("and from the future", 3600)] {
        let idp = FakeIdp::start().await;
        let d = device(3);
        let key = seed(&d, &idp, None);
        let now = d.clock.now().unix_timestamp();
        d.manager
            .store()
            .secrets()
            .set(
                &key,
                ItemKind::IdToken,
                &SecretString::from(sign(&idp.key, &id_claims(&idp, now))),
            )
            .unwrap();
        let mut claims = id_claims(&idp, now + issued_in);
        claims["sub"] = json!("sub-mallory");
        let mut answer = token_answer(&idp.key, &idp.issuer(), 1, now);
        answer["id_token"] = json!(sign(&idp.key, &claims));
        answer_tokens_with(&idp, answer).await;

        let err = d.manager.access_token(None).await.unwrap_err();
        let SessionError::ReauthenticationRequired { reason, .. } = &err else {
            panic!("another person's ID token {case}: {err:?}");
        };
        assert!(reason.contains("sub differs"), "{case}: {reason}");
        let revoked: Vec<String> = idp
            .server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/revoke")
            .map(|r| {
                url::form_urlencoded::parse(&r.body)
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(revoked, ["rt-1"], "{case}: the rotated token is revoked");
    }
}

#[tokio::test]
async fn a_refreshed_id_token_not_matching_the_sign_in_wipes_the_account_and_asks_for_a_new_sign_in(
) {
    // iss, sub and aud are covered against the real IdP (manager.rs); here what it cannot send.
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "auth_time earlier",
            Box::new(|c: &mut Value| c["auth_time"] = json!(c["auth_time"].as_i64().unwrap() - 1)),
        ),
        (
            "another audience list",
            Box::new(|c: &mut Value| {
                c["aud"] = json!([CLIENT_ID, "another-client"]);
                c["azp"] = json!(CLIENT_ID);
            }),
        ),
        (
            "azp added",
            Box::new(|c: &mut Value| c["azp"] = json!(CLIENT_ID)),
        ),
    ];
    for (case, edit) in cases {
        let idp = FakeIdp::start().await;
        let d = device(3);
        let key = seed(&d, &idp, None);
        let now = d.clock.now().unix_timestamp();
        // The sign-in's ID token, as stored: auth_time now - 100, aud lanyard-cli, no azp.
        d.manager
            .store()
            .secrets()
            .set(
                &key,
                ItemKind::IdToken,
                &SecretString::from(sign(&idp.key, &id_claims(&idp, now))),
            )
            .unwrap();
        let mut claims = id_claims(&idp, now);
        edit(&mut claims);
        let mut answer = token_answer(&idp.key, &idp.issuer(), 1, now);
        answer["id_token"] = json!(sign(&idp.key, &claims));
        answer_tokens_with(&idp, answer).await;

        let err = d.manager.access_token(None).await.unwrap_err();
        let SessionError::ReauthenticationRequired { reason, .. } = &err else {
            panic!("{case}: {err:?}");
        };
        assert!(reason.contains("does not match"), "{case}: {reason}");
        let (items, meta) = snapshot(&d, &key);
        assert!(
            items.iter().all(Option::is_none),
            "{case}: every token wiped (nothing of the answer used)"
        );
        assert!(
            meta.is_some(),
            "{case}: the account stays, to sign in again"
        );
        assert_eq!(
            *d.manager.state(&key).borrow(),
            SessionState::Unavailable {
                reason: UnavailableReason::SignedOut
            },
            "{case}"
        );
        // The next use asks for a sign-in; the spent refresh token is never presented again.
        assert!(matches!(
            d.manager.access_token(None).await,
            Err(SessionError::ReauthenticationRequired { .. })
        ));
        assert_eq!(idp.token_requests().await.len(), 1, "{case}");
    }
    // The same auth_time, audience and azp: accepted.
    let idp = FakeIdp::start().await;
    let d = device(3);
    let key = seed(&d, &idp, None);
    let now = d.clock.now().unix_timestamp();
    let signed_in = sign(&idp.key, &id_claims(&idp, now));
    d.manager
        .store()
        .secrets()
        .set(&key, ItemKind::IdToken, &SecretString::from(signed_in))
        .unwrap();
    let mut later = id_claims(&idp, now + 30);
    later["auth_time"] = json!(now - 100);
    let mut answer = token_answer(&idp.key, &idp.issuer(), 1, now);
    answer["id_token"] = json!(sign(&idp.key, &later));
    answer_tokens_with(&idp, answer).await;
    d.manager.access_token(None).await.unwrap();
}

/// A callback delivered straight to the loopback listener with `iss` (if any) added.
fn browser_with_iss(sign_in: &FakeSignIn, iss: Option<String>) -> impl Fn(&url::Url) + Send + Sync {
    let nonce = sign_in.nonce.clone();
    move |url: &url::Url| {
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        *nonce.lock().unwrap() = q["nonce"].clone();
        let mut callback = url::Url::parse(&q["redirect_uri"]).unwrap();
        callback
            .query_pairs_mut()
            .append_pair("code", "code-1")
            .append_pair("state", &q["state"]);
        if let Some(iss) = &iss {
            callback.query_pairs_mut().append_pair("iss", iss);
        }
        tokio::spawn(async move { reqwest::get(callback).await });
    }
}

async fn login_with_callback_iss(
    advertises_iss: bool,
    iss: Option<&str>,
) -> (Result<AccountMeta, SessionError>, usize, Device) {
    let idp = FakeIdp::start_with(|d| {
        if advertises_iss {
            d["authorization_response_iss_parameter_supported"] = json!(true);
        }
    })
    .await;
    let sign_in = FakeSignIn::mount(&idp, json!({"email": "a@e", "name": "A"}), true).await;
    let d = device(3);
    let iss = iss.map(|i| i.replace("{issuer}", &idp.issuer()));
    let result = d
        .manager
        .login(
            LoginRequest {
                issuer: idp.issuer(),
                client_id: CLIENT_ID.into(),
                registry_url: None,
                tenant: None,
            },
            LoginMethod::Browser(&browser_with_iss(&sign_in, iss), Duration::from_secs(20)),
        )
        .await;
    let token_requests = idp.token_requests().await.len();
    (result, token_requests, d)
}

#[tokio::test]
async fn a_wrong_iss_in_the_callback_is_always_refused_and_a_missing_one_when_advertised() {
    for advertises in [false, true] {
        let (result, token_requests, d) =
            login_with_callback_iss(advertises, Some("https://attacker.example")).await;
        assert!(
            matches!(&result, Err(SessionError::IssuerMismatch { found: Some(f), .. }) if f == "https://attacker.example"),
            "advertised {advertises}: {result:?}"
        );
        assert_eq!(token_requests, 0, "the code is never redeemed");
        assert!(d.manager.accounts().await.unwrap().is_empty());
    }
    let (result, token_requests, _) = login_with_callback_iss(true, None).await;
    assert!(
        matches!(
            &result,
            Err(SessionError::IssuerMismatch { found: None, .. })
        ),
        "{result:?}"
    );
    assert_eq!(token_requests, 0);
    // The right iss passes; without the promise, no iss passes too (RFC 9207 §2.4).
    assert!(login_with_callback_iss(true, Some("{issuer}"))
        .await
        .0
        .is_ok());
    assert!(login_with_callback_iss(false, None).await.0.is_ok());
}

/// A store whose saves of the refresh token fail while `failing` is above zero (each failed
/// save counts it down): a keyring that is locked, a full disk.
struct FlakyStore {
    /// Shared by the stores of every "process" of one test.
    inner: Arc<MemoryStore>,
    failing: Arc<AtomicUsize>,
}

impl account_store::SecretStore for FlakyStore {
    fn get(
        &self,
        account: &AccountKey,
        item: ItemKind,
    ) -> Result<Option<SecretString>, account_store::StoreError> {
        self.inner.get(account, item)
    }
    fn set(
        &self,
        account: &AccountKey,
        item: ItemKind,
        value: &SecretString,
    ) -> Result<(), account_store::StoreError> {
        if item == ItemKind::RefreshToken
            && self
                .failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(account_store::StoreError::BackendUnavailable {
                backend: "flaky",
                detail: "the disk is full".into(),
            });
        }
        self.inner.set(account, item, value)
    }
    fn delete(
        &self,
        account: &AccountKey,
        item: ItemKind,
    ) -> Result<(), account_store::StoreError> {
        self.inner.delete(account, item)
    }
    fn info(&self) -> account_store::BackendInfo {
        self.inner.info()
    }
}

#[tokio::test]
async fn a_refresh_whose_save_fails_keeps_the_new_tokens_and_never_presents_the_spent_one() {
    let idp = FakeIdp::start().await;
    let failing = Arc::new(AtomicUsize::new(0));
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let store = AccountStore::with_backend(
        dir.path(),
        "default",
        Box::new(FlakyStore {
            inner: Arc::new(MemoryStore::new()),
            failing: failing.clone(),
        }),
    )
    .unwrap();
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            id: "laptop".into(),
            name: "the laptop".into(),
            platform: "linux".into(),
        },
        clock.clone(),
        dir.path().join("locks"),
    );
    options.backoff = Duration::from_millis(10);
    let d = Device {
        manager: SessionManager::new(store, options),
        clock: clock.clone(),
        _dir: dir,
    };
    let key = seed(&d, &idp, None);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(FailsOnTheThirdCall {
            calls: AtomicUsize::new(0),
            key: idp.key.clone(),
            issuer: idp.issuer(),
            fail_from_third: false,
            clock: clock.clone(),
        })
        .mount(&idp.server)
        .await;

    // Every save of this refresh fails (three tries): the new tokens are served from memory.
    failing.store(3, Ordering::SeqCst);
    let token = d.manager.access_token(None).await.unwrap();
    assert_eq!(token.expose_secret(), "at-1");
    // The store heals: the next use saves the kept tokens, and no second refresh happens.
    let token = d.manager.access_token(None).await.unwrap();
    assert_eq!(token.expose_secret(), "at-1");
    let refresh_item = ItemKind::ALL
        .iter()
        .position(|i| *i == ItemKind::RefreshToken)
        .unwrap();
    assert_eq!(snapshot(&d, &key).0[refresh_item].as_deref(), Some("rt-1"));

    // A save that fails once is retried at once.
    failing.store(1, Ordering::SeqCst);
    d.clock.advance(time::Duration::minutes(6));
    assert_eq!(
        d.manager.access_token(None).await.unwrap().expose_secret(),
        "at-2"
    );
    assert_eq!(snapshot(&d, &key).0[refresh_item].as_deref(), Some("rt-2"));

    // While the new tokens are unsaved and expiring, the refresh uses the new refresh token.
    failing.store(3, Ordering::SeqCst);
    d.clock.advance(time::Duration::minutes(6));
    // Call 3 of the IdP is a 500, call 4 answers at-4/rt-4.
    assert_eq!(
        d.manager.access_token(None).await.unwrap().expose_secret(),
        "at-4"
    );
    failing.store(3, Ordering::SeqCst);
    d.clock.advance(time::Duration::minutes(6));
    assert_eq!(
        d.manager.access_token(None).await.unwrap().expose_secret(),
        "at-5"
    );
    let presented: Vec<String> = idp
        .token_requests()
        .await
        .iter()
        .map(presented_refresh_token)
        .collect();
    assert_eq!(
        presented,
        ["rt-0", "rt-1", "rt-2", "rt-2", "rt-4"],
        "each refresh token presented once (the retry after the 500 aside), never a spent one"
    );
}

/// One `lanyard` process of a profile whose secrets live in `secrets` (shared by every process,
/// as a keyring is) and whose index and locks are under `dir`.
fn process_of(
    dir: &std::path::Path,
    secrets: &Arc<MemoryStore>,
    failing: &Arc<AtomicUsize>,
    clock: &Arc<ManualClock>,
) -> SessionManager {
    let store = AccountStore::with_backend(
        dir,
        "default",
        Box::new(FlakyStore {
            inner: secrets.clone(),
            failing: failing.clone(),
        }),
    )
    .unwrap();
    let mut options = ManagerOptions::new(
        DeviceIdentity {
            id: "laptop".into(),
            name: "the laptop".into(),
            platform: "linux".into(),
        },
        clock.clone(),
        dir.join("locks"),
    );
    options.backoff = Duration::from_millis(10);
    SessionManager::new(store, options)
}

/// The process whose refresh could not save its new tokens ends (and the tokens with it): the
/// next process must not present the stored refresh token, which that refresh spent (the IdP
/// would take it for a stolen one and end the whole family). It asks for a new sign-in instead.
#[tokio::test]
async fn after_a_refresh_whose_save_failed_the_next_process_asks_for_a_sign_in_instead_of_presenting_the_spent_token(
) {
    let idp = FakeIdp::start().await;
    let failing = Arc::new(AtomicUsize::new(0));
    let secrets = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let first = process_of(dir.path(), &secrets, &failing, &clock);
    let d = Device {
        manager: first,
        clock: clock.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let key = seed(&d, &idp, None);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(FailsOnTheThirdCall {
            calls: AtomicUsize::new(0),
            key: idp.key.clone(),
            issuer: idp.issuer(),
            fail_from_third: false,
            clock: clock.clone(),
        })
        .mount(&idp.server)
        .await;

    failing.store(3, Ordering::SeqCst);
    let token = d.manager.access_token(None).await.unwrap();
    assert_eq!(token.expose_secret(), "at-1");
    drop(d);

    // The store works again; the next process starts with what it holds: rt-0, spent.
    let next = process_of(dir.path(), &secrets, &failing, &clock);
    let err = next.access_token(None).await.expect_err("no token");
    assert!(
        matches!(err, SessionError::ReauthenticationRequired { .. }),
        "{err:?}"
    );
    let presented: Vec<String> = idp
        .token_requests()
        .await
        .iter()
        .map(presented_refresh_token)
        .collect();
    assert_eq!(
        presented,
        ["rt-0"],
        "the spent rt-0 is never presented again"
    );
    assert!(next.store().index().get(&key).unwrap().is_some());
}
