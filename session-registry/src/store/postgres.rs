//! Postgres: row-level security per tenant; events announced by LISTEN/NOTIFY (one box) or
//! through the transactional outbox a relay publishes to NATS JetStream (`--events nats://…`);
//! the shared session-JWT signing keys.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Postgres};

use super::backend::{impl_store, random_id, Backend};
use super::pg_hot::HotPool;
use super::*;

/// The channel events are announced on.
pub const CHANNEL: &str = "lanyard_events";

/// How a committed event is announced to the other registry processes.
#[derive(Debug, Clone)]
pub enum Announce {
    /// `pg_notify` on [`CHANNEL`] (the default on one box).
    Notify,
    /// A row in the outbox, written in the event's transaction, for the JetStream relay.
    Outbox(crate::events::Subjects),
}

/// An outbox row claimed by a relay.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub subject: String,
    pub msg_id: String,
    pub payload: String,
}

/// A shared session-JWT signing key as stored (the private key sealed).
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub sealed_private_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub published_until: Option<i64>,
}

pub struct PgStore {
    pool: PgPool,
    /// The token lookup's own connections (see `pg_hot`).
    hot: HotPool,
    url: String,
    announce: Announce,
    /// Behind a transaction pooler: no session state (role and tenant are set per
    /// transaction, every statement runs in one) and no named prepared statements.
    pooled: bool,
}

/// How [`PgStore::connect_with`] connects.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Run the migrations first.
    pub migrate: bool,
    /// Where the migrations run, when not over the store's own URL: they hold a session-level
    /// advisory lock, which a transaction pooler would leave on whichever server connection
    /// took it.
    pub migrations_url: Option<String>,
    /// The URL is a transaction-mode pooler (PgBouncer `pool_mode = transaction`).
    pub pooled: bool,
    /// Connect on first use rather than at start (a read replica that is down at start must
    /// not keep the registry from starting).
    pub lazy: bool,
}

impl PgStore {
    /// Connects directly; with `migrate`, runs the migrations first.
    pub async fn connect(url: &str, migrate: bool) -> Result<Self> {
        Self::connect_with(
            url,
            &PgOptions {
                migrate,
                ..PgOptions::default()
            },
        )
        .await
    }

    /// Connects; with `options.migrate`, runs the migrations first (as the connecting user,
    /// over `options.migrations_url` when given). The pool's connections then act as
    /// `lanyard_app` (`SET ROLE` per connection, or `SET LOCAL ROLE` per transaction behind a
    /// pooler), so row-level security applies to every query.
    pub async fn connect_with(url: &str, options: &PgOptions) -> Result<Self> {
        let parse = |url: &str| -> Result<PgConnectOptions> {
            url.parse()
                .map_err(|e: sqlx::Error| StoreError::Unavailable(e.to_string()))
        };
        let opts = parse(url)?;
        if options.migrate {
            let owner = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(match &options.migrations_url {
                    Some(direct) => parse(direct)?,
                    None => opts.clone(),
                })
                .await?;
            sqlx::migrate!("migrations/postgres")
                .run(&owner)
                .await
                .map_err(|e| StoreError::Query(format!("migrations: {e}")))?;
            owner.close().await;
        }
        let hot = HotPool::new(url, options.pooled)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3));
        let (pool, opts) = if options.pooled {
            // No session state: the role is set per transaction (`begin_plain`), and statements
            // are sent unnamed (`persistent(false)`), so sqlx's per-connection statement cache
            // would only hold names the next server connection does not know.
            (pool, opts.statement_cache_capacity(0))
        } else {
            let pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET ROLE lanyard_app").await?;
                    Ok(())
                })
            });
            (pool, opts)
        };
        let pool = if options.lazy {
            pool.connect_lazy_with(opts)
        } else {
            pool.connect_with(opts).await?
        };
        Ok(Self {
            pool,
            hot,
            url: url.to_owned(),
            announce: Announce::Notify,
            pooled: options.pooled,
        })
    }

    /// A transaction with no tenant set (the tables without row-level security: tenants,
    /// signing keys, the outbox, failed lookups); as `lanyard_app` behind a pooler too.
    async fn begin_plain(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        if self.pooled {
            query(false, sql::SET_LOCAL_ROLE).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// The one row of `statement` (no parameters), in a transaction of its own.
    async fn plain_row(&self, statement: &str) -> Result<sqlx::postgres::PgRow> {
        let mut tx = self.begin_plain().await?;
        let row = query(!self.pooled, statement).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The primary's current WAL insert position (`pg_current_wal_insert_lsn`), as a number.
    pub async fn wal_lsn(&self) -> Result<u64> {
        use sqlx::Row;
        let row = self.plain_row(sql::CURRENT_WAL_LSN).await?;
        parse_lsn(&row.try_get::<String, _>("lsn")?)
    }

    /// How far a standby has replayed the primary's WAL (`pg_last_wal_replay_lsn`); `None` on a
    /// server that is not a standby.
    pub async fn replayed_lsn(&self) -> Result<Option<u64>> {
        use sqlx::Row;
        let row = self.plain_row(sql::REPLAYED_WAL_LSN).await?;
        row.try_get::<Option<String>, _>("lsn")?
            .map(|lsn| parse_lsn(&lsn))
            .transpose()
    }

    /// Announces events through `announce` from now on (set before serving).
    pub fn with_announce(mut self, announce: Announce) -> Self {
        self.announce = announce;
        self
    }

    /// Claims up to `limit` of the oldest outbox rows no other relay holds; they stay claimed
    /// until the returned transaction ends ([`PgStore::outbox_done`] deletes them and commits;
    /// dropping it leaves them for the next attempt).
    pub async fn claim_outbox(
        &self,
        limit: i64,
    ) -> Result<(sqlx::Transaction<'static, Postgres>, Vec<OutboxRow>)> {
        use sqlx::Row;
        let mut tx = self.begin_plain().await?;
        let rows = query(!self.pooled, sql::CLAIM_OUTBOX)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    msg_id: r.try_get("msg_id")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        Ok((tx, rows))
    }

    /// Deletes published outbox rows and commits the claim.
    pub async fn outbox_done(
        &self,
        mut tx: sqlx::Transaction<'static, Postgres>,
        ids: &[i64],
    ) -> Result<()> {
        query(!self.pooled, sql::DELETE_OUTBOX)
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The shared signing keys still published at `now`, oldest first.
    pub async fn signing_keys(&self, now: i64) -> Result<Vec<StoredKey>> {
        use sqlx::Row;
        let mut tx = self.begin_plain().await?;
        let rows = query(!self.pooled, sql::SIGNING_KEYS)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.try_get("kid")?,
                    alg: r.try_get("alg")?,
                    sealed_private_key: r.try_get("sealed_private_key")?,
                    created_at: r.try_get("created_at")?,
                    retired_at: r.try_get("retired_at")?,
                    published_until: r.try_get("published_until")?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Stores `key` as the one that signs from now on, retiring the others (published until
    /// `published_until`), one rotation at a time across processes. With `only_if_none`, stores
    /// it only when no key signs yet (the first process to start makes the first key); answers
    /// whether it was stored. In NATS mode the rotation is announced through the outbox.
    pub async fn put_signing_key(
        &self,
        key: &StoredKey,
        published_until: i64,
        only_if_none: bool,
    ) -> Result<bool> {
        let mut tx = self.begin_plain().await?;
        query(!self.pooled, sql::LOCK_SIGNING_KEYS)
            .execute(&mut *tx)
            .await?;
        if only_if_none {
            let live = query(!self.pooled, sql::SIGNING_KEYS)
                .bind(key.created_at)
                .fetch_all(&mut *tx)
                .await?;
            if !live.is_empty() {
                tx.commit().await?;
                return Ok(false);
            }
        }
        query(!self.pooled, sql::INSERT_SIGNING_KEY)
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.sealed_private_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        query(!self.pooled, sql::RETIRE_SIGNING_KEYS)
            .bind(&key.kid)
            .bind(key.created_at)
            .bind(published_until)
            .execute(&mut *tx)
            .await?;
        query(!self.pooled, sql::GC_SIGNING_KEYS)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        if let Announce::Outbox(subjects) = &self.announce {
            query(!self.pooled, sql::INSERT_OUTBOX)
                .bind(subjects.keys())
                .bind(format!("key-{}", key.kid))
                .bind(&key.kid)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
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
        let row = self.plain_row(sql::LAST_EVENT_ID).await?;
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
                let rows = query(!self.pooled, sql::TENANT_EVENTS_AFTER)
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

    fn persistent(&self) -> bool {
        !self.pooled
    }

    async fn begin_plain(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        PgStore::begin_plain(self).await
    }

    async fn begin(&self, tenant: &str) -> Result<sqlx::Transaction<'static, Postgres>> {
        let mut tx = PgStore::begin_plain(self).await?;
        query(!self.pooled, sql::SET_TRANSACTION_TENANT)
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

    async fn notify(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        event: &EventRecord,
    ) -> Result<()> {
        let payload =
            serde_json::to_string(event).map_err(|e| StoreError::Inconsistent(e.to_string()))?;
        match &self.announce {
            Announce::Notify => {
                query(!self.pooled, sql::NOTIFY)
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&mut **tx)
                    .await?;
            }
            Announce::Outbox(subjects) => {
                query(!self.pooled, sql::INSERT_OUTBOX)
                    .bind(subjects.event(&event.tenant, &event.account_id))
                    // JetStream drops a second publish of the same id (a relay that died between
                    // publishing and deleting the row).
                    .bind(format!("ev-{}", event.id))
                    .bind(payload)
                    .bind(event.at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// One statement for the whole batch (arrays of ids and times): a batch of 512 heartbeats'
    /// writes was 1,024 round trips in one transaction, which under load held every heartbeat
    /// waiting on it for a second and more (bench/registry.sh's token run).
    async fn record_activity_in(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        tenant: &str,
        touches: &[(String, i64)],
    ) -> Result<()> {
        let (ids, ats): (Vec<&str>, Vec<i64>) =
            touches.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        query(!self.pooled, sql::TOUCH_SESSIONS_BATCH)
            .bind(tenant)
            .bind(ids)
            .bind(ats)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn lock_key(&self, tx: &mut sqlx::Transaction<'_, Postgres>, key: &str) -> Result<()> {
        query(!self.pooled, sql::LOCK_KEY)
            .bind(key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A WAL position as Postgres prints it (`16/B374D848`: the high and low 32 bits in hex).
fn parse_lsn(text: &str) -> Result<u64> {
    let bad = || StoreError::Inconsistent(format!("not a WAL position: {text}"));
    let (high, low) = text.split_once('/').ok_or_else(bad)?;
    let high = u64::from_str_radix(high, 16).map_err(|_| bad())?;
    let low = u64::from_str_radix(low, 16).map_err(|_| bad())?;
    if high > u64::from(u32::MAX) || low > u64::from(u32::MAX) {
        return Err(bad());
    }
    Ok(high << 32 | low)
}

impl_store!(PgStore, Postgres, sqlx::postgres::PgRow);

#[cfg(test)]
mod tests {
    use super::parse_lsn;

    #[test]
    fn a_wal_position_reads_as_its_two_halves() {
        assert_eq!(parse_lsn("0/0").unwrap(), 0);
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert!(parse_lsn("0/1").unwrap() > parse_lsn("0/0").unwrap());
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        for bad in ["", "16", "x/1", "1/", "100000000/0"] {
            assert!(parse_lsn(bad).is_err(), "{bad}");
        }
    }
}
