//! Postgres: row-level security per tenant and LISTEN/NOTIFY fan-out of events.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Postgres};

use super::backend::{impl_store, random_id, Backend};
use super::pg_hot::HotPool;
use super::*;

/// The channel events are announced on.
pub const CHANNEL: &str = "lanyard_events";

pub struct PgStore {
    pool: PgPool,
    /// The token lookup's own connections (see `pg_hot`).
    hot: HotPool,
    url: String,
}

impl PgStore {
    /// Connects; with `migrate`, runs the migrations first (as the connecting user). The pool's
    /// connections then `SET ROLE lanyard_app`, so row-level security applies to every query.
    pub async fn connect(url: &str, migrate: bool) -> Result<Self> {
        let opts: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Unavailable(e.to_string()))?;
        if migrate {
            let owner = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await?;
            sqlx::migrate!("migrations/postgres")
                .run(&owner)
                .await
                .map_err(|e| StoreError::Query(format!("migrations: {e}")))?;
            owner.close().await;
        }
        let hot = HotPool::new(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET ROLE lanyard_app").await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Self {
            pool,
            hot,
            url: url.to_owned(),
        })
    }

    /// A connection of its own that `LISTEN`s on the events channel (the event relay's). It
    /// does not reconnect by itself: a silent reconnect inside sqlx would skip the relay's
    /// replay of what was committed meanwhile, so every loss surfaces to the relay instead.
    pub async fn listener(&self) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// The newest event id handed out so far (0 before the first): where a fresh event relay
    /// starts, since anything later is announced to it.
    pub async fn last_event_id(&self) -> Result<i64> {
        use sqlx::Row;
        let row = sqlx::query(sql::LAST_EVENT_ID)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    /// Every tenant's events after `after_id`, oldest first: what the event relay missed while it
    /// had no connection.
    pub async fn events_after_id(&self, after_id: i64) -> Result<Vec<EventRecord>> {
        const PAGE: i64 = 1000;
        let mut out = Vec::new();
        for t in self.tenants().await? {
            let mut after = after_id;
            loop {
                let mut tx = Backend::begin(self, &t.slug).await?;
                let rows = sqlx::query(sql::TENANT_EVENTS_AFTER)
                    .bind(&t.slug)
                    .bind(after)
                    .bind(PAGE)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let page = rows
                    .iter()
                    .map(event_from_row)
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let full = page.len() as i64 == PAGE;
                after = page.last().map_or(after, |e| e.id);
                out.extend(page);
                if !full {
                    break;
                }
            }
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Backend for PgStore {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self, tenant: &str) -> Result<sqlx::Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::SET_TRANSACTION_TENANT)
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Batched with the lookups of concurrent requests on this thread's lookup connection
    /// (`pg_hot`), with row-level security as everywhere else. This is the hot path of every
    /// token authenticate (bench/registry.sh).
    async fn token_session(&self, tenant: &str, hash: &str) -> Result<Option<SessionRecord>> {
        self.hot.session_by_token(tenant, hash).await
    }

    fn lookup_stats(&self) -> Option<TokenLookupStats> {
        Some(self.hot.stats())
    }

    async fn notify(tx: &mut sqlx::Transaction<'_, Postgres>, event: &EventRecord) -> Result<()> {
        let payload =
            serde_json::to_string(event).map_err(|e| StoreError::Inconsistent(e.to_string()))?;
        sqlx::query(sql::NOTIFY)
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl_store!(PgStore, Postgres, sqlx::postgres::PgRow);
