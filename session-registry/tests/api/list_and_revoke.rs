use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

fn ids(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn an_account_sees_its_sessions_across_devices_with_its_own_marked_current(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, l) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (_phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let (_bob, _) = reg.device(&idp, "acme", "bob", "bobs-laptop").await;
    let (status, list) = reg.get("/v1/sessions", &laptop).await;
    assert_eq!(status, 200);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "bob's session is not alice's: {list}");
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["session_id"], l["session"]["session_id"]);
    let devices: Vec<&str> = sessions
        .iter()
        .map(|s| s["device"]["id"].as_str().unwrap())
        .collect();
    assert!(devices.contains(&"laptop") && devices.contains(&"phone"));
    // The session JWT proves who the user is to other APIs; it lists nothing (issue #12).
    let (status, by_jwt) = reg
        .get("/v1/sessions", p["session_jwt"].as_str().unwrap())
        .await;
    assert_eq!(status, 401, "{by_jwt}");
    assert_eq!(by_jwt["error"], "session_token_required");
}
on_both_backends!(an_account_sees_its_sessions_across_devices_with_its_own_marked_current);

async fn revoke_others_signs_every_other_device_out_and_keeps_this_one(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, _) = reg.device(&idp, "acme", "alice", "phone").await;
    let (tablet, _) = reg.device(&idp, "acme", "alice", "tablet").await;
    let (bob, _) = reg.device(&idp, "acme", "bob", "desk").await;
    let (status, body) = reg
        .post("/v1/sessions/revoke", &laptop, json!({"scope": "others"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["revoked"].as_array().unwrap().len(), 2);
    for gone in [&phone, &tablet] {
        let (status, body) = reg.get("/v1/sessions", gone).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "session_revoked");
    }
    let (status, list) = reg.get("/v1/sessions", &laptop).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list).len(), 1);
    assert_eq!(
        reg.get("/v1/sessions", &bob).await.0,
        200,
        "another account is untouched"
    );

    let (status, _) = reg
        .post("/v1/sessions/revoke", &laptop, json!({"scope": "all"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 401);
}
on_both_backends!(revoke_others_signs_every_other_device_out_and_keeps_this_one);

async fn revoking_by_id_works_only_within_the_callers_account(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let (_bob, b) = reg.device(&idp, "acme", "bob", "desk").await;
    let (status, _) = reg
        .post(
            "/v1/sessions/revoke",
            &laptop,
            json!({"session_id": b["session"]["session_id"]}),
        )
        .await;
    assert_eq!(status, 404, "bob's session is not alice's to revoke");
    let (status, body) = reg
        .post(
            "/v1/sessions/revoke",
            &laptop,
            json!({"session_id": p["session"]["session_id"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["revoked"][0], p["session"]["session_id"]);
    assert_eq!(reg.get("/v1/sessions", &phone).await.0, 401);
    for bad in [
        json!({}),
        json!({"scope": "everything"}),
        json!({"scope": "all", "session_id": "x"}),
    ] {
        assert_eq!(reg.post("/v1/sessions/revoke", &laptop, bad).await.0, 400);
    }
}
on_both_backends!(revoking_by_id_works_only_within_the_callers_account);

/// A session revoked a moment ago, whose event has not reached this process yet (here: revoked
/// in the database with no event at all), may not end any other session of its account, by scope
/// as by id: the caller's own row is read from the primary, revoked or not. The account's list
/// reads only unrevoked sessions, so the caller's row is read on its own when it is not among them
/// (it was not, after f76039a, and the revoke went through).
#[tokio::test]
async fn a_session_revoked_a_moment_ago_cannot_revoke_the_others_by_scope() {
    use sqlx::{Connection, Executor};
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (laptop, l) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, _) = reg.device(&idp, "acme", "alice", "phone").await;
    // The laptop's session is known to this process (its session cache) as live.
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 200);
    let laptop_id = l["session"]["session_id"].as_str().unwrap();
    let mut db = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    db.execute(
        format!(
            "UPDATE sessions SET revoked_at = extract(epoch from now())::bigint, \
             revoked_reason = 'revoked' WHERE id = '{laptop_id}'"
        )
        .as_str(),
    )
    .await
    .unwrap();
    for scope in ["others", "all"] {
        let (status, body) = reg
            .post("/v1/sessions/revoke", &laptop, json!({ "scope": scope }))
            .await;
        assert_eq!(status, 401, "scope {scope}: {body}");
        assert_eq!(body["error"], "session_revoked", "scope {scope}: {body}");
    }
    assert_eq!(
        reg.get("/v1/sessions", &phone).await.0,
        200,
        "the phone's session is untouched"
    );
}
