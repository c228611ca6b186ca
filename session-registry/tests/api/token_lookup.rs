//! The Postgres token lookup (`store/pg_hot.rs`) at the store level: lookups of several tenants
//! batched and pipelined on one connection whose row-level-security tenant follows the
//! statements, a lookup connection that outlives its runtime, and the batching's counters on
//! `/metrics`.

use session_registry::store::{PgStore, Store, StoreError};
use session_registry::token::SessionToken;
use test_harness::TestIdp;

use crate::helpers::*;

/// (tenant, token hash, session id) of a new device session.
async fn session(
    reg: &TestRegistry,
    idp: &TestIdp,
    tenant: &str,
    user: &str,
    device: &str,
) -> (String, String, String) {
    let (token, body) = reg.device(idp, tenant, user, device).await;
    let hash = SessionToken::parse(&token).unwrap().hash();
    let id = body["session"]["session_id"].as_str().unwrap().to_owned();
    (tenant.to_owned(), hash, id)
}

#[tokio::test]
async fn batched_lookups_across_tenants_answer_each_from_its_own_tenant_only() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let sessions = [
        session(&reg, &idp, "acme", "alice", "laptop").await,
        session(&reg, &idp, "globex", "carol", "desk").await,
        session(&reg, &idp, "acme", "bob", "phone").await,
        session(&reg, &idp, "globex", "alice", "tablet").await,
    ];
    let store = PgStore::connect(&reg.database_url, false).await.unwrap();
    // Every hash asked in its own tenant (found) and in the other (not found), interleaved so
    // that batches hold both tenants and the connection's tenant changes within a batch.
    let mut asks = Vec::new();
    for (tenant, hash, id) in &sessions {
        let other = if tenant == "acme" { "globex" } else { "acme" };
        asks.push((tenant.clone(), hash.clone(), Some(id.clone())));
        asks.push((other.to_owned(), hash.clone(), None));
    }
    asks.push(("acme".into(), "0".repeat(64), None));
    let store = &store;
    for round in 0..3 {
        // All at once: on this single-threaded runtime they all queue before the batch's task
        // runs, so they go as batches of up to 64, a statement per tenant in each.
        let before = store.token_lookup_stats().unwrap();
        let count = asks.len() * 8;
        let answers = futures_util::future::join_all(asks.iter().cycle().take(count).map(
            |(tenant, hash, _)| async move { store.session_by_token_hash(tenant, hash).await },
        ))
        .await;
        let after = store.token_lookup_stats().unwrap();
        assert_eq!(after.lookups - before.lookups, count as u64);
        let batches = count.div_ceil(64) as u64;
        assert!(
            after.statements - before.statements <= 2 * batches,
            "round {round}: {count} lookups took {} statements",
            after.statements - before.statements
        );
        for ((tenant, _, want), got) in asks.iter().cycle().zip(answers) {
            let got = got.unwrap();
            assert_eq!(
                got.as_ref().map(|s| s.id.clone()),
                *want,
                "round {round}: a lookup in {tenant}"
            );
            if let Some(s) = got {
                assert_eq!(s.tenant, *tenant);
            }
        }
        // And one by one, the tenant changing every time.
        for (tenant, hash, want) in &asks {
            let got = store.session_by_token_hash(tenant, hash).await.unwrap();
            assert_eq!(
                got.map(|s| s.id),
                *want,
                "round {round}: one lookup in {tenant}"
            );
        }
    }
}

/// A lookup connection's I/O, and the task sending a thread's batches, run on the runtime of
/// the thread that started them; when that runtime ends (a worker stopping), even in the middle
/// of a batch, the next lookup on the thread starts afresh instead of failing or waiting forever.
#[test]
fn lookups_go_on_after_the_runtime_that_started_them_ended() {
    let services = tokio::runtime::Runtime::new().unwrap();
    let (idp, reg, (tenant, hash, id)) = services.block_on(async {
        let idp = TestIdp::spawn().await;
        let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
        let s = session(&reg, &idp, "acme", "alice", "laptop").await;
        (idp, reg, s)
    });
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let store = runtime()
        .block_on(PgStore::connect(&reg.database_url, false))
        .unwrap();
    let lookup = || {
        let store = &store;
        let (tenant, hash) = (&tenant, &hash);
        async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(20),
                store.session_by_token_hash(tenant, hash),
            )
            .await
            .expect("the lookup must not wait forever")
        }
    };

    // A runtime that answered a lookup, then ended: its connection went with it.
    let first = runtime();
    let found = first.block_on(lookup()).unwrap();
    assert_eq!(found.map(|s| s.id).as_deref(), Some(id.as_str()));
    drop(first);

    // A runtime that ends before the batch's task has run at all (it is dropped unpolled),
    // then one that ends while its batch is being sent.
    for yields in [0, 3] {
        let ending = runtime();
        ending.block_on(async {
            let pending = store.session_by_token_hash(&tenant, &hash);
            tokio::pin!(pending);
            assert!(
                futures_util::poll!(&mut pending).is_pending(),
                "queued; the batch's task is spawned"
            );
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
        });
        drop(ending);
    }

    let third = runtime();
    let found = third.block_on(lookup());
    assert!(
        !matches!(found, Err(StoreError::Unavailable(_))),
        "the ended runtimes' connection and batch must not be used: {found:?}"
    );
    assert_eq!(found.unwrap().map(|s| s.id).as_deref(), Some(id.as_str()));
    drop(third);
    drop(store);
    services.block_on(async move {
        drop(reg);
        drop(idp);
    });
}

/// `/metrics` counts the token lookups and the statements that carried them, and concurrent
/// authenticates share statements. The lookups are made to pile up deterministically: the
/// sessions table is locked (as a long statement elsewhere would), 200 authenticates are sent,
/// and only once `/metrics` shows all 200 asked for is the lock released. The ones queued behind
/// each worker's first statement then go in batches, so far fewer statements than lookups.
#[tokio::test]
async fn metrics_count_token_lookups_and_concurrent_ones_share_statements() {
    use sqlx::Executor;
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (token, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let counter = |metrics: &str, name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("lanyard_registry_{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let before = reg.metrics().await;
    let (asked0, lookups0, statements0) = (
        counter(&before, "token_lookups_asked_total"),
        counter(&before, "token_lookups_total"),
        counter(&before, "token_lookup_statements_total"),
    );
    let mut locker = lock_table(&reg.database_url, "sessions", "ACCESS EXCLUSIVE").await;
    const N: u64 = 200;
    let reg_ref = &reg;
    let token = &token;
    let requests = futures_util::future::join_all((0..N).map(|_| async move {
        reg_ref
            .authenticate(serde_json::json!({ "session_token": token }))
            .await
            .0
    }));
    let release = async {
        // Wait for the signal that every lookup is queued (bounded: the test fails past it).
        for _ in 0..400 {
            let asked = counter(&reg_ref.metrics().await, "token_lookups_asked_total") - asked0;
            if asked == N {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        locker.execute("COMMIT").await.unwrap();
    };
    let (answers, ()) = tokio::join!(requests, release);
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    let after = reg.metrics().await;
    let asked = counter(&after, "token_lookups_asked_total") - asked0;
    let lookups = counter(&after, "token_lookups_total") - lookups0;
    let statements = counter(&after, "token_lookup_statements_total") - statements0;
    assert_eq!(asked, N, "one lookup asked per token authenticate");
    assert_eq!(lookups, N, "and each sent once");
    assert!(
        statements <= N / 4,
        "queued lookups share statements: {statements} statements for {N} lookups"
    );
}

/// A lookup connection killed under the registry (`pg_terminate_backend`) costs the next
/// authenticate nothing: the batch goes again on a fresh connection.
#[tokio::test]
async fn a_killed_lookup_connection_is_replaced_without_failing_a_request() {
    use sqlx::{Connection, Row};
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (token, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let body = serde_json::json!({ "session_token": token });
    let (status, _, _) = reg.authenticate(body.clone()).await;
    assert_eq!(status, 200);

    let mut admin = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    let killed = sqlx::query(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'session-registry token lookup'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get::<i64, _>("n");
    assert!(killed >= 1, "the registry's lookup connection was open");

    for _ in 0..3 {
        let (status, answer, _) = reg.authenticate(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["session"]["session_id"],
            created["session"]["session_id"]
        );
    }
}
