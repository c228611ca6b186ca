//! Connections for the token lookup, the one statement every token authenticate runs.
//!
//! sqlx 0.8's pool pings each connection when it is returned (`Sync`, then wait for
//! `ReadyForQuery`: `sqlx-core` `pool/connection.rs`, unconditional): a second round trip per
//! statement that Postgres serves as busily as the query itself, which strace and
//! bench/registry.sh showed on the token path. This pool (deadpool, generic over sqlx's
//! `PgConnection`) hands connections out and takes them back without any round trip; a
//! connection that fails is dropped instead of returned, with every idle one (a failure is
//! almost always the server going away, which ends them all), and the statement is tried once
//! more on a fresh connection. Everything else uses the sqlx pool.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions, Executor};

use super::{Result, StoreError};

/// Connections kept for the lookup.
const MAX_SIZE: usize = 8;
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

pub(super) struct HotPool {
    pool: managed::Pool<Manager>,
}

impl HotPool {
    pub(super) fn new(opts: PgConnectOptions) -> Result<Self> {
        let pool = managed::Pool::builder(Manager { opts })
            .max_size(MAX_SIZE)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("token lookup pool: {e}")))?;
        Ok(Self { pool })
    }

    async fn get(&self) -> Result<Object<Manager>> {
        self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => StoreError::from(e),
            other => StoreError::Unavailable(format!("token lookup pool: {other}")),
        })
    }

    /// `SELECT * FROM lanyard_session_by_token($1, $2)`: the session row of a token hash.
    pub(super) async fn session_by_token(&self, tenant: &str, hash: &str) -> Result<Option<PgRow>> {
        let mut last = None;
        for _ in 0..2 {
            let mut conn = self.get().await?;
            // `fetch_all` reads the answer to its end (ReadyForQuery included), so the
            // connection goes back ready for its next statement. Zero or one row: the hash is
            // unique.
            let result = sqlx::query("SELECT * FROM lanyard_session_by_token($1, $2)")
                .bind(tenant)
                .bind(hash)
                .fetch_all(&mut *conn)
                .await;
            match result {
                Ok(rows) => return Ok(rows.into_iter().next()),
                Err(e) => {
                    drop(Object::take(conn));
                    let err = StoreError::from(e);
                    if !matches!(err, StoreError::Unavailable(_)) {
                        return Err(err);
                    }
                    tracing::debug!(error = %err, "token lookup connection failed; reconnecting");
                    self.pool.retain(|_, _| false);
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable("token lookup failed".into())))
    }
}
