//! Rotating the session-JWT signing key: the server admin rotates; the JWKS then publishes the
//! old and the new key, new JWTs carry the new kid, JWTs signed before the rotation keep working
//! for their whole lifetime, and once the grace has passed the old key is gone.

use serde_json::{json, Value};
use session_registry::config::DEV_ADMIN_TOKEN;
use session_registry::service::{JWT_TTL, KEY_ROTATION_GRACE};
use test_harness::TestIdp;

use crate::helpers::*;

fn kid(jwt: &Value) -> String {
    jsonwebtoken::decode_header(jwt.as_str().unwrap())
        .unwrap()
        .kid
        .unwrap()
}

async fn published_kids(reg: &TestRegistry) -> Vec<String> {
    let jwks: Value = reg
        .http
        .get(reg.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[tokio::test]
async fn a_rotated_key_overlaps_the_old_one_until_old_session_jwts_have_expired() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let old_jwt = created["session_jwt"].clone();
    let old_kid = kid(&old_jwt);
    assert_eq!(published_kids(&reg).await, vec![old_kid.clone()]);

    for wrong in ["wrong", API_KEY] {
        let (status, _) = reg.post("/v1/admin/keys/rotate", wrong, json!({})).await;
        assert_eq!(
            status, 401,
            "only the server admin rotates keys, not {wrong}"
        );
    }
    assert_eq!(published_kids(&reg).await, vec![old_kid.clone()]);
    let (status, rotated) = reg
        .post("/v1/admin/keys/rotate", DEV_ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(published_kids(&reg).await, both, "old and new overlap");

    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        kid(&body["session_jwt"]),
        new_kid,
        "new JWTs carry the new kid"
    );

    // A JWT signed before the rotation authenticates, now and to the last second of its life.
    let (status, body, _) = reg.authenticate(json!({"session_jwt": old_jwt})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kid(&body["session_jwt"]), new_kid);
    reg.advance(JWT_TTL - 1);
    let (status, body, _) = reg.authenticate(json!({"session_jwt": old_jwt})).await;
    assert_eq!(
        status, 200,
        "an old JWT works for its whole lifetime: {body}"
    );
    assert_eq!(published_kids(&reg).await, both);

    reg.advance(KEY_ROTATION_GRACE - (JWT_TTL - 1));
    assert_eq!(
        published_kids(&reg).await,
        vec![new_kid.clone()],
        "the old key is gone"
    );
    let (status, _, _) = reg.authenticate(json!({"session_jwt": old_jwt})).await;
    assert_eq!(status, 401);
    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = reg
        .authenticate(json!({"session_jwt": body["session_jwt"]}))
        .await;
    assert_eq!(status, 200, "JWTs of the new key keep working: {body}");
}

/// A process started after a revoke learns of it from the database (the JWT path's revoked set
/// is seeded at start), and keeps it for a session JWT's whole lifetime from the revoke, not
/// from its own start: garbage collection must not drop it while a JWT minted before the revoke
/// is still answered without the database.
#[tokio::test]
async fn a_process_started_after_a_revoke_keeps_refusing_the_sessions_jwts_past_its_first_gc() {
    let idp = test_harness::TestIdp::spawn().await;
    let a = TestRegistry::spawn_with(&idp, Backend::Postgres, |s| {
        s.public_url = Some("http://registry.test".parse().unwrap());
    })
    .await;
    let (laptop, _) = a.device(&idp, "acme", "alice", "laptop").await;
    let (_, p) = a.device(&idp, "acme", "alice", "phone").await;
    let phone_id = p["session"]["session_id"].as_str().unwrap().to_owned();
    let jwt = p["session_jwt"].as_str().unwrap().to_owned();
    let (status, body) = a
        .post(
            "/v1/sessions/revoke",
            &laptop,
            serde_json::json!({"session_id": phone_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let b = a.spawn_sibling(&idp).await;
    // B's garbage collection runs a few seconds into its life, well inside the JWT's minute
    // without the database.
    b.advance(5);
    b.registry
        .collect_garbage(session_registry::startup::AUDIT_WINDOW_SECS)
        .await
        .unwrap();
    let (status, body, _) = b
        .authenticate(serde_json::json!({"session_jwt": jwt}))
        .await;
    assert_eq!(status, 401, "B accepted a revoked session's JWT: {body}");
}
