//! Connections for the token lookup, the one statement every token authenticate runs.
//!
//! The lookup goes through `tokio-postgres` rather than sqlx, for two things sqlx's pool does
//! not do. It batches: the lookups that concurrent requests start while one is in flight go
//! together as the next statement (`token_hash = ANY($2)`, one per tenant in the batch), which
//! Postgres serves for little more than a single lookup; a statement is a full round trip with
//! wake-ups on both sides, and on a busy registry that, not the index lookup, is most of what a
//! lookup costs. And it pipelines: the statements of a batch go out back to back on one
//! connection, with no wait for each answer. sqlx's pool serves one statement per connection at
//! a time and pings every connection it gets back (a second round trip per statement).
//! bench/registry.sh measures the difference.
//!
//! Row-level security applies as everywhere else: the connection runs as `lanyard_app`, and
//! its `lanyard.tenant` is set at session level to the tenant of the statement that follows it,
//! when that differs from the one set before (the only statements on the connection are the
//! driver's, one batch at a time, in order). The lookup also names the tenant itself, so a
//! wrong setting could only hide rows, never show another tenant's. A plain statement costs
//! Postgres about half what the PL/pgSQL function that set the tenant per statement did
//! (migration 0004 drops it).
//!
//! Each thread that looks tokens up has its own connection and batch queue: an actix worker (a
//! single-threaded runtime) sends all its requests' lookups on one connection whose I/O task
//! runs on the same thread, so no lookup wakes another thread. A lookup waits at most for the
//! batch in flight and its own: no timer holds a batch back. A connection that fails (almost
//! always the server going away) is replaced and the batch tried once more on the fresh one;
//! after any other error it is replaced too, so its tenant setting is never in doubt.
//! Everything else uses the sqlx pool.
//!
//! Behind a transaction-mode pooler (`--database-pooler transaction`) a server connection is
//! ours for one transaction only, so nothing is kept on it: each batch is one transaction that
//! sets the role and each tenant with `SET LOCAL` / `set_config(…, true)`, and the statements
//! go unnamed (`query_typed`: parse, bind and execute in one message sequence), one after the
//! other. Slower, and correct on whichever server connection the pooler lends.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thread_local::ThreadLocal;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::{Result, SessionRecord, StoreError, TokenLookupStats};

/// Connecting (socket, start-up, `SET ROLE`, preparing), and waiting for one batch's answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a lookup waits for its answer: the batch in flight and its own, each of which may
/// connect and look up twice.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(45);
/// Most hashes in one statement; more waiting lookups go in the next.
const MAX_BATCH: usize = 64;
/// Same contract as every backend's token lookup, for several hashes of one tenant: the
/// session rows of those token hashes, each with its hash. Sessions carry copies of their
/// account's and device's fields (migration 0003), so this reads one row of one table per hash.
pub(crate) const LOOKUP: &str =
    "SELECT s.token_hash, s.id, s.tenant, s.account_id, s.subject, s.email, \
    s.is_guest, s.device_id, s.device_name, s.device_platform, \
    s.last_authenticated_at AS device_last_seen, s.idp_sid, s.created_at, \
    s.last_authenticated_at, s.expires_at, s.absolute_expires_at, s.revoked_at, \
    s.revoked_reason, s.auth_method, s.auth_time, s.user_agent, s.ip \
    FROM sessions s WHERE s.tenant = $1 AND s.token_hash = ANY($2)";
/// The row-level-security tenant, for the session.
pub(crate) const SET_TENANT: &str = "SELECT set_config('lanyard.tenant', $1, false)";
/// Behind a transaction pooler: the role and the tenant for this transaction only.
const BEGIN_POOLED: &str = "BEGIN; SET LOCAL ROLE lanyard_app";
const SET_TRANSACTION_TENANT: &str = "SELECT set_config('lanyard.tenant', $1, true)";

/// The statements a connection runs: prepared once (direct), or sent unnamed every time
/// (behind a transaction pooler).
enum Statements {
    Prepared {
        lookup: Statement,
        set_tenant: Statement,
    },
    Unnamed,
}

/// One connection with its statements.
struct Conn {
    client: Client,
    statements: Statements,
    /// The `lanyard.tenant` set on the connection (none at first: row-level security then
    /// shows no rows at all).
    tenant: Mutex<Option<String>>,
}

/// A lookup waiting for its batch.
struct Waiter {
    tenant: String,
    hash: String,
    reply: oneshot::Sender<Result<Option<SessionRecord>>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    /// A batch is being sent (its driver task then takes the waiting ones when it is answered).
    driving: bool,
}

/// A thread's connection and batch queue.
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Arc<Conn>>>,
    queue: Mutex<Queue>,
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<Conn>> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|c| !c.client.is_closed())
            .cloned()
    }

    /// Drops the connection if it is still `failed`.
    fn forget(&self, failed: &Arc<Conn>) {
        let mut current = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *current = None;
        }
    }
}

/// Counts for `/metrics`: how many lookups, in how many statements.
#[derive(Default)]
struct Counters {
    asked: AtomicU64,
    lookups: AtomicU64,
    statements: AtomicU64,
}

pub(super) struct HotPool {
    config: Arc<Config>,
    /// Behind a transaction pooler (see the module's documentation).
    pooled: bool,
    counters: Arc<Counters>,
    /// Dropped with the pool: the connections close when the store does.
    slots: ThreadLocal<Arc<Slot>>,
}

impl HotPool {
    /// Connects lazily, on a thread's first lookup; `url` is the registry's Postgres URL.
    pub(super) fn new(url: &str, pooled: bool) -> Result<Self> {
        let mut config = Config::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("token lookup connection: {e}")))?;
        config.connect_timeout(TIMEOUT);
        config.application_name("session-registry token lookup");
        Ok(Self {
            config: Arc::new(config),
            pooled,
            counters: Arc::default(),
            slots: ThreadLocal::new(),
        })
    }

    pub(super) fn stats(&self) -> TokenLookupStats {
        TokenLookupStats {
            asked: self.counters.asked.load(Ordering::Relaxed),
            lookups: self.counters.lookups.load(Ordering::Relaxed),
            statements: self.counters.statements.load(Ordering::Relaxed),
        }
    }

    /// The session row of a token hash in `tenant`, if any.
    pub(super) async fn session_by_token(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<SessionRecord>> {
        let slot = self.slots.get_or_default();
        let (reply, answer) = oneshot::channel();
        let start_driver = {
            let mut queue = slot.queue();
            queue.waiting.push(Waiter {
                tenant: tenant.to_owned(),
                hash: hash.to_owned(),
                reply,
            });
            self.counters.asked.fetch_add(1, Ordering::Relaxed);
            !std::mem::replace(&mut queue.driving, true)
        };
        if start_driver {
            // Spawned, not awaited here: the driver outlives this request while others wait.
            // It runs after the tasks already ready on this thread, whose lookups join the batch.
            // The guard exists before the task does, so a task dropped before its first poll (a
            // runtime shutting down) still hands the queue back.
            let guard = DriverGuard(Some(Arc::clone(slot)));
            tokio::spawn(drive(
                guard,
                Arc::clone(&self.config),
                self.pooled,
                Arc::clone(&self.counters),
            ));
        }
        // The driver answers or errs within a few timeouts (connect and lookup, one retry);
        // this is the backstop should it ever not.
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(StoreError::Unavailable(
                "the token lookup got no answer in time".into(),
            )),
        }
    }
}

/// Hands a slot's queue back if its driver ends, or is dropped unstarted, before it has emptied
/// the queue: the waiters left get an error and the next lookup starts a new driver.
struct DriverGuard(Option<Arc<Slot>>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let mut queue = slot.queue();
            queue.driving = false;
            for w in queue.waiting.drain(..) {
                let _ = w.reply.send(Err(stopped()));
            }
        }
    }
}

/// What a lookup gets when the task sending its batch ended without answering.
fn stopped() -> StoreError {
    StoreError::Unavailable("the token lookup stopped before answering".into())
}

/// Sends the waiting lookups as batches, one after the other, until none are left. On any end,
/// cancellation included (its runtime shutting down), the guard hands the queue back.
async fn drive(mut guard: DriverGuard, config: Arc<Config>, pooled: bool, counters: Arc<Counters>) {
    let Some(slot) = guard.0.clone() else { return };
    loop {
        let batch = {
            let mut queue = slot.queue();
            if queue.waiting.is_empty() {
                // Done, under the lock: a lookup queued after this starts the next driver.
                queue.driving = false;
                guard.0 = None;
                return;
            }
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect::<Vec<_>>()
        };
        run_batch(&slot, &config, pooled, &counters, batch).await;
    }
}

/// Looks up one batch (a statement per tenant in it, pipelined) and answers its waiters; on a
/// connection failure, once more on a fresh connection.
async fn run_batch(
    slot: &Slot,
    config: &Config,
    pooled: bool,
    counters: &Counters,
    batch: Vec<Waiter>,
) {
    let mut groups: Vec<(String, Vec<Waiter>)> = Vec::new();
    for w in batch {
        match groups.iter_mut().find(|(t, _)| *t == w.tenant) {
            Some((_, ws)) => ws.push(w),
            None => groups.push((w.tenant.clone(), vec![w])),
        }
    }
    counters.lookups.fetch_add(
        groups.iter().map(|(_, ws)| ws.len() as u64).sum(),
        Ordering::Relaxed,
    );
    counters
        .statements
        .fetch_add(groups.len() as u64, Ordering::Relaxed);
    let mut result = lookup_groups(slot, config, pooled, &groups).await;
    if let Err(StoreError::Unavailable(reason)) = &result {
        tracing::debug!(%reason, "token lookup connection failed; reconnecting");
        result = lookup_groups(slot, config, pooled, &groups).await;
    }
    match result {
        Ok(answers) => {
            for ((_, waiters), rows) in groups.into_iter().zip(answers) {
                answer(waiters, rows);
            }
        }
        Err(e) => {
            for (_, waiters) in groups {
                for w in waiters {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One statement per tenant group, each after setting its tenant where that changes, all sent
/// before the first answer is read.
async fn lookup_groups(
    slot: &Slot,
    config: &Config,
    pooled: bool,
    groups: &[(String, Vec<Waiter>)],
) -> Result<Vec<Vec<Row>>> {
    let conn = match slot.current() {
        Some(conn) => conn,
        None => {
            let conn = Arc::new(connect(config, pooled).await?);
            *slot.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&conn));
            conn
        }
    };
    let hashes: Vec<Vec<&str>> = groups
        .iter()
        .map(|(_, ws)| ws.iter().map(|w| w.hash.as_str()).collect())
        .collect();
    let (lookup, set_tenant) = match &conn.statements {
        Statements::Prepared { lookup, set_tenant } => (lookup, set_tenant),
        Statements::Unnamed => {
            let result =
                match tokio::time::timeout(TIMEOUT, lookup_in_transaction(&conn, groups, &hashes))
                    .await
                {
                    Ok(result) => result.map_err(store_error),
                    Err(_) => Err(StoreError::Unavailable(
                        "the token lookup got no answer in time".into(),
                    )),
                };
            if result.is_err() {
                // Possibly inside a transaction still: the next batch starts afresh.
                slot.forget(&conn);
            }
            return result;
        }
    };
    // (statement, parameters, whether its rows are a group's answer), in the order they run.
    let mut calls: Vec<(&Statement, Vec<&(dyn ToSql + Sync)>, bool)> = Vec::new();
    // Taken out while the batch runs: should it stop half way (cancelled), the setting on the
    // server is unknown and the next batch sets it again.
    let mut tenant = conn
        .tenant
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    for ((group_tenant, _), hashes) in groups.iter().zip(&hashes) {
        if tenant.as_deref() != Some(group_tenant.as_str()) {
            calls.push((set_tenant, vec![group_tenant], false));
            tenant = Some(group_tenant.clone());
        }
        calls.push((lookup, vec![group_tenant, hashes], true));
    }
    let queries = calls
        .iter()
        .map(|(statement, params, _)| conn.client.query(*statement, params));
    let all = futures_util::future::try_join_all(queries);
    let result = match tokio::time::timeout(TIMEOUT, all).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(StoreError::Unavailable(
            "the token lookup got no answer in time".into(),
        )),
    };
    match result {
        Ok(answers) => {
            *conn.tenant.lock().unwrap_or_else(PoisonError::into_inner) = tenant;
            Ok(calls
                .iter()
                .zip(answers)
                .filter(|((_, _, is_lookup), _)| *is_lookup)
                .map(|(_, rows)| rows)
                .collect())
        }
        Err(e) => {
            // Whatever ran before the failure, the next batch starts on a fresh connection.
            slot.forget(&conn);
            Err(e)
        }
    }
}

/// Behind a transaction pooler: the batch as one transaction, its statements unnamed, one after
/// the other (each tenant's setting must precede its lookup on the same server connection).
async fn lookup_in_transaction(
    conn: &Conn,
    groups: &[(String, Vec<Waiter>)],
    hashes: &[Vec<&str>],
) -> std::result::Result<Vec<Vec<Row>>, tokio_postgres::Error> {
    use tokio_postgres::types::Type;
    conn.client.batch_execute(BEGIN_POOLED).await?;
    let mut answers = Vec::with_capacity(groups.len());
    for ((tenant, _), hashes) in groups.iter().zip(hashes) {
        conn.client
            .query_typed(SET_TRANSACTION_TENANT, &[(tenant, Type::TEXT)])
            .await?;
        answers.push(
            conn.client
                .query_typed(LOOKUP, &[(tenant, Type::TEXT), (hashes, Type::TEXT_ARRAY)])
                .await?,
        );
    }
    conn.client.batch_execute("COMMIT").await?;
    Ok(answers)
}

/// Hands each waiter its session: the row whose hash is the one it asked for, if any. A row
/// that does not decode makes the whole group an error rather than a "not found".
fn answer(waiters: Vec<Waiter>, rows: Vec<Row>) {
    let decoded: Result<Vec<(String, SessionRecord)>> = rows
        .iter()
        .map(|row| {
            let hash = row
                .try_get("token_hash")
                .map_err(|e: tokio_postgres::Error| StoreError::Inconsistent(e.to_string()))?;
            Ok((hash, session_from_row(row)?))
        })
        .collect();
    for w in waiters {
        let result = match &decoded {
            Ok(found) => Ok(found
                .iter()
                .find(|(hash, _)| *hash == w.hash)
                .map(|(_, record)| record.clone())),
            Err(e) => Err(e.clone()),
        };
        let _ = w.reply.send(result);
    }
}

/// Connects, with its I/O task on the calling thread's runtime, as `lanyard_app` (row-level
/// security applies, as on the main pool), and prepares the lookup.
async fn connect(config: &Config, pooled: bool) -> Result<Conn> {
    match tokio::time::timeout(TIMEOUT, open(config, pooled)).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(
            "the token lookup connection was not ready in time".into(),
        )),
    }
}

async fn open(config: &Config, pooled: bool) -> Result<Conn> {
    let (client, connection) = config.connect(NoTls).await.map_err(store_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "token lookup connection ended");
        }
    });
    if pooled {
        return Ok(Conn {
            client,
            statements: Statements::Unnamed,
            tenant: Mutex::new(None),
        });
    }
    client
        .batch_execute("SET ROLE lanyard_app")
        .await
        .map_err(store_error)?;
    let lookup = client.prepare(LOOKUP).await.map_err(store_error)?;
    let set_tenant = client.prepare(SET_TENANT).await.map_err(store_error)?;
    Ok(Conn {
        client,
        statements: Statements::Prepared { lookup, set_tenant },
        tenant: Mutex::new(None),
    })
}

/// Connection trouble is `Unavailable` (the caller answers 503 and may retry); anything the
/// server refused for another reason is a query error.
fn store_error(e: tokio_postgres::Error) -> StoreError {
    let unavailable = match e.code() {
        Some(code) => super::sqlstate_means_unavailable(code.code()),
        // No SQLSTATE: I/O, a closed connection, a timeout or a protocol error.
        None => true,
    };
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Query(e.to_string())
    }
}

fn session_from_row(r: &Row) -> Result<SessionRecord> {
    Ok(session_record!(|name| r.try_get(name).map_err(
        |e: tokio_postgres::Error| StoreError::Inconsistent(e.to_string())
    )))
}

/// The token lookup's statements, for the check that prepares every statement (`store::sql`).
#[cfg(test)]
pub(crate) const STATEMENTS: &[(&str, &str)] = &[
    ("LOOKUP", LOOKUP),
    ("SET_TENANT", SET_TENANT),
    ("SET_TRANSACTION_TENANT", SET_TRANSACTION_TENANT),
];
