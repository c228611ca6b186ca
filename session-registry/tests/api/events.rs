use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

/// Reads SSE frames until `n` events arrived (or 10 s passed).
async fn read_events(res: reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive in time");
        let Some(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (String::new(), String::new(), Value::Null);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if !kind.is_empty() {
                out.push((id, kind, data));
            }
        }
    }
    out
}

async fn subscribe(
    reg: &TestRegistry,
    bearer: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = reg.http.get(reg.url("/v1/events")).bearer_auth(bearer);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    res
}

async fn a_revoke_on_one_device_is_pushed_to_another(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let stream = subscribe(&reg, &phone, None).await;
    let (status, _) = reg
        .post("/v1/sessions/revoke", &laptop, json!({"scope": "others"}))
        .await;
    assert_eq!(status, 200);
    let events = read_events(stream, 1).await;
    assert_eq!(events[0].1, "revoked");
    assert_eq!(events[0].2["session_id"], p["session"]["session_id"]);
}
on_both_backends!(a_revoke_on_one_device_is_pushed_to_another);

async fn a_reconnect_with_last_event_id_replays_what_was_missed(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let stream = subscribe(&reg, &laptop, None).await;
    let (_phone, _) = reg.device(&idp, "acme", "alice", "phone").await;
    let first = read_events(stream, 1).await;
    assert_eq!(first[0].1, "created");
    // Disconnected; meanwhile a tablet signs in and the phone is revoked.
    let (_tablet, _) = reg.device(&idp, "acme", "alice", "tablet").await;
    let (status, _) = reg
        .post("/v1/sessions/revoke", &laptop, json!({"scope": "others"}))
        .await;
    assert_eq!(status, 200);
    let stream = subscribe(&reg, &laptop, Some(&first[0].0)).await;
    let replayed = read_events(stream, 3).await;
    let kinds: Vec<&str> = replayed.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["created", "revoked", "revoked"], "{replayed:?}");
}
on_both_backends!(a_reconnect_with_last_event_id_replays_what_was_missed);

#[tokio::test]
async fn two_registry_processes_on_one_database_deliver_each_others_revokes() {
    let idp = TestIdp::spawn().await;
    let first = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let second = first.spawn_sibling(&idp).await;
    let (laptop, _) = first.device(&idp, "acme", "alice", "laptop").await;
    let (phone, p) = first.device(&idp, "acme", "alice", "phone").await;
    // The phone listens on the second process; the laptop revokes through the first.
    let stream = subscribe(&second, &phone, None).await;
    // The phone's stream is attached to the second process's hub before the revoke is made (a
    // signal, not a pause; the LISTEN relay attached before the process answered at all).
    assert!(second.registry.hub.subscribers() >= 1);
    let (status, _) = first
        .post("/v1/sessions/revoke", &laptop, json!({"scope": "others"}))
        .await;
    assert_eq!(status, 200);
    let events = read_events(stream, 1).await;
    assert_eq!(events[0].1, "revoked");
    assert_eq!(events[0].2["session_id"], p["session"]["session_id"]);
    // And the second process refuses the revoked session's JWT without asking the database.
    let (status, _, _) = second
        .authenticate(json!({"session_jwt": p["session_jwt"]}))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_stream_is_only_for_the_callers_account_and_needs_a_live_session() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (alice, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (bob, _) = reg.device(&idp, "acme", "bob", "desk").await;
    let stream = subscribe(&reg, &bob, None).await;
    let (status, _) = reg
        .post("/v1/sessions/revoke", &alice, json!({"scope": "current"}))
        .await;
    assert_eq!(status, 200);
    let (_bob_phone, _) = reg.device(&idp, "acme", "bob", "phone").await;
    let events = read_events(stream, 1).await;
    assert_eq!(
        events[0].1, "created",
        "bob sees his own new session, not alice's revoke"
    );
    assert_eq!(
        reg.http
            .get(reg.url("/v1/events"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}
