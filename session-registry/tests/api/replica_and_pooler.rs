//! Reads from a real streaming replica (`--read-database-url`), and the registry behind a real
//! PgBouncer in transaction mode (`--database-pooler transaction`).
//!
//! The replica is a hot standby of a private Postgres server made with `pg_basebackup`; pausing
//! its replay is replication lag on demand. The pooler test gives two registry processes two
//! server connections between them, so anything left on a connection (a role, a tenant, a named
//! prepared statement) would surface on another process's transaction.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_registry::config::{EventsSetting, Pooler};
use sqlx::{Connection, PgConnection};
use test_harness::{PgBouncer, PrivatePostgres, TestDatabase, TestIdp};

use crate::event_stream::Next;
use crate::helpers::*;

/// A counter of `/metrics` (0 when absent).
async fn counter(reg: &TestRegistry, series: &str) -> f64 {
    reg.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

const REPLICA_USED: &str = "lanyard_registry_replica_reads_total{outcome=\"used\"}";
const REPLICA_PASSED_ON: &str = "lanyard_registry_replica_reads_total{outcome=\"passed_on\"}";

async fn token_status(reg: &TestRegistry, token: &str) -> (u16, Value) {
    let (status, body, _) = reg.authenticate(json!({"session_token": token})).await;
    (status, body)
}

#[tokio::test]
async fn a_lagging_replica_never_gets_a_revoked_session_accepted_and_misses_go_to_the_primary() {
    let idp = TestIdp::spawn().await;
    let primary = PrivatePostgres::spawn().await.expect("a private Postgres");
    // A writes (and migrates) on the primary; B reads token lookups and lists from the replica.
    let a = TestRegistry::spawn_on_url(&idp, &primary.url).await;
    let replica = primary.spawn_replica().await.expect("a streaming replica");
    let read_url = replica.url.clone();
    let b = TestRegistry::spawn_on_url_with(&idp, &primary.url, |s| {
        s.migrate = false;
        s.read_database_url = Some(read_url);
    })
    .await;

    // The replica answers B once it has replayed what B heard of: a fresh sign-in on A is
    // looked up on B until one lookup was the replica's (bounded: the watcher samples every
    // 100 ms).
    let started = Instant::now();
    loop {
        let (token, _) = a.device(&idp, "acme", "bob", "probe").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, body) = token_status(&b, &token).await;
        assert_eq!(status, 200, "{body}");
        if counter(&b, REPLICA_USED).await >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replica never answered a lookup: {}",
            b.metrics().await
        );
    }

    let (laptop, _) = a.device(&idp, "acme", "alice", "laptop").await;
    let (desktop, d) = a.device(&idp, "acme", "alice", "desktop").await;
    let desktop_id = d["session"]["session_id"].as_str().unwrap().to_owned();
    for token in [&laptop, &desktop] {
        let (status, body) = token_status(&b, token).await;
        assert_eq!(status, 200, "{body}");
    }

    // A device of alice's listens on B: when the revoke's event is on this stream, B has heard.
    let mut on_b = b.events(&laptop).await;

    // From now on the replica lags: nothing more is applied.
    replica.pause_replay().await.unwrap();
    let (status, body) = a
        .post(
            "/v1/sessions/revoke",
            &laptop,
            json!({"session_id": desktop_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    match on_b
        .wait_for(Duration::from_secs(20), |e| e.kind == "revoked")
        .await
    {
        Some(Next::Event(e)) => assert_eq!(e.data["session_id"], desktop_id.as_str()),
        other => panic!("the revoke never reached B: {other:?}"),
    }
    let (phone, _) = a.device(&idp, "acme", "alice", "phone").await;

    // The replica still has the desktop session live and no phone session at all.
    let mut on_replica = PgConnection::connect(&replica.url).await.unwrap();
    let revoked: Option<i64> = sqlx::query_scalar("SELECT revoked_at FROM sessions WHERE id = $1")
        .bind(&desktop_id)
        .fetch_one(&mut on_replica)
        .await
        .unwrap();
    assert_eq!(revoked, None, "the replica lags behind the revoke");

    // B has heard of the revoke: it refuses the session at once and from then on, whatever
    // the replica says.
    for _ in 0..5 {
        let (status, body) = token_status(&b, &desktop).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.to_string().contains("revoked"), "{body}");
    }
    // A session the replica has not seen yet is read on the primary: accepted.
    let (status, body) = token_status(&b, &phone).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["device"]["id"], "phone", "{body}");
    // The list shows what the primary has.
    let (status, body) = b.get("/v1/sessions", &laptop).await;
    assert_eq!(status, 200, "{body}");
    let mut devices: Vec<&str> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device"]["id"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(devices, ["laptop", "phone"], "{body}");
    assert!(counter(&b, REPLICA_PASSED_ON).await >= 2.0);

    replica.resume_replay().await.unwrap();
}

#[tokio::test]
async fn behind_pgbouncer_in_transaction_mode_two_processes_serve_every_call() {
    let idp = TestIdp::spawn().await;
    let db = TestDatabase::create().await;
    // Two server connections for every client connection of both processes.
    let bouncer = PgBouncer::start(&db.url, 2)
        .await
        .expect("pgbouncer starts");
    let pooled_url = bouncer.url(&db.name);
    let deployment = test_harness::nats::unique_deployment();
    let settings = |migrate: bool| {
        let (direct, deployment) = (db.url.clone(), deployment.clone());
        move |s: &mut session_registry::Settings| {
            s.database_pooler = Pooler::Transaction;
            s.events = EventsSetting::Nats(test_harness::nats::nats_url());
            s.deployment = deployment;
            s.migrate = migrate;
            s.migrations_database_url = Some(direct);
            // Behind one load balancer: one `iss` for both processes' session JWTs.
            s.public_url = Some("http://registry.test".parse().unwrap());
        }
    };
    let a = TestRegistry::spawn_on_url_with(&idp, &pooled_url, settings(true)).await;
    let b = TestRegistry::spawn_on_url_with(&idp, &pooled_url, settings(false)).await;

    let (alice, al) = a.device(&idp, "acme", "alice", "laptop").await;
    let (carol, _) = b.device(&idp, "globex", "carol", "desktop").await;
    let (alice_phone, _) = b.device(&idp, "acme", "alice", "phone").await;

    // Lookups of both tenants, interleaved and concurrent, on both processes: each finds its
    // own session (tenant and role set per transaction, wherever the pooler runs it).
    let mut calls = Vec::new();
    for i in 0..40 {
        let reg = if i % 2 == 0 { &a } else { &b };
        let (token, tenant) = if i % 3 == 0 {
            (&carol, "globex")
        } else {
            (&alice, "acme")
        };
        calls.push(async move { (tenant, token_status(reg, token).await) });
    }
    for (tenant, (status, body)) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["session"]["tenant"], tenant, "{body}");
    }
    // A session JWT verifies on the other process (the shared keys, read through the pooler).
    let (status, body, _) = b
        .authenticate(json!({"session_jwt": al["session_jwt"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    // A guess is refused as such (the failed-lookup count is written through the pooler).
    let guess = session_registry::token::SessionToken::generate("acme");
    let (status, body) = token_status(&a, guess.expose()).await;
    assert_eq!(status, 401, "{body}");

    // Lists and revokes; the revoke through B reaches A's device stream and A refuses it.
    let (status, body) = a.get("/v1/sessions", &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2, "{body}");
    let (status, body) = b
        .post(
            "/v1/sessions/revoke",
            &alice_phone,
            json!({"scope": "others"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    loop {
        let (status, body) = token_status(&a, &alice).await;
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "A still accepts the revoked session: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = token_status(&a, &carol).await;
    assert_eq!(
        status, 200,
        "the other tenant's session is untouched: {body}"
    );

    // A key rotation through A reaches B through the database and NATS.
    let (status, body) = a
        .post(
            "/v1/admin/keys/rotate",
            session_registry::config::DEV_ADMIN_TOKEN,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Every connection of both processes went through the pooler's two server connections.
    let mut direct = PgConnection::connect(&db.url).await.unwrap();
    let servers: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .fetch_one(&mut direct)
    .await
    .unwrap();
    assert!(servers <= 2, "{servers} server connections");
}

#[tokio::test]
async fn a_transaction_pooler_needs_nats_and_a_direct_url_for_migrations() {
    let idp = TestIdp::spawn().await;
    let db = TestDatabase::create().await;
    let mut settings = session_registry::Settings::for_tests(&db.url);
    settings.database_pooler = Pooler::Transaction;
    let error = |settings: session_registry::Settings| {
        let config = tenants(&idp);
        async move {
            match session_registry::Application::build_with(
                &settings,
                &config,
                std::sync::Arc::new(lanyard_clock::ManualClock::new()),
            )
            .await
            {
                Ok(_) => panic!("the registry started"),
                Err(e) => e.to_string(),
            }
        }
    };
    let e = error(settings.clone()).await;
    assert!(e.contains("LISTEN") && e.contains("--events"), "{e}");
    settings.events = EventsSetting::Nats(test_harness::nats::nats_url());
    let e = error(settings.clone()).await;
    assert!(e.contains("--migrations-database-url"), "{e}");
    let mut sqlite = session_registry::Settings::for_tests("sqlite://unused.db");
    sqlite.read_database_url = Some(db.url.clone());
    let e = error(sqlite).await;
    assert!(e.contains("Postgres"), "{e}");
}
