//! The database is killed and restarted while the registry serves traffic (on a Postgres server
//! of the test's own, so every other test keeps the shared one): requests fail cleanly with a
//! retryable 503 — never a 401 that would sign a device out, never a 500 — during the outage and
//! succeed after; no session is lost or duplicated; a revoke made after the restart still
//! reaches the revoked device's event stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use session_registry::config::EventsSetting;
use sqlx::{Connection, PgConnection};
use test_harness::{PrivatePostgres, TestIdp};

use crate::event_stream::{EventStream, Next};
use crate::helpers::*;

/// One answer of the traffic that runs through the outage.
#[derive(Debug)]
struct Answer {
    client: usize,
    heartbeat: bool,
    asked: Instant,
    status: u16,
}

/// Every session row, straight from the database.
async fn session_ids(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Opens `/v1/events`, retrying (bounded) while the registry answers 503.
async fn open_stream(reg: &TestRegistry, bearer: &str, last_event_id: Option<&str>) -> EventStream {
    for _ in 0..100 {
        let mut req = reg.http.get(reg.url("/v1/events")).bearer_auth(bearer);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        match res.status().as_u16() {
            200 => return EventStream::new(res),
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("GET /v1/events: {other} {}", res.text().await.unwrap()),
        }
    }
    panic!("the event stream could not be opened again after the outage");
}

#[tokio::test]
async fn a_database_restart_is_a_503_and_then_no_session_or_revoke_is_lost() {
    database_restart(false).await;
}

/// The same with events through the outbox and NATS JetStream: the relay rides out the outage
/// and the event stream (fed by NATS, not the database) carries on.
#[tokio::test]
async fn a_database_restart_on_nats_is_a_503_and_then_no_session_or_revoke_is_lost() {
    database_restart(true).await;
}

async fn database_restart(nats: bool) {
    let idp = TestIdp::spawn().await;
    let mut pg = PrivatePostgres::spawn().await.unwrap();
    let reg = TestRegistry::spawn_on_url_with(&idp, &pg.url, |s| {
        if nats {
            s.events = EventsSetting::Nats(test_harness::nats::nats_url());
            s.deployment = test_harness::nats::unique_deployment();
        }
    })
    .await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let phone_id = p["session"]["session_id"].as_str().unwrap().to_owned();
    // Two more devices of alice's, whose heartbeats are the traffic below (the laptop's own first
    // request during the outage must not be one the session cache has just seen).
    let (desktop, _) = reg.device(&idp, "acme", "alice", "desktop").await;
    let (watch, _) = reg.device(&idp, "acme", "alice", "watch").await;
    let mut stream = open_stream(&reg, &phone, None).await;
    // The laptop extends its session; the phone hearing of it shows its stream is live end to
    // end (database notification included) and gives it an event id to resume from.
    let (status, body, _) = reg
        .authenticate(json!({"session_token": laptop, "session_duration_minutes": 120}))
        .await;
    assert_eq!(status, 200, "{body}");
    let extended = match stream
        .wait_for(Duration::from_secs(10), |e| e.kind == "extended")
        .await
    {
        Some(Next::Event(e)) => e,
        other => panic!("the phone did not hear of the extension: {other:?}"),
    };
    let before = session_ids(&pg.url).await;
    assert_eq!(before.len(), 4);

    // Traffic through the outage: heartbeats of the desktop and the watch from three clients and a
    // session list from a fourth, each answer recorded with when it was asked.
    let stop_load = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let http = reg.http.clone();
            let authenticate = reg.url("/v1/sessions/authenticate");
            let list = reg.url("/v1/sessions");
            let token = if i % 2 == 0 {
                desktop.clone()
            } else {
                watch.clone()
            };
            let stop_load = stop_load.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop_load.load(Ordering::SeqCst) {
                    let asked = Instant::now();
                    let heartbeat = i != 3;
                    let res = if heartbeat {
                        http.post(&authenticate)
                            .json(&json!({"session_token": token}))
                            .send()
                            .await
                    } else {
                        http.get(&list).bearer_auth(&token).send().await
                    };
                    let status = res.map(|r| r.status().as_u16()).unwrap_or(0);
                    answers.push(Answer {
                        client: i,
                        heartbeat,
                        asked,
                        status,
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Killed, not shut down: every server process ends at once, as in a crash.
    pg.kill().await.unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body, challenge) = reg.authenticate(json!({"session_token": laptop})).await;
    assert_eq!(
        status, 503,
        "an outage is a retryable 503, not a sign-out: {body}"
    );
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        challenge, None,
        "no invalid_token challenge during an outage"
    );
    // A sign-in during the outage fails as cleanly, and leaves nothing behind.
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let (status, body) = reg
        .create(tokens["id_token"].as_str().unwrap(), "tablet")
        .await;
    assert_eq!(status, 503, "{body}");

    let restarting = Instant::now();
    pg.start().await.unwrap();
    // A stream that died with the outage is resumed now, while the phone's session is live, from
    // the last event it saw (as an EventSource does). A stream that survived has long since
    // noticed a dead connection if it had one: 100 ms only decides which case this is.
    match stream.next(Duration::from_millis(100)).await {
        None => {}
        Some(Next::Event(e)) => panic!("nothing happened during the outage, yet: {e:?}"),
        Some(Next::Ended | Next::Failed(_)) => {
            let last = stream.last_id.clone();
            stream = open_stream(&reg, &phone, last.as_deref()).await;
        }
    }
    let mut recovered = false;
    for _ in 0..100 {
        let (status, body, _) = reg.authenticate(json!({"session_token": laptop})).await;
        if status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(
            status, 503,
            "only a retryable error while recovering: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the registry serves again once the database is back"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_load.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for task in load {
        answers.extend(task.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| matches!(a.status, 200 | 503)),
        "every answer under load is a success or a retryable 503, never a sign-out or a 500: {:?}",
        answers
            .iter()
            .filter(|a| !matches!(a.status, 200 | 503))
            .map(|a| (a.client, a.status))
            .collect::<Vec<_>>()
    );
    // The heartbeats asked while the database was surely down: from 200 ms after the kill
    // returned (the registry has seen its connections die by then) to just before the restart.
    let down_from = killed + Duration::from_millis(200);
    let down_until = restarting - Duration::from_millis(50);
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.heartbeat && a.asked >= down_from && a.asked < down_until)
        .collect();
    for client in 0..3 {
        assert!(
            during.iter().any(|a| a.client == client),
            "heartbeat client {client} was asked while the database was down"
        );
    }
    let cached = during.iter().filter(|a| a.status == 200).count();
    if nats {
        // The event feed (NATS) stayed up: the session cache answers every heartbeat it checked
        // in the last minute, and a revoke would still reach it.
        assert_eq!(
            cached,
            during.len(),
            "with its feed up the cache answers heartbeats while the database is down"
        );
    } else {
        // The feed is the database's LISTEN connection: with it gone the cache cannot know of a
        // revoke, so it answers nothing and heartbeats get the outage's 503.
        assert_eq!(
            cached, 0,
            "without its event feed the cache answers nothing: the outage is a 503"
        );
    }
    assert!(
        answers.iter().any(|a| a.status == 200 && a.asked < killed)
            && answers
                .iter()
                .any(|a| a.status == 200 && a.asked > restarting),
        "the traffic was served before and after the outage"
    );
    let (status, body) = reg
        .post(
            "/v1/sessions/revoke",
            &laptop,
            json!({"session_id": phone_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([phone_id]));
    match stream
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "revoked" && e.data["session_id"] == phone_id
        })
        .await
    {
        Some(Next::Event(e)) => assert_eq!(
            e.data["id"].as_i64().unwrap(),
            extended.data["id"].as_i64().unwrap() + 1,
            "the account's next event: none lost, none twice"
        ),
        other => panic!("the phone never heard of its revocation: {other:?}"),
    }
    assert_eq!(
        session_ids(&pg.url).await,
        before,
        "no session lost or duplicated"
    );
    println!(
        "fault postgres-killed ({}): ok — {} answers under traffic, none a 401 or 500; of the {} \
         heartbeats asked while the database was down, {} answered 200 from the session cache and \
         {} got 503; no session lost or duplicated; the revoke after the restart reached the stream \
         as the account's next event",
        if nats { "nats" } else { "postgres" },
        answers.len(),
        during.len(),
        cached,
        during.len() - cached,
    );
}
