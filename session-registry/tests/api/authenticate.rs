use serde_json::json;
use test_harness::TestIdp;

use crate::helpers::*;

async fn the_heartbeat_checks_without_extending_and_a_duration_extends_up_to_the_absolute_limit(
    backend: Backend,
) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let expires = created["session"]["expires_at"].as_i64().unwrap();
    let absolute = created["session"]["absolute_expires_at"].as_i64().unwrap();

    reg.advance(600);
    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["session"]["expires_at"].as_i64().unwrap(),
        expires,
        "a heartbeat never extends"
    );
    assert!(body["session_jwt"].is_string());
    assert!(
        body.get("session_token").is_none(),
        "the token is only shown at creation"
    );

    let (status, body, _) = reg
        .authenticate(json!({"session_token": token, "session_duration_minutes": 120}))
        .await;
    assert_eq!(status, 200);
    assert!(body["session"]["expires_at"].as_i64().unwrap() > expires);
    let (_, body, _) = reg
        .authenticate(json!({"session_token": token, "session_duration_minutes": 525_600}))
        .await;
    assert_eq!(
        body["session"]["expires_at"].as_i64().unwrap(),
        absolute,
        "capped by the absolute lifetime"
    );

    for bad in [4, 525_601, -1] {
        let (status, body, _) = reg
            .authenticate(json!({"session_token": token, "session_duration_minutes": bad}))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
on_both_backends!(
    the_heartbeat_checks_without_extending_and_a_duration_extends_up_to_the_absolute_limit
);

async fn the_idle_timeout_is_enforced_by_the_server(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    // The tenant's idle timeout is 3600 s; the session lasts 60 min unless extended.
    let (status, _, _) = reg
        .authenticate(json!({"session_token": token, "session_duration_minutes": 600}))
        .await;
    assert_eq!(status, 200);
    reg.advance(3599);
    let (status, _, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200, "T_idle - 1 s succeeds and resets the timer");
    reg.advance(3599);
    let (status, _, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200);
    reg.advance(3601);
    let (status, body, challenge) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "session_idle_timeout");
    assert!(challenge
        .unwrap()
        .starts_with(r#"Bearer error="invalid_token""#));
    let rows = reg.admin_sessions("acme").await;
    assert_eq!(rows[0]["revoked_reason"], "idle_timeout");
    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("session_revoked"))
    );
}
on_both_backends!(the_idle_timeout_is_enforced_by_the_server);

#[tokio::test]
async fn no_amount_of_activity_outlives_the_absolute_lifetime() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (token, _) = reg.device(&idp, "acme", "bob", "laptop").await;
    // 24 h absolute; keep extending every 50 minutes.
    for _ in 0..28 {
        let (status, _, _) = reg
            .authenticate(json!({"session_token": token, "session_duration_minutes": 600}))
            .await;
        assert_eq!(status, 200);
        reg.advance(50 * 60);
    }
    reg.advance(2500); // 86 500 s after creation: past the 86 400 s limit, idle never exceeded
    let (status, body, _) = reg
        .authenticate(json!({"session_token": token, "session_duration_minutes": 600}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "session_expired");
    assert_eq!(
        reg.admin_sessions("acme").await[0]["revoked_reason"],
        "absolute_timeout"
    );
}

async fn a_session_jwt_authenticates_until_its_session_is_revoked(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let jwt = created["session_jwt"].as_str().unwrap().to_owned();
    let (status, body, _) = reg.authenticate(json!({"session_jwt": jwt})).await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["session_jwt"].as_str().unwrap().to_owned();
    // Past the recheck age the JWT path consults the database too.
    reg.advance(120);
    let (status, _, _) = reg.authenticate(json!({"session_jwt": fresh})).await;
    assert_eq!(status, 200);

    let (status, _) = reg
        .post("/v1/sessions/revoke", &token, json!({"scope": "current"}))
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = reg.authenticate(json!({"session_jwt": jwt})).await;
    assert_eq!(status, 401, "a revoked session's JWT is refused: {body}");
    assert_eq!(body["error"], "session_revoked");
    // The JWT also expires on its own.
    let (_, again) = reg.device(&idp, "acme", "alice", "laptop").await;
    reg.advance(301);
    let (status, body, _) = reg
        .authenticate(json!({"session_jwt": again["session_jwt"]}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_session_jwt");
}
on_both_backends!(a_session_jwt_authenticates_until_its_session_is_revoked);

#[tokio::test]
async fn exactly_one_credential_is_required() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    for body in [
        json!({}),
        json!({"session_token": token, "session_jwt": created["session_jwt"]}),
    ] {
        let (status, _, _) = reg.authenticate(body).await;
        assert_eq!(status, 400);
    }
}

#[tokio::test]
async fn forged_session_jwts_are_refused() {
    use base64::Engine;
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (_, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let jwt = created["session_jwt"].as_str().unwrap().to_owned();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "session+jwt");
    let with_header = |h: serde_json::Value| format!("{}.{}.{}", b64(&h), parts[1], parts[2]);
    let mut none = header.clone();
    none["alg"] = json!("none");
    let mut hs = header.clone();
    hs["alg"] = json!("HS256");
    let mut untyped = header.clone();
    untyped["typ"] = json!("JWT");
    let mut hostile = header.clone();
    hostile["kid"] = json!("../../etc/passwd' OR '1'='1");
    let id_token = idp.login("acme", "alice", "lanyard-cli").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut flipped = jwt.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for (what, forged) in [
        ("alg none", format!("{}.{}.", b64(&none), parts[1])),
        ("HS256", with_header(hs)),
        ("untyped", with_header(untyped)),
        ("hostile kid", with_header(hostile)),
        ("an IdP ID token", id_token),
        ("a flipped signature", flipped),
    ] {
        let (status, body, _) = reg.authenticate(json!({"session_jwt": forged})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_session_jwt", "{what}");
    }
    // Signed by the registry's own key but without its explicit type: still refused.
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let key = reg
        .registry
        .keys
        .read()
        .active(jose_keys::SigningAlg::ES256)
        .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    h.typ = Some("JWT".into());
    let retyped = jsonwebtoken::encode(&h, &claims, &key.encoding).unwrap();
    let (status, _, _) = reg.authenticate(json!({"session_jwt": retyped})).await;
    assert_eq!(status, 401, "a registry-signed token of another type");
    let (status, _, _) = reg.authenticate(json!({"session_jwt": jwt})).await;
    assert_eq!(status, 200, "the genuine JWT still works");
}

async fn a_heartbeat_records_activity_at_most_once_a_minute(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let t0 = created["session"]["last_authenticated_at"]
        .as_i64()
        .unwrap();
    let recorded = |rows: Vec<serde_json::Value>| rows[0]["last_authenticated_at"].as_i64();

    reg.advance(30);
    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        recorded(reg.admin_sessions("acme").await),
        Some(t0),
        "a check 30 s after the last recorded activity stays a read"
    );
    reg.advance(30);
    let (status, _, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200);
    assert_eq!(
        recorded(reg.admin_sessions("acme").await),
        Some(t0 + 60),
        "a check a minute later records the activity"
    );
    let (status, _, _) = reg
        .authenticate(json!({"session_token": token, "session_duration_minutes": 90}))
        .await;
    assert_eq!(status, 200);
    let rows = reg.admin_sessions("acme").await;
    assert_eq!(
        rows[0]["expires_at"].as_i64(),
        Some(t0 + 60 + 90 * 60),
        "an extension is always written"
    );
}
on_both_backends!(a_heartbeat_records_activity_at_most_once_a_minute);

async fn answers_reuse_a_recent_session_jwt_and_remembered_verifications_still_expire(
    backend: Backend,
) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let original = created["session_jwt"].as_str().unwrap().to_owned();

    let (status, first, _) = reg.authenticate(json!({"session_jwt": original})).await;
    assert_eq!(status, 200, "{first}");
    reg.advance(10);
    let (status, second, _) = reg.authenticate(json!({"session_jwt": original})).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        first["session_jwt"], second["session_jwt"],
        "a JWT minted 10 s ago for the same claims is handed out again"
    );
    assert_eq!(
        second["session_jwt"].as_str(),
        Some(original.as_str()),
        "the JWT minted at creation is the one reused"
    );
    reg.advance(25);
    let (status, third, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200);
    let third_jwt = third["session_jwt"].as_str().unwrap();
    assert_ne!(third_jwt, original, "past 30 s a new JWT is signed");
    let claims = jwt_claims(third_jwt);
    assert_eq!(
        claims["iat"].as_i64(),
        created["session"]["created_at"].as_i64().map(|t| t + 35)
    );

    let (status, extended, _) = reg
        .authenticate(json!({"session_token": token, "session_duration_minutes": 600}))
        .await;
    assert_eq!(status, 200);
    let claims = jwt_claims(extended["session_jwt"].as_str().unwrap());
    assert_eq!(
        claims["sexp"], extended["session"]["expires_at"],
        "a new session expiry never reuses a JWT of the old one"
    );

    // The original JWT's verification is remembered, but its expiry is checked on every use.
    reg.advance(300);
    let (status, body, _) = reg.authenticate(json!({"session_jwt": original})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_session_jwt");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("expired")),
        "{body}"
    );
}
on_both_backends!(answers_reuse_a_recent_session_jwt_and_remembered_verifications_still_expire);

async fn authenticate_answers_with_the_current_account_and_device_details(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    assert_eq!(created["session"]["device"]["name"], "laptop's laptop");
    // The same device signs in again under a new name and platform: a second session on it.
    let id_token = idp.login("acme", "alice", "lanyard-cli").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = reqwest::Client::new()
        .post(reg.url("/v1/sessions"))
        .json(&json!({"id_token": id_token, "device": {"id": "laptop", "name": "renamed", "platform": "macos"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    reg.advance(120);
    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200, "{body}");
    let answered = &body["session"];
    assert_eq!(answered["device"]["name"], "renamed", "{answered}");
    assert_eq!(answered["device"]["platform"], "macos");
    let (status, list) = reg.get("/v1/sessions", &token).await;
    assert_eq!(status, 200);
    let listed = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == answered["session_id"])
        .unwrap()
        .clone();
    for field in [
        "tenant",
        "account_id",
        "subject",
        "email",
        "is_guest",
        "created_at",
        "expires_at",
        "absolute_expires_at",
        "auth_method",
    ] {
        assert_eq!(answered[field], listed[field], "{field}");
    }
    for field in ["id", "name", "platform"] {
        assert_eq!(
            answered["device"][field], listed["device"][field],
            "device {field}"
        );
    }
}
on_both_backends!(authenticate_answers_with_the_current_account_and_device_details);

/// Many token authenticates at once, across tenants, on the token lookup's own connections:
/// every answer must be the session of its own token, with unknown tokens refused.
#[tokio::test]
async fn concurrent_token_authenticates_each_get_their_own_session() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let mut expected = Vec::new();
    for (tenant, user, device) in [
        ("acme", "alice", "laptop"),
        ("acme", "alice", "phone"),
        ("acme", "bob", "laptop"),
        ("globex", "carol", "desktop"),
        ("globex", "alice", "tablet"),
    ] {
        let (token, created) = reg.device(&idp, tenant, user, device).await;
        let id = created["session"]["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        expected.push((token, Some((id, tenant))));
    }
    for tenant in ["acme", "globex"] {
        let unknown = session_registry::token::SessionToken::generate(tenant);
        expected.push((unknown.expose().to_owned(), None));
    }
    let reg = &reg;
    let calls = (0..6)
        .flat_map(|_| expected.iter())
        .map(|(token, want)| async move {
            let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
            (status, body, want)
        });
    for (status, body, want) in futures_util::future::join_all(calls).await {
        match want {
            Some((id, tenant)) => {
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["session"]["session_id"].as_str(), Some(id.as_str()));
                assert_eq!(body["session"]["tenant"].as_str(), Some(*tenant));
            }
            None => {
                assert_eq!(status, 401, "{body}");
                assert_eq!(body["error"], "session_not_found");
            }
        }
    }
}
