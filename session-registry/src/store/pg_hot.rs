//! The token lookup, the one statement every token authenticate runs, with two savings over
//! running it through sqlx's pool one request at a time:
//!
//! * **No release ping.** sqlx 0.8's pool pings each connection when it is returned (`Sync`,
//!   then wait for `ReadyForQuery`: `sqlx-core` `pool/connection.rs`, unconditional): a second
//!   round trip per statement that Postgres serves as busily as the query itself (strace,
//!   bench/registry.sh). These connections live in a deadpool (generic over sqlx's
//!   `PgConnection`) that hands them out and takes them back without any round trip.
//! * **Batching.** Lookups go through one dispatcher: it takes every lookup waiting for it, groups
//!   them by tenant, and sends each group as one statement (`lanyard_sessions_by_tokens`,
//!   migration 0004) on a connection of its own, so at most [`MAX_SIZE`] statements are in flight.
//!   An idle registry sends each lookup alone at once; a busy one sends fewer, larger statements
//!   instead of queueing for connections — each round trip costs both processes a wake-up.
//!
//! A connection that fails is dropped instead of returned, with every idle one (a failure is
//! almost always the server going away, which ends them all), and the statement is tried once
//! more on a fresh connection.

use std::collections::HashMap;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions, Executor, Row};
use tokio::sync::{mpsc, oneshot};

use super::{Result, SessionRecord, StoreError};

/// Reads a session row (the store's `session_from_row`).
pub(super) type FromRow = fn(&PgRow) -> std::result::Result<SessionRecord, sqlx::Error>;

/// Connections kept for the lookup, and so statements in flight at once.
const MAX_SIZE: usize = 8;
/// Lookups sent in one statement at most.
const MAX_BATCH: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(3);

pub(super) struct Manager {
    opts: PgConnectOptions,
}

impl managed::Manager for Manager {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> std::result::Result<PgConnection, sqlx::Error> {
        let mut conn = self.opts.connect().await?;
        // Row-level security applies to the application role, as on the main pool.
        conn.execute("SET ROLE lanyard_app").await?;
        Ok(conn)
    }

    async fn recycle(&self, _conn: &mut PgConnection, _: &Metrics) -> RecycleResult<sqlx::Error> {
        Ok(())
    }
}

struct Lookup {
    tenant: String,
    hash: String,
    reply: oneshot::Sender<Result<Option<SessionRecord>>>,
}

pub(super) struct HotPool {
    lookups: mpsc::UnboundedSender<Lookup>,
}

impl HotPool {
    /// Builds the pool and starts its dispatcher on the current Tokio runtime.
    pub(super) fn new(opts: PgConnectOptions, from_row: FromRow) -> Result<Self> {
        let pool = managed::Pool::builder(Manager { opts })
            .max_size(MAX_SIZE)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("token lookup pool: {e}")))?;
        let (lookups, queue) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(pool, queue, from_row));
        Ok(Self { lookups })
    }

    /// The session of a token hash (`lanyard_sessions_by_tokens`, possibly batched with other
    /// lookups).
    pub(super) async fn session_by_token(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<SessionRecord>> {
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            tenant: tenant.to_owned(),
            hash: hash.to_owned(),
            reply,
        };
        let gone = || StoreError::Unavailable("the token lookup has stopped".into());
        self.lookups.send(lookup).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Takes every waiting lookup (up to [`MAX_BATCH`] per tenant), and sends each tenant's as one
/// statement once a connection is free. Ends when the store is dropped.
async fn dispatch(
    pool: managed::Pool<Manager>,
    mut queue: mpsc::UnboundedReceiver<Lookup>,
    from_row: FromRow,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH * 4 {
            match queue.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        let mut by_tenant: HashMap<String, Vec<Lookup>> = HashMap::new();
        for l in batch {
            by_tenant.entry(l.tenant.clone()).or_default().push(l);
        }
        for (tenant, lookups) in by_tenant {
            let mut lookups = lookups.into_iter().peekable();
            while lookups.peek().is_some() {
                let group: Vec<Lookup> = lookups.by_ref().take(MAX_BATCH).collect();
                // Waiting for a free connection here is what lets the next batch grow.
                match get(&pool).await {
                    Ok(conn) => {
                        tokio::spawn(run(pool.clone(), conn, tenant.clone(), group, from_row));
                    }
                    Err(e) => fail_all(group, &e),
                }
            }
        }
    }
}

async fn get(pool: &managed::Pool<Manager>) -> Result<Object<Manager>> {
    pool.get().await.map_err(|e| match e {
        managed::PoolError::Backend(e) => StoreError::from(e),
        other => StoreError::Unavailable(format!("token lookup pool: {other}")),
    })
}

/// Runs one tenant's group on `conn`, once more on a fresh connection if the first fails with
/// the database unavailable, and answers every lookup of the group.
/// A token asked for twice in one group is sent once and both lookups get its session.
async fn run(
    pool: managed::Pool<Manager>,
    conn: Object<Manager>,
    tenant: String,
    group: Vec<Lookup>,
    from_row: FromRow,
) {
    let mut hashes: Vec<&str> = group.iter().map(|l| l.hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut result = query(conn, &tenant, &hashes, from_row).await;
    if matches!(result, Err(StoreError::Unavailable(_))) {
        tracing::debug!("token lookup connection failed; reconnecting");
        pool.retain(|_, _| false);
        result = match get(&pool).await {
            Ok(conn) => query(conn, &tenant, &hashes, from_row).await,
            Err(e) => Err(e),
        };
    }
    let sessions = match result {
        Ok(sessions) => sessions,
        Err(e) => return fail_all(group, &e),
    };
    for l in group {
        let _ = l.reply.send(Ok(sessions.get(&l.hash).cloned()));
    }
}

/// The sessions of `hashes` in `tenant`, by token hash. A failed connection is dropped, not
/// returned.
async fn query(
    mut conn: Object<Manager>,
    tenant: &str,
    hashes: &[&str],
    from_row: FromRow,
) -> Result<HashMap<String, SessionRecord>> {
    // `fetch_all` reads the answer to its end (ReadyForQuery included), so the connection goes
    // back ready for its next statement.
    let result = sqlx::query("SELECT * FROM lanyard_sessions_by_tokens($1, $2)")
        .bind(tenant)
        .bind(hashes)
        .fetch_all(&mut *conn)
        .await;
    match result {
        Ok(rows) => {
            let mut out = HashMap::with_capacity(rows.len());
            for row in rows {
                let hash: String = row.try_get("token_hash")?;
                out.insert(hash, from_row(&row)?);
            }
            Ok(out)
        }
        Err(e) => {
            drop(Object::take(conn));
            Err(StoreError::from(e))
        }
    }
}

fn fail_all(group: Vec<Lookup>, error: &StoreError) {
    for l in group {
        let _ = l.reply.send(Err(error.clone()));
    }
}
