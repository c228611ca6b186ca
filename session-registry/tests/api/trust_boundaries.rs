//! Every credential accepted only for what it is, only once, only from whom it belongs (issue
//! #12): the ID-token intake, the session JWT that manages nothing, step-up before revoking other
//! sessions, the back-channel logout token's rules, the failed-authenticate limit's address.

use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

/// The registry's time: what it checks `iat` and `exp` against.
fn now_at(reg: &TestRegistry) -> i64 {
    use lanyard_clock::Clock;
    reg.clock.now().unix_timestamp()
}

async fn created_sessions(reg: &TestRegistry) -> usize {
    reg.admin_sessions("acme").await.len()
}

#[tokio::test]
async fn an_access_token_or_a_logout_token_does_not_open_a_session() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let access_token = tokens["access_token"].as_str().unwrap();
    let id_claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    let logout_token = sign_as_idp(
        &idp,
        "acme",
        &json!({
            "iss": idp.issuer("acme"), "aud": "lanyard-cli", "sub": id_claims["sub"],
            "iat": now_at(&reg), "exp": now_at(&reg) + 120, "jti": "j1",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
        Some("logout+jwt"),
    );
    let id_shaped_with_events = sign_as_idp(
        &idp,
        "acme",
        &json!({
            "iss": idp.issuer("acme"), "aud": "lanyard-cli", "sub": id_claims["sub"],
            "iat": now_at(&reg), "exp": now_at(&reg) + 600,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
        None,
    );
    let jose_typed = sign_as_idp(
        &idp,
        "acme",
        &json!({"iss": idp.issuer("acme"), "aud": "lanyard-cli", "sub": id_claims["sub"],
                "iat": now_at(&reg), "exp": now_at(&reg) + 600}),
        Some("JOSE"),
    );
    for (what, token, reason) in [
        (
            "access token (at+jwt)",
            access_token.to_owned(),
            "wrong_token_type",
        ),
        ("logout token", logout_token, "wrong_token_type"),
        ("JOSE-typed token", jose_typed, "wrong_token_type"),
        (
            "token carrying events",
            id_shaped_with_events,
            "not_an_id_token",
        ),
    ] {
        let (status, body) = reg.create(&token, "laptop").await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_id_token", "{what}: {body}");
        assert_eq!(body["reason"], reason, "{what}: {body}");
    }
    assert_eq!(created_sessions(&reg).await, 0, "nothing was created");
}

#[tokio::test]
async fn an_id_token_without_exp_or_iat_or_older_than_ten_minutes_is_refused() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let sub = "some-subject";
    let base = json!({"iss": idp.issuer("acme"), "aud": "lanyard-cli", "sub": sub});
    let with = |extra: Value| {
        let mut claims = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign_as_idp(&idp, "acme", &claims, Some("JWT"))
    };
    for (what, token, reason) in [
        (
            "no exp",
            with(json!({"iat": now_at(&reg)})),
            "missing_claim",
        ),
        (
            "no iat",
            with(json!({"exp": now_at(&reg) + 600})),
            "missing_claim",
        ),
        (
            "iat 11 minutes ago",
            with(json!({"iat": now_at(&reg) - 660, "exp": now_at(&reg) + 600})),
            "too_old",
        ),
    ] {
        let (status, body) = reg.create(&token, "laptop").await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["reason"], reason, "{what}: {body}");
    }
    // A fresh, typed, complete ID token is the control.
    let (status, body) = reg
        .create(
            &with(json!({"iat": now_at(&reg), "exp": now_at(&reg) + 600})),
            "laptop",
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn an_id_token_opens_one_session_only(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let (status, body) = reg.create(id_token, "laptop").await;
    assert_eq!(status, 201, "{body}");
    for device in ["laptop", "stolen-elsewhere"] {
        let (status, body) = reg.create(id_token, device).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_id_token");
        assert_eq!(body["reason"], "already_used", "{body}");
    }
    assert_eq!(created_sessions(&reg).await, 1);
}
on_both_backends!(an_id_token_opens_one_session_only);

/// A sign-in racing a sign-out: the IdP ended the IdP session (back-channel logout) before the
/// device presented the ID token it got in that session. The ID token opens no session and
/// re-authenticates none — a session opened now would outlive the sign-out the IdP already
/// announced. Sessions of the person's other IdP sessions are untouched, and a new sign-in works.
async fn an_id_token_of_an_idp_session_signed_out_since_opens_nothing(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let sub = created["session"]["subject"].clone();
    // Another browser, another IdP session; it is signed out before its ID token is used.
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let sid = jwt_claims(id_token)["sid"].clone();
    assert!(sid.is_string(), "the IdP names its session: {sid}");
    let logout = logout_token(&idp, &reg, &sub, json!({"sid": sid}), Some("logout+jwt"));
    let (status, body) = post_logout(&reg, &logout).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = reg.create(id_token, "desktop").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_id_token", "{body}");
    assert_eq!(body["reason"], "signed_out", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signed out"),
        "{body}"
    );
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &laptop,
            json!({"id_token": id_token}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "signed_out", "{body}");
    assert_eq!(created_sessions(&reg).await, 1, "only the laptop's");
    assert_eq!(
        reg.get("/v1/sessions", &laptop).await.0,
        200,
        "the laptop's IdP session was not signed out"
    );
    let again = idp.login("acme", "alice", "lanyard-cli").await;
    let (status, body) = reg
        .create(again["id_token"].as_str().unwrap(), "desktop")
        .await;
    assert_eq!(status, 201, "a new sign-in opens a session: {body}");
}
on_both_backends!(an_id_token_of_an_idp_session_signed_out_since_opens_nothing);

/// A logout token naming only the subject (Back-Channel Logout 1.0 §2.4: every IdP session of
/// the person ended): an ID token the IdP issued before it opens no session and re-authenticates
/// none, though it names no `sid`; one issued after it (a new sign-in) does. Another person's
/// ID token of the same time is untouched.
async fn an_id_token_issued_before_a_logout_of_its_subject_opens_nothing(backend: Backend) {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let advance = |secs: i64| {
        idp.clock
            .as_ref()
            .unwrap()
            .advance(time::Duration::seconds(secs));
        reg.advance(secs);
    };
    let (laptop, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (bob_laptop, _) = reg.device(&idp, "acme", "bob", "laptop").await;
    let sub = created["session"]["subject"].clone();
    let before = idp.login("acme", "alice", "lanyard-cli").await;
    let before = before["id_token"].as_str().unwrap();
    let bob_before = idp.login("acme", "bob", "lanyard-cli").await;
    advance(2);
    // The IdP issues the logout by its own clock, as it issues the ID tokens.
    let idp_now = {
        use lanyard_clock::Clock;
        idp.clock.as_ref().unwrap().now().unix_timestamp()
    };
    let logout = logout_token(
        &idp,
        &reg,
        &sub,
        json!({"iat": idp_now}),
        Some("logout+jwt"),
    );
    let (status, body) = post_logout(&reg, &logout).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 401, "ended");

    let (status, body) = reg.create(before, "desktop").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_id_token", "{body}");
    assert_eq!(body["reason"], "signed_out", "{body}");

    advance(2);
    let (after, _) = reg.device(&idp, "acme", "alice", "tablet").await;
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &after,
            json!({"id_token": before}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "signed_out", "{body}");
    let (status, body) = reg
        .create(bob_before["id_token"].as_str().unwrap(), "desktop")
        .await;
    assert_eq!(status, 201, "bob was not signed out: {body}");
    assert_eq!(reg.get("/v1/sessions", &bob_laptop).await.0, 200);
    assert_eq!(reg.get("/v1/sessions", &after).await.0, 200);
}
on_both_backends!(an_id_token_issued_before_a_logout_of_its_subject_opens_nothing);

#[tokio::test]
async fn an_id_token_used_at_one_registry_process_is_refused_by_another() {
    let idp = TestIdp::spawn().await;
    let a = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let b = a.spawn_sibling(&idp).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(a.create(id_token, "laptop").await.0, 201);
    let (status, body) = b.create(id_token, "desktop").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "already_used", "{body}");
}

async fn the_session_jwt_lists_revokes_and_streams_nothing(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (_other, _) = reg.device(&idp, "acme", "alice", "desktop").await;
    let jwt = created["session_jwt"].as_str().unwrap();

    let (status, body) = reg.get("/v1/sessions", jwt).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "session_token_required", "{body}");
    for scope in ["others", "all", "current"] {
        let (status, body) = reg
            .post("/v1/sessions/revoke", jwt, json!({"scope": scope}))
            .await;
        assert_eq!(status, 401, "{scope}: {body}");
        assert_eq!(body["error"], "session_token_required", "{body}");
    }
    let (status, body) = reg.get("/v1/events", jwt).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = reg
        .post("/v1/sessions/upgrade", jwt, json!({"id_token": "x"}))
        .await;
    assert_eq!(status, 401, "{body}");
    // Nothing was revoked, and the JWT still authenticates: it is not a bad credential.
    let (status, body) = reg.get("/v1/sessions", &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2, "{body}");
    let (status, _, _) = reg.authenticate(json!({"session_jwt": jwt})).await;
    assert_eq!(status, 200);
}
on_both_backends!(the_session_jwt_lists_revokes_and_streams_nothing);

/// Two devices of alice whose sign-in is `age` seconds old by both the IdP's and the registry's
/// clocks (which move together); returns (laptop token, desktop token).
async fn alice_on_two_devices(
    idp: &TestIdp,
    reg: &TestRegistry,
    age: i64,
) -> (String, String, Value) {
    let (laptop, created) = reg.device(idp, "acme", "alice", "laptop").await;
    let (desktop, _) = reg.device(idp, "acme", "alice", "desktop").await;
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(age));
    reg.advance(age);
    (laptop, desktop, created)
}

async fn revoking_other_sessions_needs_a_sign_in_of_the_last_ten_minutes(backend: Backend) {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, desktop, _) = alice_on_two_devices(&idp, &reg, 601).await;
    let desktop_id = reg.get("/v1/sessions", &desktop).await.1["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["session_id"]
        .clone();
    for body in [
        json!({"scope": "others"}),
        json!({"scope": "all"}),
        json!({"session_id": desktop_id}),
    ] {
        let (status, challenge, answer) = reg
            .post_with("/v1/sessions/revoke", &laptop, body.clone())
            .await;
        assert_eq!(status, 401, "{body}: {answer}");
        let challenge = challenge.expect("a WWW-Authenticate challenge");
        assert!(
            challenge.starts_with("Bearer ")
                && challenge.contains(r#"error="insufficient_user_authentication""#)
                && challenge.contains("max_age=600"),
            "{challenge}"
        );
        assert_eq!(answer["error"], "insufficient_user_authentication");
        assert_eq!(answer["max_age"], 600);
    }
    assert_eq!(
        reg.get("/v1/sessions", &desktop).await.0,
        200,
        "the desktop is untouched"
    );
    // Signing out oneself needs no step-up.
    let (status, body) = reg
        .post("/v1/sessions/revoke", &desktop, json!({"scope": "current"}))
        .await;
    assert_eq!(status, 200, "{body}");
}
on_both_backends!(revoking_other_sessions_needs_a_sign_in_of_the_last_ten_minutes);

#[tokio::test]
async fn a_fresh_sign_in_of_the_same_person_meets_the_step_up_challenge() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (laptop, desktop, created) = alice_on_two_devices(&idp, &reg, 601).await;
    let jwt = created["session_jwt"].as_str().unwrap();

    // Another person's fresh sign-in, a session JWT, a replayed ID token: all refused.
    let bob = idp.login("acme", "bob", "lanyard-cli").await;
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &laptop,
            json!({"id_token": bob["id_token"]}),
        )
        .await;
    assert_eq!(
        status, 400,
        "the ID token is at fault, not the session: {body}"
    );
    assert_eq!(body["reason"], "subject_mismatch", "{body}");
    let fresh = idp.login("acme", "alice", "lanyard-cli").await;
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            jwt,
            json!({"id_token": fresh["id_token"]}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "session_token_required", "{body}");

    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &laptop,
            json!({"id_token": fresh["id_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let auth_time = jwt_claims(fresh["id_token"].as_str().unwrap())["auth_time"].clone();
    assert_eq!(body["session"]["auth_time"], auth_time, "{body}");
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &laptop,
            json!({"id_token": fresh["id_token"]}),
        )
        .await;
    assert_eq!(status, 400, "an ID token is single use here too: {body}");
    assert_eq!(body["reason"], "already_used", "{body}");

    let (status, body) = reg
        .post("/v1/sessions/revoke", &laptop, json!({"scope": "others"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reg.get("/v1/sessions", &desktop).await.0, 401);
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 200);
}

#[tokio::test]
async fn a_reauthentication_from_another_tenant_is_refused() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let globex = idp.login("globex", "alice", "lanyard-cli").await;
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &laptop,
            json!({"id_token": globex["id_token"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_id_token", "{body}");
}

/// A logout token of acme's IdP for `sub` with `claims` merged in, typed `typ`.
fn logout_token(
    idp: &TestIdp,
    reg: &TestRegistry,
    sub: &Value,
    extra: Value,
    typ: Option<&str>,
) -> String {
    let now = now_at(reg);
    let mut claims = json!({
        "iss": idp.issuer("acme"), "aud": "lanyard-registry", "sub": sub,
        "iat": now, "exp": now + 120, "jti": mock_idp::random::id(),
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    sign_as_idp(idp, "acme", &claims, typ)
}

async fn post_logout(reg: &TestRegistry, token: &str) -> (u16, Value) {
    let res = reg
        .http
        .post(reg.url("/v1/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_logout_token_must_be_typed_fresh_and_expiring() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (alice, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let sub = created["session"]["subject"].clone();
    for (what, token) in [
        (
            "typed JWT",
            logout_token(&idp, &reg, &sub, json!({}), Some("JWT")),
        ),
        (
            "typed at+jwt",
            logout_token(&idp, &reg, &sub, json!({}), Some("at+jwt")),
        ),
        (
            "without exp",
            logout_token(&idp, &reg, &sub, json!({"exp": null}), Some("logout+jwt")),
        ),
        (
            "issued three minutes ago",
            logout_token(
                &idp,
                &reg,
                &sub,
                json!({"iat": now_at(&reg) - 180}),
                Some("logout+jwt"),
            ),
        ),
        (
            // Beyond the clock leeway: it would date the subject's sign-out ahead of sign-ins
            // still to come.
            "issued ten minutes ahead",
            logout_token(
                &idp,
                &reg,
                &sub,
                json!({"iat": now_at(&reg) + 600, "exp": now_at(&reg) + 720}),
                Some("logout+jwt"),
            ),
        ),
    ] {
        let (status, body) = post_logout(&reg, &token).await;
        assert_eq!(status, 400, "{what}: {body}");
    }
    assert_eq!(
        reg.get("/v1/sessions", &alice).await.0,
        200,
        "alice is untouched"
    );
    // The control: typed logout+jwt (or untyped), fresh, with exp.
    let (status, body) = post_logout(&reg, &logout_token(&idp, &reg, &sub, json!({}), None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reg.get("/v1/sessions", &alice).await.0, 401);
}

#[tokio::test]
async fn a_logout_token_replayed_to_another_registry_process_is_refused() {
    let idp = TestIdp::spawn().await;
    let a = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let b = a.spawn_sibling(&idp).await;
    let (_, created) = a.device(&idp, "acme", "alice", "laptop").await;
    let sub = created["session"]["subject"].clone();
    // Issued a second before alice signs in again: an ID token of the very second of a logout
    // naming only the subject is refused (`an_id_token_issued_before_a_logout_of_its_subject…`).
    let token = logout_token(
        &idp,
        &a,
        &sub,
        json!({"iat": now_at(&a) - 1}),
        Some("logout+jwt"),
    );
    assert_eq!(post_logout(&a, &token).await.0, 200);
    // alice signs in again; the replayed token must not end her new session.
    let (again, _) = b.device(&idp, "acme", "alice", "desktop").await;
    let (status, body) = post_logout(&b, &token).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already"),
        "{body}"
    );
    assert_eq!(b.get("/v1/sessions", &again).await.0, 200);
}

/// An IdP whose clock is behind the registry's by up to `--clock-leeway` issues tokens whose
/// `iat` looks that much older: their age limits (the logout token's 120 s, the tenant's ID-token
/// age) count the leeway too, as `exp` does — and only the leeway.
#[tokio::test]
async fn token_age_limits_allow_for_the_configured_clock_leeway_and_no_more() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn_with(&idp, Backend::Postgres, |s| s.clock_leeway = 300).await;
    let (alice, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (bob, _) = reg.device(&idp, "acme", "bob", "laptop").await;
    let sub = created["session"]["subject"].clone();
    let now = now_at(&reg);

    // Logout tokens. Beyond the leeway: 420 s old (120 s + 300 s) is refused, naming its age.
    let stale = logout_token(
        &idp,
        &reg,
        &sub,
        json!({"iat": now - 420, "exp": now + 60}),
        Some("logout+jwt"),
    );
    let (status, body) = post_logout(&reg, &stale).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("too long ago"),
        "the refusal names the token's age: {body}"
    );
    assert_eq!(
        reg.get("/v1/sessions", &alice).await.0,
        200,
        "alice untouched"
    );
    // Within it: issued just now on an IdP clock 5 minutes behind (iat 300 s ago, exp 180 s
    // ago), accepted; alice is signed out and bob is not.
    let skewed = logout_token(
        &idp,
        &reg,
        &sub,
        json!({"iat": now - 300, "exp": now - 180}),
        Some("logout+jwt"),
    );
    let (status, body) = post_logout(&reg, &skewed).await;
    assert_eq!(status, 200, "IdP clock 300 s behind, leeway 300 s: {body}");
    assert_eq!(reg.get("/v1/sessions", &alice).await.0, 401);
    assert_eq!(reg.get("/v1/sessions", &bob).await.0, 200, "bob untouched");

    // ID tokens (the tenant's limit is 600 s): 800 s old is within 600 s + 300 s, 900 s is not.
    let id_token = |iat: i64| {
        sign_as_idp(
            &idp,
            "acme",
            &json!({"iss": idp.issuer("acme"), "aud": "lanyard-cli", "sub": "carol",
                    "iat": iat, "exp": now + 60}),
            Some("JWT"),
        )
    };
    let sessions_before = created_sessions(&reg).await;
    let (status, body) = reg.create(&id_token(now - 900), "laptop").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "too_old", "{body}");
    assert_eq!(
        created_sessions(&reg).await,
        sessions_before,
        "nothing created"
    );
    let (status, body) = reg.create(&id_token(now - 800), "laptop").await;
    assert_eq!(status, 201, "IdP clock behind within the leeway: {body}");
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy_and_only_failed_lookups_count() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn_with(&idp, Backend::Sqlite, |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (good, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let unknown = session_registry::token::SessionToken::generate("acme");
    let from = |addr: &'static str, body: Value| {
        let req = reg
            .http
            .post(reg.url("/v1/sessions/authenticate"))
            .header("X-Forwarded-For", addr)
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let mut limited = false;
    for _ in 0..40 {
        match from("203.0.113.7", json!({"session_token": unknown.expose()})).await {
            429 => {
                limited = true;
                break;
            }
            status => assert_eq!(status, 401),
        }
    }
    assert!(limited, "the attacker's address is limited");
    assert_eq!(
        from("198.51.100.20", json!({"session_token": good})).await,
        200,
        "another client behind the same proxy is not locked out"
    );
    // A revoked session's heartbeats are not guesses: they never count.
    let (revoked, _) = reg.device(&idp, "acme", "bob", "old-phone").await;
    assert_eq!(
        reg.post("/v1/sessions/revoke", &revoked, json!({"scope": "current"}))
            .await
            .0,
        200
    );
    for _ in 0..40 {
        assert_eq!(
            from("198.51.100.30", json!({"session_token": revoked})).await,
            401
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let unknown = session_registry::token::SessionToken::generate("acme");
    let mut limited = false;
    // Each guess claims another address; without trusted proxies the peer address counts.
    for i in 0..40 {
        let status = reg
            .http
            .post(reg.url("/v1/sessions/authenticate"))
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .json(&json!({"session_token": unknown.expose()}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 429 {
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "a forged X-Forwarded-For does not escape the limit"
    );
}

/// Runs one statement on the registry's database as the test's (superuser) role.
async fn as_superuser(reg: &TestRegistry, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn a_logout_that_failed_in_the_database_is_processed_when_the_idp_redelivers_it() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (alice, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let sub = created["session"]["subject"].clone();
    let token = logout_token(&idp, &reg, &sub, json!({}), Some("logout+jwt"));
    // The ending of the sessions fails (the application role may not update them for now).
    as_superuser(&reg, "REVOKE UPDATE ON sessions FROM lanyard_app").await;
    let (status, body) = post_logout(&reg, &token).await;
    assert!(
        status >= 500,
        "a failure on our side is no refusal: {status} {body}"
    );
    as_superuser(&reg, "GRANT UPDATE ON sessions TO lanyard_app").await;
    assert_eq!(
        reg.get("/v1/sessions", &alice).await.0,
        200,
        "nothing ended yet"
    );
    // The IdP delivers the same token again: its jti was not spent by the failed attempt.
    let (status, body) = post_logout(&reg, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reg.get("/v1/sessions", &alice).await.0, 401);
}

/// `token` with its ES256 signature's `s` replaced by `n − s` (P-256's group order): the same
/// signed content under another, equally valid signature (ECDSA signatures are malleable).
fn high_s_twin(token: &str) -> String {
    use base64::Engine;
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut sig = b64.decode(signature).unwrap();
    assert_eq!(sig.len(), 64, "an ES256 signature");
    let s = sig[32..].to_vec();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = N[i] as i16 - s[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        sig[32 + i] = d.rem_euclid(256) as u8;
    }
    format!("{signed}.{}", b64.encode(sig))
}

#[tokio::test]
async fn an_id_token_re_signed_with_the_other_ecdsa_s_is_still_the_same_spent_token() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let twin = high_s_twin(id_token);
    assert_ne!(twin, id_token);
    assert_eq!(reg.create(id_token, "laptop").await.0, 201);
    let (status, body) = reg.create(&twin, "attacker").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "already_used", "{body}");
    assert_eq!(created_sessions(&reg).await, 1);
}

#[tokio::test]
async fn a_refused_reauthentication_blames_the_id_token_not_the_session() {
    // A 401 would tell the client its session token is bad, and it would sign the device out.
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let bob = idp.login("acme", "bob", "lanyard-cli").await;
    let (status, challenge, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &laptop,
            json!({"id_token": bob["id_token"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        challenge, None,
        "no invalid_token challenge: the bearer is fine"
    );
    assert_eq!(body["error"], "invalid_id_token");
    assert_eq!(body["reason"], "subject_mismatch");
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 200);
}

#[tokio::test]
async fn an_id_token_without_auth_time_never_counts_as_a_fresh_sign_in() {
    // OIDC lets an IdP leave auth_time out (e.g. of refreshed ID tokens): a stolen refresh token
    // must not buy a session that passes step-up.
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let now = now_at(&reg);
    let without = |sub: &str| {
        sign_as_idp(
            &idp,
            "acme",
            &json!({"iss": idp.issuer("acme"), "aud": "lanyard-cli", "sub": sub,
                    "iat": now, "exp": now + 600}),
            None,
        )
    };
    let (status, created) = reg.create(&without("some-subject"), "laptop").await;
    assert_eq!(status, 201, "{created}");
    let token = created["session_token"].as_str().unwrap().to_owned();
    assert_eq!(created["session"]["auth_time"], 0, "{created}");
    let (status, challenge, body) = reg
        .post_with("/v1/sessions/revoke", &token, json!({"scope": "others"}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge
        .unwrap()
        .contains("insufficient_user_authentication"));
    // And a re-authentication must say when the person signed in.
    let (status, _, body) = reg
        .post_with(
            "/v1/sessions/reauthenticate",
            &token,
            json!({"id_token": without("some-subject")}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "missing_claim", "{body}");
}

/// The race itself, on Postgres: a back-channel logout of the IdP session is in flight — its
/// transaction holds the session's lock and has not committed — when the ID token arrives. The
/// sign-in waits for it and then finds the session ended. Without the lock it would commit a
/// session that the logout's `UPDATE`, already run, never saw.
#[tokio::test]
async fn a_sign_in_waits_for_a_logout_of_its_idp_session_in_flight() {
    a_sign_in_waits_for_a_logout_in_flight("ended_idp_session", |claims| {
        session_registry::store::idp_session_key(
            claims["iss"].as_str().unwrap(),
            claims["sid"].as_str().unwrap(),
        )
    })
    .await;
}

/// The same race with a logout naming only the subject (every IdP session of the person).
#[tokio::test]
async fn a_sign_in_waits_for_a_logout_of_its_subject_in_flight() {
    a_sign_in_waits_for_a_logout_in_flight("ended_idp_subject", |claims| {
        session_registry::store::idp_subject_key(
            claims["iss"].as_str().unwrap(),
            claims["sub"].as_str().unwrap(),
        )
    })
    .await;
}

/// A logout's transaction, by hand, holding the lock of what it ends (`key_of` the ID token's
/// claims) while a sign-in with the ID token arrives; it then records `kind` and commits.
async fn a_sign_in_waits_for_a_logout_in_flight(kind: &str, key_of: fn(&Value) -> String) {
    use sqlx::{Connection, Executor};
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let key = key_of(&jwt_claims(id_token));
    // The logout's transaction, by hand: the lock taken, its record not yet committed.
    let mut logout = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    logout.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut logout)
        .await
        .unwrap();
    let mut watcher = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    let sign_in = reg.create(id_token, "desktop");
    let finish_logout = async {
        // Bounded wait for the sign-in to queue on the lock (in this test's database: other
        // tests run beside it); past it the sign-in did not wait.
        let mut waited = false;
        for _ in 0..400 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                waited = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        sqlx::query(
            "INSERT INTO used_credentials (tenant, kind, hash, expires_at, ended_at) \
             VALUES ('acme', $1, $2, $3, $3)",
        )
        .bind(kind)
        .bind(&key)
        .bind(i64::MAX / 2)
        .execute(&mut logout)
        .await
        .unwrap();
        logout.execute("COMMIT").await.unwrap();
        waited
    };
    let ((status, body), waited) = tokio::join!(sign_in, finish_logout);
    assert!(
        waited,
        "the sign-in queued on the lock of what the logout ends"
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "signed_out", "{body}");
    assert_eq!(created_sessions(&reg).await, 0);
}
