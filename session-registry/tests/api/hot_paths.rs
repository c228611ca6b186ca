//! What keeps the heartbeat fast at scale, each shown on a real Postgres: activity writes due
//! together share one transaction and are durable before the answer; the garbage collector
//! reads sessions and events by index, never by scanning every session; `/metrics` tells
//! session-cache hits from the reasons for a database read.

use serde_json::json;
use sqlx::{Connection, Executor, Row};
use test_harness::TestIdp;

use crate::helpers::*;

fn counter(metrics: &str, name: &str) -> u64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&format!("lanyard_registry_{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn activity_writes_due_together_share_one_transaction_and_are_durable_before_the_answer() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    const N: u64 = 24;
    let mut tokens = Vec::new();
    for i in 0..N {
        let (token, body) = reg
            .device(&idp, "acme", "alice", &format!("device-{i}"))
            .await;
        tokens.push((
            token,
            body["session"]["session_id"].as_str().unwrap().to_owned(),
        ));
    }
    // Every session's activity is now a minute and more old: the next heartbeat writes it.
    reg.advance(61);
    let now = lanyard_clock::Clock::now(reg.clock.as_ref()).unix_timestamp();
    let before = reg.metrics().await;
    let (writes0, tx0) = (
        counter(&before, "activity_writes_total"),
        counter(&before, "activity_transactions_total"),
    );

    // Writes to sessions wait behind this lock (reads do not), so every heartbeat's write is
    // queued before the first one can commit.
    let mut locker = lock_table(&reg.database_url, "sessions", "EXCLUSIVE").await;
    let reg_ref = &reg;
    let requests = futures_util::future::join_all(tokens.iter().map(|(token, _)| async move {
        reg_ref
            .authenticate(json!({ "session_token": token }))
            .await
            .0
    }));
    let release = async {
        // Bounded wait for every write to be asked for; the test fails past it.
        for _ in 0..400 {
            if counter(&reg_ref.metrics().await, "activity_writes_total") - writes0 == N {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        locker.execute("COMMIT").await.unwrap();
    };
    let (answers, ()) = tokio::join!(requests, release);
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");

    let after = reg.metrics().await;
    let writes = counter(&after, "activity_writes_total") - writes0;
    let transactions = counter(&after, "activity_transactions_total") - tx0;
    assert_eq!(writes, N, "one activity write per heartbeat that was due");
    assert!(
        transactions <= 2,
        "the writes queued behind the first share a transaction: {transactions} for {N} writes"
    );

    // Durable before the answer: the database already holds every session's activity and
    // every device's last sighting.
    let mut db = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    for (_, id) in &tokens {
        let row = sqlx::query(
            "SELECT s.last_authenticated_at, d.last_seen FROM sessions s \
             JOIN devices d ON d.tenant = s.tenant AND d.account_id = s.account_id AND d.id = s.device_id \
             WHERE s.id = $1",
        )
        .bind(id)
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(row.get::<i64, _>(0), now, "session {id}");
        assert_eq!(row.get::<i64, _>(1), now, "device of session {id}");
    }
}

/// One batch of the activity writer is one statement on Postgres (`TOUCH_SESSIONS_BATCH`): every
/// live session in it gets its time, a device with two sessions in the batch the later one, and
/// a revoked session (and its device) nothing — as the row-by-row writes did.
#[tokio::test]
async fn an_activity_batch_writes_each_live_session_and_each_device_its_latest_time() {
    use session_registry::store::{PgStore, Store};
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let mut ids = Vec::new();
    for d in ["laptop", "desktop", "phone", "tablet"] {
        let (_, body) = reg.device(&idp, "acme", "alice", d).await;
        ids.push(body["session"]["session_id"].as_str().unwrap().to_owned());
    }
    let mut db = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    // The desktop's session moves to the laptop: the laptop has two sessions in the batch.
    sqlx::query(
        "UPDATE sessions SET device_id = (SELECT device_id FROM sessions WHERE id = $1) WHERE id = $2",
    )
    .bind(&ids[0])
    .bind(&ids[1])
    .execute(&mut db)
    .await
    .unwrap();
    // The tablet's session is revoked.
    sqlx::query("UPDATE sessions SET revoked_at = 1, revoked_reason = 'test' WHERE id = $1")
        .bind(&ids[3])
        .execute(&mut db)
        .await
        .unwrap();
    let read = |id: String| {
        let url = reg.database_url.clone();
        async move {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            let row = sqlx::query(
                "SELECT s.last_authenticated_at, d.last_seen FROM sessions s \
                 JOIN devices d ON d.tenant = s.tenant AND d.account_id = s.account_id AND d.id = s.device_id \
                 WHERE s.id = $1",
            )
            .bind(&id)
            .fetch_one(&mut db)
            .await
            .unwrap();
            (row.get::<i64, _>(0), row.get::<i64, _>(1))
        }
    };
    let tablet_before = read(ids[3].clone()).await;

    let store = PgStore::connect(&reg.database_url, false).await.unwrap();
    let t = 2_000_000_000_i64;
    store
        .record_activity(
            "acme",
            &[
                (ids[0].clone(), t + 5),
                (ids[1].clone(), t + 9),
                (ids[2].clone(), t + 1),
                (ids[3].clone(), t + 7),
            ],
        )
        .await
        .expect("one batch");

    assert_eq!(
        read(ids[0].clone()).await,
        (t + 5, t + 9),
        "laptop: its latest session's time"
    );
    assert_eq!(read(ids[1].clone()).await, (t + 9, t + 9));
    assert_eq!(read(ids[2].clone()).await, (t + 1, t + 1), "phone");
    assert_eq!(
        read(ids[3].clone()).await,
        tablet_before,
        "a revoked session is not touched"
    );
    // Another tenant's name on the batch touches nothing of acme's.
    store
        .record_activity("globex", &[(ids[2].clone(), t + 100)])
        .await
        .expect("a batch of another tenant");
    assert_eq!(
        read(ids[2].clone()).await,
        (t + 1, t + 1),
        "row-level security and the tenant filter"
    );
}

/// A heartbeat's activity write changes no indexed column, and the sessions and devices tables
/// keep room on each page (migration 0009), so the write is a HOT update: the new row version
/// stays on its page and no index gets an entry. On pages packed full (the default fillfactor),
/// each write moved its row to another page and inserted into every index — six on sessions, at
/// 10 M sessions each a random page of its own, logged whole after a checkpoint.
#[tokio::test]
async fn a_heartbeats_activity_write_is_a_hot_update_that_touches_no_index() {
    use session_registry::store::sql;
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (_, body) = reg.device(&idp, "acme", "alice", "laptop").await;
    let first = body["session"]["session_id"].as_str().unwrap().to_owned();
    let mut db = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    // Copies of the real session and its device, each copy on a device of its own, as many as
    // fill several pages of both tables.
    const COPIES: i64 = 299;
    db.execute(
        format!(
            "INSERT INTO devices SELECT (jsonb_populate_record(NULL::devices, to_jsonb(d) || \
               jsonb_build_object('id', d.id || '-' || g))).* \
             FROM devices d, generate_series(1, {COPIES}) g WHERE d.tenant = 'acme'; \
             INSERT INTO sessions SELECT (jsonb_populate_record(NULL::sessions, to_jsonb(s) || \
               jsonb_build_object('id', s.id || '-' || g, 'token_hash', s.token_hash || '-' || g, \
                                  'device_id', s.device_id || '-' || g))).* \
             FROM sessions s, generate_series(1, {COPIES}) g WHERE s.id = '{first}'"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let pages =
        |table: &str| format!("SELECT count(DISTINCT (ctid::text::point)[0])::bigint FROM {table}");
    for table in ["sessions", "devices"] {
        let n: i64 = sqlx::query_scalar(&pages(table))
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert!(
            n >= 3,
            "{table}: the rows fill {n} page(s), too few to show anything"
        );
    }
    // One session of each page: the first heartbeat of a row on its page, as a fleet's
    // heartbeats mostly are (and those of the benchmark's sessions, one in a hundred, all are).
    // The room it needs is the fillfactor's, not what pruning an earlier write's dead version
    // gives back, which waits for every older snapshot of the server and so for other work.
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT ON ((ctid::text::point)[0]) id FROM sessions \
         ORDER BY (ctid::text::point)[0], ctid",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(ids.len() >= 3);

    const STATS: &str = "SELECT pg_stat_get_xact_tuples_updated('sessions'::regclass), \
        pg_stat_get_xact_tuples_hot_updated('sessions'::regclass), \
        pg_stat_get_xact_tuples_updated('devices'::regclass), \
        pg_stat_get_xact_tuples_hot_updated('devices'::regclass)";
    let stats = |row: sqlx::postgres::PgRow| -> [i64; 4] { std::array::from_fn(|i| row.get(i)) };
    let at = lanyard_clock::Clock::now(reg.clock.as_ref()).unix_timestamp() + 60;
    let (mut updated, mut hot) = ([0; 2], [0; 2]);
    for (k, id) in ids.iter().enumerate() {
        // One heartbeat's write in its own transaction, as the writer commits one that has
        // nothing else due with it; the counts are this transaction's own.
        db.execute("BEGIN").await.unwrap();
        let before = stats(sqlx::query(STATS).fetch_one(&mut db).await.unwrap());
        sqlx::query(sql::TOUCH_SESSIONS_BATCH)
            .bind("acme")
            .bind(vec![id.clone()])
            .bind(vec![at + k as i64])
            .execute(&mut db)
            .await
            .unwrap();
        let after = stats(sqlx::query(STATS).fetch_one(&mut db).await.unwrap());
        db.execute("COMMIT").await.unwrap();
        for t in 0..2 {
            updated[t] += after[2 * t] - before[2 * t];
            hot[t] += after[2 * t + 1] - before[2 * t + 1];
        }
    }
    let n = ids.len() as i64;
    assert_eq!(
        updated,
        [n, n],
        "each write updates its session and its device"
    );
    assert_eq!(
        hot,
        [n, n],
        "HOT updates of (sessions, devices) out of {n} each: the others found no room on their \
         page, moved their row and inserted into every index"
    );
}

/// Plans as the registry gets them: as `lanyard_app`, the role row-level security applies to,
/// with tenant acme set; the generic plan, which a prepared statement of the driver's runs from
/// its sixth execution on when the planner finds it no dearer; and, on tables this small, where
/// the planner would scan anyway, with sequential scans priced out, so that a statement no index
/// can serve still shows one.
async fn plan_as_the_registry(db: &mut sqlx::PgConnection) {
    db.execute(
        "SET ROLE lanyard_app; SELECT set_config('lanyard.tenant', 'acme', false); \
         SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off",
    )
    .await
    .unwrap();
}

/// The plan of `statement` (named `name`) for `args`, prepared and explained as the driver runs
/// it (a generic plan's parameters).
async fn plan_of(db: &mut sqlx::PgConnection, name: &str, statement: &str, args: &str) -> String {
    let prepared = format!("PREPARE {} AS {statement}", name.to_lowercase());
    db.execute(prepared.as_str()).await.unwrap();
    let plan: Vec<String> = sqlx::query(&format!(
        "EXPLAIN (COSTS OFF) EXECUTE {} {args}",
        name.to_lowercase()
    ))
    .fetch_all(&mut *db)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    plan.join("\n")
}

/// The plan's first index condition; the plan must scan no table whole.
fn index_condition<'p>(plan: &'p str, name: &str) -> &'p str {
    assert!(
        !plan.contains("Seq Scan"),
        "{name} scans the whole table:\n{plan}"
    );
    plan.lines()
        .find(|l| l.trim_start().starts_with("Index Cond:"))
        .unwrap_or_else(|| panic!("{name} uses no index condition:\n{plan}"))
}

/// The index condition of the plan's first scan whose line holds `table` (e.g. `" on sessions s"`),
/// if that scan has one.
fn scan_condition<'p>(plan: &'p str, table: &str) -> Option<&'p str> {
    plan.lines()
        .skip_while(|l| !(l.contains("Scan") && l.contains(table)))
        .skip(1)
        .take_while(|l| !l.contains("->"))
        // A bitmap scan's condition is its heap scan's "Recheck Cond".
        .find(|l| {
            let l = l.trim_start();
            l.starts_with("Index Cond:") || l.starts_with("Recheck Cond:")
        })
}

#[tokio::test]
async fn garbage_collection_reads_sessions_and_events_by_index() {
    use session_registry::store::sql;
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let mut db = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    plan_as_the_registry(&mut db).await;
    // Each statement's index must find its rows by the time it collects by, not merely by
    // tenant (an index on the tenant alone still reads every session of the tenant).
    for (name, statement, bound) in [
        (
            "GC_EXPIRED_SESSIONS",
            sql::GC_EXPIRED_SESSIONS,
            "expires_at <",
        ),
        (
            "GC_REVOKED_SESSIONS",
            sql::GC_REVOKED_SESSIONS,
            "revoked_at <",
        ),
        ("GC_EVENTS", sql::GC_EVENTS, "at <"),
    ] {
        let plan = plan_of(&mut db, name, statement, "('acme', 0::bigint)").await;
        let index_cond = index_condition(&plan, name);
        assert!(
            index_cond.contains(bound),
            "{name} finds its rows by tenant, not by `{bound}`:\n{plan}"
        );
    }
}

/// 200 accounts with 20 sessions each, 18 of them revoked, one device and one IdP session per
/// session, and the
/// planner's statistics: with them it picks the index that serves a statement best.
async fn seed_accounts_with_mostly_revoked_sessions(db: &mut sqlx::PgConnection) {
    db.execute(
        "INSERT INTO accounts (id, tenant, issuer, subject, email, is_guest, created_at) \
         SELECT 'acct-' || g, 'acme', 'https://idp.example/acme', 'sub-' || g, NULL, false, 0 \
         FROM generate_series(1, 200) g; \
         INSERT INTO devices (tenant, account_id, id, name, platform, first_seen, last_seen) \
         SELECT 'acme', 'acct-' || (g % 200 + 1), 'dev-' || g, 'device', 'linux', 0, 0 \
         FROM generate_series(1, 4000) g; \
         INSERT INTO sessions (id, tenant, account_id, device_id, token_hash, idp_sid, created_at, \
           last_authenticated_at, expires_at, absolute_expires_at, auth_method, user_agent, ip, \
           subject, email, is_guest, device_name, device_platform, auth_time, revoked_at, revoked_reason) \
         SELECT 'sess-' || g, 'acme', 'acct-' || (g % 200 + 1), 'dev-' || g, md5('token-' || g), \
           'sid-' || g, g, g, 4000000000, 4000000000, 'oidc', 'test', '127.0.0.1', 'sub-' || (g % 200 + 1), \
           NULL, false, 'device', 'linux', g, \
           CASE WHEN g % 10 < 9 THEN g END, CASE WHEN g % 10 < 9 THEN 'revoked' END \
         FROM generate_series(1, 4000) g; \
         ANALYZE accounts; ANALYZE devices; ANALYZE sessions",
    )
    .await
    .unwrap();
}

/// A registry on a fresh Postgres database seeded by [`seed_accounts_with_mostly_revoked_sessions`],
/// and a connection that plans as the registry does ([`plan_as_the_registry`]).
async fn seeded_as_the_registry() -> (TestIdp, TestRegistry, sqlx::PgConnection) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let mut db = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    seed_accounts_with_mostly_revoked_sessions(&mut db).await;
    plan_as_the_registry(&mut db).await;
    (idp, reg, db)
}

/// Asserts that the scan on `table` in `plan` (of statement `name`) finds its rows by an index
/// condition holding one of `conditions`, not by filtering.
fn assert_found_by(plan: &str, name: &str, table: &str, conditions: &[&str]) {
    let found_by = scan_condition(plan, table)
        .unwrap_or_else(|| panic!("{name} reads{table} with no index condition:\n{plan}"));
    assert!(
        conditions.iter().any(|c| found_by.contains(c)),
        "{name} filters{table} rather than finding its rows by any of {conditions:?}:\n{plan}"
    );
}

/// `GET /v1/sessions` and the revokes by scope read the account's sessions. Revoked ones stay
/// for the audit window (30 days), so an account that signs in and out all day (a CI runner, the
/// soak's users) piles them up: reading them all made each list slower by the minute (the
/// 20-minute soak of 2026-12-04: over 200 ms per list by minute 15, 6,039 such statements in the
/// Postgres log, the soak falling behind). The statement reads the unrevoked ones alone: the
/// index holds the revocation time, and `revoked_at IS NULL` is its condition.
#[tokio::test]
async fn the_account_session_list_reads_only_unrevoked_sessions_by_index() {
    use session_registry::store::sql;
    let (_idp, _reg, mut db) = seeded_as_the_registry().await;
    let plan = plan_of(
        &mut db,
        "ACCOUNT_SESSIONS",
        sql::ACCOUNT_SESSIONS,
        "('acme', 'acct-7')",
    )
    .await;
    assert!(
        !plan.contains("Seq Scan"),
        "ACCOUNT_SESSIONS scans a whole table:\n{plan}"
    );
    // By the account, and its revoked sessions left out by the index, not read and then dropped.
    for condition in ["account_id", "revoked_at IS NULL"] {
        assert_found_by(&plan, "ACCOUNT_SESSIONS", " on sessions s", &[condition]);
    }
}

/// The admin listing pages through a tenant's sessions (the soak's audit: 1,000 a page). One
/// statement with optional filters (`CAST($n AS TEXT) IS NULL OR …`) got a generic plan that
/// guessed one row, scanned the sessions and looped over accounts and devices for each: 4–9 s a
/// page at 25,000 sessions in the soak of 2026-12-04. Each combination of filters has a statement
/// of its own, whose generic plan — the one the driver's prepared statement ends up with — finds
/// the page by index: the cursor, or the account, is the sessions scan's index condition.
#[tokio::test]
async fn each_admin_listing_finds_its_page_by_index_in_its_generic_plan() {
    use session_registry::store::sql;
    let (_idp, _reg, mut db) = seeded_as_the_registry().await;
    for (name, statement, args, conditions) in [
        (
            "ADMIN_SESSIONS",
            sql::ADMIN_SESSIONS,
            "('acme', 'sess-100', 1000::bigint)",
            &["id >"][..],
        ),
        (
            "ADMIN_SESSIONS_OF_ACCOUNT",
            sql::ADMIN_SESSIONS_OF_ACCOUNT,
            "('acme', '', 1000::bigint, 'acct-7')",
            &["account_id ="][..],
        ),
        (
            "ADMIN_SESSIONS_ON_DEVICE",
            sql::ADMIN_SESSIONS_ON_DEVICE,
            "('acme', 'sess-100', 1000::bigint, 'dev-7')",
            // By the cursor, or from the devices of that id to their accounts' sessions.
            &["id >", "account_id ="][..],
        ),
        (
            "ADMIN_SESSIONS_OF_ACCOUNT_ON_DEVICE",
            sql::ADMIN_SESSIONS_OF_ACCOUNT_ON_DEVICE,
            "('acme', '', 1000::bigint, 'acct-7', 'dev-7')",
            &["account_id ="][..],
        ),
    ] {
        let plan = plan_of(&mut db, name, statement, args).await;
        assert_found_by(&plan, name, " on sessions s", conditions);
    }
}

/// A back-channel logout ends the sessions of one IdP session (`sid`) or of one person (`sub`).
/// One statement served both with `(CAST($3 AS TEXT) IS NOT NULL AND idp_sid = $3) OR
/// (CAST($3 AS TEXT) IS NULL AND subject = $4)`: its generic plan could use no index and read
/// every session of the tenant per logout. Each kind has its statement, found by its index.
#[tokio::test]
async fn each_back_channel_logout_finds_its_sessions_by_index_in_its_generic_plan() {
    use session_registry::store::sql;
    let (_idp, _reg, mut db) = seeded_as_the_registry().await;
    for (name, statement, args, condition) in [
        (
            "END_SESSIONS_FOR_IDP_SESSION_LOGOUT",
            sql::END_SESSIONS_FOR_IDP_SESSION_LOGOUT,
            "('acme', 'https://idp.example/acme', 'sid-7', 5::bigint)",
            "idp_sid =",
        ),
        (
            "END_SESSIONS_FOR_SUBJECT_LOGOUT",
            sql::END_SESSIONS_FOR_SUBJECT_LOGOUT,
            "('acme', 'https://idp.example/acme', 'sub-7', 5::bigint)",
            "account_id =",
        ),
    ] {
        let plan = plan_of(&mut db, name, statement, args).await;
        assert_found_by(&plan, name, " on sessions", &[condition]);
    }
    // The person's account by its unique key, not each of the issuer's accounts in turn.
    let plan = plan_of(
        &mut db,
        "SUBJECT_LOGOUT_ACCOUNT",
        sql::END_SESSIONS_FOR_SUBJECT_LOGOUT,
        "('acme', 'https://idp.example/acme', 'sub-7', 5::bigint)",
    )
    .await;
    assert_found_by(
        &plan,
        "SUBJECT_LOGOUT_ACCOUNT",
        " on accounts",
        &["subject ="],
    );
}

#[tokio::test]
async fn metrics_tell_session_cache_hits_from_the_reasons_for_a_database_read() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (token, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let look = |metrics: &str, outcome: &str| -> u64 {
        let prefix = format!("lanyard_registry_session_cache_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse().unwrap())
    };
    async fn heartbeat_of(reg: &TestRegistry, token: &str) {
        let (status, body, _) = reg.authenticate(json!({ "session_token": token })).await;
        assert_eq!(status, 200, "{body}");
    }
    let heartbeat = || heartbeat_of(&reg, &token);
    let before = reg.metrics().await;
    heartbeat().await;
    let first = reg.metrics().await;
    assert_eq!(
        look(&first, "absent") - look(&before, "absent"),
        1,
        "the first heartbeat (the sign-in does not fill the cache): {first}"
    );
    // The sign-in's own event travels the feed asynchronously: arriving after that read, it
    // marks the account changed and the next heartbeat reads again (the safe way round). Once
    // it has arrived, heartbeats are answered from memory.
    let mut warm = first.clone();
    for _ in 0..100 {
        heartbeat().await;
        let now = reg.metrics().await;
        let hit = look(&now, "hit") > look(&warm, "hit");
        warm = now;
        if hit {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        look(&warm, "hit") > look(&first, "hit"),
        "no heartbeat was answered from memory: {warm}"
    );
    for _ in 0..2 {
        heartbeat().await;
    }
    let hits = reg.metrics().await;
    assert_eq!(
        look(&hits, "hit") - look(&warm, "hit"),
        2,
        "two heartbeats, both from memory: {hits}"
    );
    assert_eq!(look(&hits, "changed"), look(&warm, "changed"));
    // Past the re-check bound: read again.
    reg.advance(session_registry::service::SESSION_RECHECK);
    heartbeat().await;
    let after = reg.metrics().await;
    assert_eq!(
        look(&after, "recheck") - look(&hits, "recheck"),
        1,
        "the heartbeat a minute later: {after}"
    );
    assert_eq!(look(&after, "hit"), look(&hits, "hit"));
}

/// A sign-in writes only the copies on its account's sessions that differ: with nothing to
/// change it takes no lock on them. It used to rewrite every session of the account while
/// holding the account's row, the opposite order of a revoke (session row, then the account's
/// event number): the soak met the deadlock. Here a transaction holds one of the account's
/// session rows, as a revoke in flight would, and a new sign-in of the same account still
/// completes; then that transaction takes the account's row, as the revoke goes on to do, and
/// commits (no deadlock).
#[tokio::test]
async fn a_sign_in_does_not_wait_for_a_revoke_in_flight_on_another_session_of_its_account() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (_, laptop) = reg.device(&idp, "acme", "alice", "laptop").await;
    let laptop_id = laptop["session"]["session_id"].as_str().unwrap().to_owned();
    let account_id = laptop["session"]["account_id"].as_str().unwrap().to_owned();

    let mut revoker = sqlx::PgConnection::connect(&reg.database_url)
        .await
        .unwrap();
    revoker.execute("BEGIN").await.unwrap();
    sqlx::query("UPDATE sessions SET revoked_reason = revoked_reason WHERE id = $1")
        .bind(&laptop_id)
        .execute(&mut revoker)
        .await
        .unwrap();

    let sign_in = reg.device(&idp, "acme", "alice", "phone");
    let (_, phone) = tokio::time::timeout(std::time::Duration::from_secs(30), sign_in)
        .await
        .expect("the sign-in completes while another session of the account is locked");
    assert_eq!(phone["session"]["account_id"], account_id.as_str());

    sqlx::query("UPDATE accounts SET event_seq = event_seq WHERE id = $1")
        .bind(&account_id)
        .execute(&mut revoker)
        .await
        .expect("the revoke's next step takes the account's row: no deadlock");
    revoker.execute("COMMIT").await.unwrap();
    let (status, body, _) = reg
        .authenticate(
            json!({ "session_token": reg.device(&idp, "acme", "alice", "desktop").await.0 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A heartbeat answered from the session cache does not wait for the database when its tenant's
/// settings come due (ten seconds in memory): one read of them starts in the background, and
/// every request goes on with the settings it has until that read lands. Before, the request
/// that found them due read them itself, so a database or pool that stalled held that heartbeat
/// — past the pool's 3 s, answered 503 "database unavailable" (seen under load on 2 cores).
#[tokio::test]
async fn a_heartbeat_does_not_wait_for_its_tenants_settings_to_be_read_again() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (token, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let heartbeat = json!({ "session_token": token });
    assert_eq!(reg.authenticate(heartbeat.clone()).await.0, 200);

    // Every read of the tenants table waits behind this lock while the test holds it.
    let mut locker = lock_table(&reg.database_url, "tenants", "ACCESS EXCLUSIVE").await;
    // The tenant's settings come due by the real clock (the cache counts with Instant).
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let reg_ref = &reg;
    let heartbeats = async {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(reg_ref.authenticate(heartbeat.clone()).await.0);
        }
        statuses
    };
    // A bound on the wait, not a speed: blocked behind the lock they would never answer.
    let statuses = tokio::time::timeout(std::time::Duration::from_secs(30), heartbeats).await;

    // The settings change while the read in the background waits: a one-second idle timeout.
    locker
        .execute("UPDATE tenants SET idle_timeout_secs = 1 WHERE slug = 'acme'")
        .await
        .unwrap();
    locker.execute("COMMIT").await.unwrap();
    let statuses = statuses.expect("a heartbeat waited behind the lock on the tenants table");
    assert_eq!(statuses, [200, 200, 200]);

    // The read in the background lands: the new idle timeout applies (two seconds idle).
    reg.advance(2);
    let mut last = (0, json!(null));
    for _ in 0..100 {
        let (status, body, _) = reg.authenticate(heartbeat.clone()).await;
        last = (status, body);
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, 401, "{}", last.1);
    assert!(last.1.to_string().contains("idle"), "{}", last.1);
}
