//! SQLite: the embedded single-machine default. Tenant isolation is in the SQL (every query
//! filters on the tenant); events fan out in process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::backend::{impl_store, random_id, Backend};
use super::*;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`)
    /// and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Query(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }
}

#[async_trait::async_trait]
impl Backend for SqliteStore {
    type Db = Sqlite;

    /// Tenant isolation is in the SQL: there is nothing to set.
    async fn begin(&self, _tenant: &str) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.pool.begin().await?)
    }

    async fn begin_plain(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.pool.begin().await?)
    }

    fn persistent(&self) -> bool {
        true
    }

    async fn token_session(&self, tenant: &str, hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(sql::SESSION_BY_TOKEN_HASH)
            .bind(tenant)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    /// One statement per lookup: nothing to report.
    fn lookup_stats(&self) -> Option<TokenLookupStats> {
        None
    }

    /// One process: events are published in process (`Registry::publish`).
    async fn notify(
        &self,
        _tx: &mut sqlx::Transaction<'_, Sqlite>,
        _event: &EventRecord,
    ) -> Result<()> {
        Ok(())
    }

    /// Nothing to take: every transaction that needs the lock writes first, and SQLite lets
    /// one writer at a time hold its write lock until it commits.
    async fn lock_key(&self, _tx: &mut sqlx::Transaction<'_, Sqlite>, _key: &str) -> Result<()> {
        Ok(())
    }

    async fn record_activity_in(
        &self,
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        tenant: &str,
        touches: &[(String, i64)],
    ) -> Result<()> {
        use sqlx::Row;
        for (id, at) in touches {
            let row = query(self.persistent(), sql::TOUCH_SESSION)
                .bind(tenant)
                .bind(id)
                .bind(*at)
                .bind(None::<i64>)
                .fetch_optional(&mut **tx)
                .await?;
            if let Some(row) = row {
                let account_id: String = row.try_get("account_id")?;
                let device_id: String = row.try_get("device_id")?;
                query(self.persistent(), sql::TOUCH_DEVICE)
                    .bind(tenant)
                    .bind(&account_id)
                    .bind(&device_id)
                    .bind(*at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}

impl_store!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow);
