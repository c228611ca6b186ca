//! The store body shared by both backends, expanded once per pool type by `impl_store!` over a
//! type that implements [`Backend`]: the seams each backend must provide, named and checked by
//! the compiler. `Backend::begin` opens every transaction (Postgres sets `lanyard.tenant` for
//! row-level security; SQLite has nothing to set); every query also filters on the tenant in SQL.
//! The statements are in `sql`.
//!
//! Why a macro and not a generic `impl<B: Backend> Store for B`: sqlx's executor, encode and
//! decode bounds for a generic database type would have to be spelled out for every column type
//! of every statement; expanding one body per concrete pool type keeps the body plain.

use super::{EventRecord, Result, SessionRecord, StoreError, TokenLookupStats};

/// What a backend provides for the shared store body.
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync {
    type Db: sqlx::Database;

    /// A transaction in which `tenant`'s rows are the ones visible and writable.
    async fn begin(&self, tenant: &str) -> Result<sqlx::Transaction<'static, Self::Db>>;

    /// A transaction with no tenant set, for the tables without row-level security (tenants,
    /// failed lookups). Every statement runs in a transaction, so that a transaction-mode
    /// pooler in front of Postgres keeps one server connection for all of a statement's
    /// round trips.
    async fn begin_plain(&self) -> Result<sqlx::Transaction<'static, Self::Db>>;

    /// Whether statements may be prepared under a name and kept (not behind a transaction
    /// pooler, whose next transaction may run on a server connection that never saw them).
    fn persistent(&self) -> bool;

    /// The session of a token hash: the hot path of every token authenticate, each backend its
    /// own way (Postgres batches concurrent lookups, see `pg_hot`).
    async fn token_session(&self, tenant: &str, hash: &str) -> Result<Option<SessionRecord>>;

    /// How the token lookups went to the database so far, where the backend batches them.
    fn lookup_stats(&self) -> Option<TokenLookupStats>;

    /// Announces an event written in `tx` to the other registry processes when `tx` commits
    /// (Postgres: NOTIFY; SQLite: a single process, nothing to announce).
    async fn notify(
        &self,
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        event: &EventRecord,
    ) -> Result<()>;

    /// Records the activity of `touches` (session id, time; each id once) in `tx`: each live
    /// session's `last_authenticated_at` and its device's `last_seen`. Postgres writes a whole
    /// batch in one statement; SQLite, local and single-process, row by row.
    async fn record_activity_in(
        &self,
        tx: &mut sqlx::Transaction<'_, Self::Db>,
        tenant: &str,
        touches: &[(String, i64)],
    ) -> Result<()>;

    /// Takes the lock named `key` until `tx` ends, so that transactions about the same thing
    /// (an IdP session: a sign-in with its ID token, its logout) run one after the other.
    /// Postgres: a transaction-level advisory lock; SQLite runs one writer at a time anyway.
    async fn lock_key(&self, tx: &mut sqlx::Transaction<'_, Self::Db>, key: &str) -> Result<()>;
}

/// Runs a write transaction again (at most three more times, after a short randomised pause) when
/// the database aborted it for a deadlock or a serialization failure: Postgres picks a victim
/// among transactions that lock rows in opposite orders (a sign-in refreshing the copies on the
/// account's sessions while a revoke of one of them waits for the account's event number), and
/// documents retrying it as the remedy. Each attempt opens its own transaction, so nothing of
/// an aborted one remains.
pub(super) async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    use rand::Rng;
    let mut tries = 0u64;
    loop {
        match attempt().await {
            Err(StoreError::Conflict(e)) if tries < 3 => {
                tries += 1;
                tracing::info!(error = %e, tries, "transaction aborted by the database; retrying");
                let pause = rand::thread_rng().gen_range(2..=10) * tries;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            other => return other,
        }
    }
}

macro_rules! impl_store {
    ($store:ident, $db:ty, $row:ty) => {
        /// A statement, prepared under a name only when `persistent` (see
        /// [`Backend::persistent`]).
        fn query(
            persistent: bool,
            statement: &str,
        ) -> sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments<'_>> {
            sqlx::query(statement).persistent(persistent)
        }

        fn session_from_row(r: &$row) -> std::result::Result<SessionRecord, sqlx::Error> {
            use sqlx::Row;
            Ok(session_record!(|name| r.try_get(name)))
        }

        fn tenant_from_row(r: &$row) -> Result<TenantRecord> {
            use sqlx::Row;
            let audiences: String = r.try_get("audiences")?;
            Ok(TenantRecord {
                slug: r.try_get("slug")?,
                issuer: r.try_get("issuer")?,
                audiences: serde_json::from_str(&audiences)
                    .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
                idle_timeout_secs: r.try_get("idle_timeout_secs")?,
                absolute_timeout_secs: r.try_get("absolute_timeout_secs")?,
                max_id_token_age_secs: r.try_get("max_id_token_age_secs")?,
                max_auth_age_secs: r.try_get("max_auth_age_secs")?,
                api_key_hash: r.try_get("api_key_hash")?,
            })
        }

        fn event_from_row(r: &$row) -> std::result::Result<EventRecord, sqlx::Error> {
            use sqlx::Row;
            Ok(EventRecord {
                id: r.try_get("id")?,
                seq: r.try_get("seq")?,
                tenant: r.try_get("tenant")?,
                account_id: r.try_get("account_id")?,
                session_id: r.try_get("session_id")?,
                kind: r.try_get("kind")?,
                at: r.try_get("at")?,
            })
        }

        /// Records a single-use credential in `tx`: [`StoreError::AlreadyUsed`] if it is there.
        async fn spend(
            persistent: bool,
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            credential: &UsedCredential,
        ) -> Result<()> {
            let inserted = query(persistent, sql::SPEND_CREDENTIAL)
                .bind(tenant)
                .bind(credential.kind)
                .bind(&credential.hash)
                .bind(credential.expires_at)
                .execute(&mut **tx)
                .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::AlreadyUsed);
            }
            Ok(())
        }

        /// Refuses an ID token of `sign_in` that a back-channel logout has ended since: its IdP
        /// session ended, or the person's sign-ins until after it was issued. Holds the IdP
        /// session's lock and then the subject's until `tx` ends (see `idp_logout_once`).
        async fn check_idp_sign_in(
            store: &$store,
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            sign_in: Option<&$crate::store::IdpSignIn>,
        ) -> Result<()> {
            let Some(sign_in) = sign_in else {
                return Ok(());
            };
            if let Some(key) = &sign_in.session {
                let ended =
                    locked_record(store, tx, tenant, $crate::store::ENDED_IDP_SESSION, key).await?;
                if ended.is_some() {
                    return Err(StoreError::IdpSessionEnded);
                }
            }
            let ended = locked_record(
                store,
                tx,
                tenant,
                $crate::store::ENDED_IDP_SUBJECT,
                &sign_in.subject,
            )
            .await?;
            match ended {
                Some(Some(at)) if sign_in.issued_at <= at => Err(StoreError::IdpSessionEnded),
                _ => Ok(()),
            }
        }

        /// Takes `key`'s lock until `tx` ends, then reads what a logout noted of it (`kind`):
        /// `None` if nothing, else the record's `ended_at`.
        async fn locked_record(
            store: &$store,
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            kind: &str,
            key: &str,
        ) -> Result<Option<Option<i64>>> {
            use sqlx::Row;
            Backend::lock_key(store, tx, key).await?;
            let row = query(store.persistent(), sql::CREDENTIAL_NOTED)
                .bind(tenant)
                .bind(kind)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
            Ok(match row {
                Some(row) => Some(row.try_get("ended_at")?),
                None => None,
            })
        }

        /// Records an event of the account, numbered after its last (see `sql::NEXT_EVENT_SEQ`),
        /// and announces it to the other processes when `tx` commits.
        #[allow(clippy::too_many_arguments)]
        async fn insert_event(
            store: &$store,
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            account_id: &str,
            session_id: &str,
            kind: &str,
            at: i64,
        ) -> Result<EventRecord> {
            use sqlx::Row;
            let seq: i64 = query(store.persistent(), sql::NEXT_EVENT_SEQ)
                .bind(tenant)
                .bind(account_id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| {
                    StoreError::Inconsistent(format!("an event of an unknown account in {tenant}"))
                })?
                .try_get("event_seq")?;
            let row = query(store.persistent(), sql::INSERT_EVENT)
                .bind(tenant)
                .bind(account_id)
                .bind(session_id)
                .bind(kind)
                .bind(at)
                .bind(seq)
                .fetch_one(&mut **tx)
                .await?;
            let event = event_from_row(&row)?;
            store.notify(tx, &event).await?;
            Ok(event)
        }

        impl $store {
            async fn create_session_once(
                &self,
                s: NewSession,
            ) -> Result<(SessionRecord, EventRecord)> {
                use sqlx::Row;
                let mut tx = Backend::begin(self, &s.tenant).await?;
                spend(self.persistent(), &mut tx, &s.tenant, &s.id_token).await?;
                check_idp_sign_in(self, &mut tx, &s.tenant, s.id_token.sign_in.as_ref()).await?;
                let new_id = random_id();
                let account = query(self.persistent(), sql::UPSERT_ACCOUNT)
                    .bind(&new_id)
                    .bind(&s.tenant)
                    .bind(&s.issuer)
                    .bind(&s.subject)
                    .bind(&s.email)
                    .bind(s.is_guest)
                    .bind(s.now)
                    .fetch_one(&mut *tx)
                    .await?;
                let account_id: String = account.try_get("id")?;
                let email: Option<String> = account.try_get("email")?;
                let is_guest: bool = account.try_get("is_guest")?;
                // The copies on the account's other sessions follow the account and the device.
                query(self.persistent(), sql::COPY_ACCOUNT_TO_SESSIONS)
                    .bind(&s.tenant)
                    .bind(&account_id)
                    .bind(&email)
                    .bind(is_guest)
                    .execute(&mut *tx)
                    .await?;
                query(self.persistent(), sql::COPY_DEVICE_TO_SESSIONS)
                    .bind(&s.tenant)
                    .bind(&account_id)
                    .bind(&s.device.id)
                    .bind(&s.device.name)
                    .bind(&s.device.platform)
                    .execute(&mut *tx)
                    .await?;
                query(self.persistent(), sql::UPSERT_DEVICE)
                    .bind(&s.tenant)
                    .bind(&account_id)
                    .bind(&s.device.id)
                    .bind(&s.device.name)
                    .bind(&s.device.platform)
                    .bind(s.now)
                    .execute(&mut *tx)
                    .await?;
                let session_id = random_id();
                query(self.persistent(), sql::INSERT_SESSION)
                    .bind(&session_id)
                    .bind(&s.tenant)
                    .bind(&account_id)
                    .bind(&s.device.id)
                    .bind(&s.token_hash)
                    .bind(&s.idp_sid)
                    .bind(s.now)
                    .bind(s.expires_at)
                    .bind(s.absolute_expires_at)
                    .bind(&s.auth_method)
                    .bind(&s.user_agent)
                    .bind(&s.ip)
                    .bind(&s.subject)
                    .bind(&email)
                    .bind(is_guest)
                    .bind(&s.device.name)
                    .bind(&s.device.platform)
                    .bind(s.auth_time)
                    .execute(&mut *tx)
                    .await?;
                let event = insert_event(
                    self,
                    &mut tx,
                    &s.tenant,
                    &account_id,
                    &session_id,
                    "created",
                    s.now,
                )
                .await?;
                let row = query(self.persistent(), sql::SESSION_BY_ID)
                    .bind(&s.tenant)
                    .bind(&session_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let record = session_from_row(&row)?;
                tx.commit().await?;
                Ok((record, event))
            }

            async fn touch_once(
                &self,
                tenant: &str,
                id: &str,
                now: i64,
                expires_at: Option<i64>,
            ) -> Result<Option<EventRecord>> {
                use sqlx::Row;
                let mut tx = Backend::begin(self, tenant).await?;
                let row = query(self.persistent(), sql::TOUCH_SESSION)
                    .bind(tenant)
                    .bind(id)
                    .bind(now)
                    .bind(expires_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                let mut event = None;
                if let Some(row) = row {
                    let account_id: String = row.try_get("account_id")?;
                    let device_id: String = row.try_get("device_id")?;
                    query(self.persistent(), sql::TOUCH_DEVICE)
                        .bind(tenant)
                        .bind(&account_id)
                        .bind(&device_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if expires_at.is_some() {
                        event = Some(
                            insert_event(self, &mut tx, tenant, &account_id, id, "extended", now)
                                .await?,
                        );
                    }
                }
                tx.commit().await?;
                Ok(event)
            }

            async fn record_activity_once(
                &self,
                tenant: &str,
                touches: &[(String, i64)],
            ) -> Result<()> {
                let mut tx = Backend::begin(self, tenant).await?;
                Backend::record_activity_in(self, &mut tx, tenant, touches).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn end_sessions_once(
                &self,
                tenant: &str,
                ids: &[String],
                reason: &str,
                now: i64,
            ) -> Result<Vec<EventRecord>> {
                use sqlx::Row;
                let mut tx = Backend::begin(self, tenant).await?;
                let mut events = Vec::new();
                for id in ids {
                    let row = query(self.persistent(), sql::END_SESSION)
                        .bind(tenant)
                        .bind(id)
                        .bind(now)
                        .bind(reason)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(row) = row {
                        let account_id: String = row.try_get("account_id")?;
                        events.push(
                            insert_event(self, &mut tx, tenant, &account_id, id, "revoked", now)
                                .await?,
                        );
                    }
                }
                tx.commit().await?;
                Ok(events)
            }
            async fn idp_logout_once(
                &self,
                tenant: &str,
                logout: &$crate::store::IdpLogout<'_>,
            ) -> Result<Vec<EventRecord>> {
                use sqlx::Row;
                let mut tx = Backend::begin(self, tenant).await?;
                spend(self.persistent(), &mut tx, tenant, logout.jti).await?;
                // Before the sessions are ended, under the lock of what ended (the IdP session,
                // else the subject): a sign-in with an ID token of it either committed first
                // (and is ended below) or waits and then finds this record (`check_idp_sign_in`).
                // What ended, its record, and the statement (each by its own index, see `sql`)
                // that ends its sessions.
                let ended = match (logout.sid, logout.subject) {
                    (Some(sid), _) => Some((
                        $crate::store::ENDED_IDP_SESSION,
                        $crate::store::idp_session_key(logout.issuer, sid),
                        sql::END_SESSIONS_FOR_IDP_SESSION_LOGOUT,
                        sid,
                    )),
                    (None, Some(sub)) => Some((
                        $crate::store::ENDED_IDP_SUBJECT,
                        $crate::store::idp_subject_key(logout.issuer, sub),
                        sql::END_SESSIONS_FOR_SUBJECT_LOGOUT,
                        sub,
                    )),
                    (None, None) => None,
                };
                if let Some((kind, key, _, _)) = &ended {
                    Backend::lock_key(self, &mut tx, key).await?;
                    query(self.persistent(), sql::NOTE_CREDENTIAL)
                        .bind(tenant)
                        .bind(*kind)
                        .bind(key)
                        .bind(logout.ended_until)
                        .bind(logout.issued_at)
                        .execute(&mut *tx)
                        .await?;
                }
                let rows = match ended {
                    Some((_, _, statement, which)) => {
                        query(self.persistent(), statement)
                            .bind(tenant)
                            .bind(logout.issuer)
                            .bind(which)
                            .bind(logout.now)
                            .fetch_all(&mut *tx)
                            .await?
                    }
                    None => Vec::new(),
                };
                let mut events = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: String = row.try_get("id")?;
                    let account_id: String = row.try_get("account_id")?;
                    events.push(
                        insert_event(
                            self,
                            &mut tx,
                            tenant,
                            &account_id,
                            &id,
                            "revoked",
                            logout.now,
                        )
                        .await?,
                    );
                }
                tx.commit().await?;
                Ok(events)
            }
            async fn set_account_registered_once(
                &self,
                tenant: &str,
                account_id: &str,
                session_id: &str,
                email: Option<&str>,
                now: i64,
            ) -> Result<Option<EventRecord>> {
                let mut tx = Backend::begin(self, tenant).await?;
                let changed = query(self.persistent(), sql::REGISTER_ACCOUNT)
                    .bind(tenant)
                    .bind(account_id)
                    .bind(email)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let event = if changed == 1 {
                    query(self.persistent(), sql::REGISTER_ACCOUNT_SESSIONS)
                        .bind(tenant)
                        .bind(account_id)
                        .bind(email)
                        .execute(&mut *tx)
                        .await?;
                    Some(
                        insert_event(
                            self, &mut tx, tenant, account_id, session_id, "upgraded", now,
                        )
                        .await?,
                    )
                } else {
                    None
                };
                tx.commit().await?;
                Ok(event)
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn token_lookup_stats(&self) -> Option<TokenLookupStats> {
                Backend::lookup_stats(self)
            }

            async fn ping(&self) -> Result<()> {
                let mut tx = Backend::begin_plain(self).await?;
                query(self.persistent(), sql::PING)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn upsert_tenant(&self, t: &TenantRecord) -> Result<()> {
                let audiences = serde_json::to_string(&t.audiences)
                    .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
                let mut tx = Backend::begin_plain(self).await?;
                query(self.persistent(), sql::UPSERT_TENANT)
                    .bind(&t.slug)
                    .bind(&t.issuer)
                    .bind(audiences)
                    .bind(t.idle_timeout_secs)
                    .bind(t.absolute_timeout_secs)
                    .bind(&t.api_key_hash)
                    .bind(0i64)
                    .bind(t.max_id_token_age_secs)
                    .bind(t.max_auth_age_secs)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn tenant(&self, slug: &str) -> Result<Option<TenantRecord>> {
                let mut tx = Backend::begin_plain(self).await?;
                let row = query(self.persistent(), sql::TENANT)
                    .bind(slug)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row.as_ref().map(tenant_from_row).transpose()
            }

            async fn tenants(&self) -> Result<Vec<TenantRecord>> {
                let mut tx = Backend::begin_plain(self).await?;
                let rows = query(self.persistent(), sql::TENANTS)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter().map(tenant_from_row).collect()
            }

            async fn create_session(&self, s: NewSession) -> Result<(SessionRecord, EventRecord)> {
                $crate::store::backend::retry_conflicts(|| self.create_session_once(s.clone()))
                    .await
            }

            async fn session_by_token_hash(
                &self,
                tenant: &str,
                hash: &str,
            ) -> Result<Option<SessionRecord>> {
                // Each backend resolves tokens its own way (Postgres: one pipelined round trip,
                // see `PgStore::token_session`).
                Backend::token_session(self, tenant, hash).await
            }

            async fn session(&self, tenant: &str, id: &str) -> Result<Option<SessionRecord>> {
                let mut tx = Backend::begin(self, tenant).await?;
                let row = query(self.persistent(), sql::SESSION_BY_ID)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.as_ref().map(session_from_row).transpose()?)
            }

            async fn touch(
                &self,
                tenant: &str,
                id: &str,
                now: i64,
                expires_at: Option<i64>,
            ) -> Result<Option<EventRecord>> {
                $crate::store::backend::retry_conflicts(|| {
                    self.touch_once(tenant, id, now, expires_at)
                })
                .await
            }

            async fn record_activity(&self, tenant: &str, touches: &[(String, i64)]) -> Result<()> {
                $crate::store::backend::retry_conflicts(|| {
                    self.record_activity_once(tenant, touches)
                })
                .await
            }

            async fn end_sessions(
                &self,
                tenant: &str,
                ids: &[String],
                reason: &str,
                now: i64,
            ) -> Result<Vec<EventRecord>> {
                $crate::store::backend::retry_conflicts(|| {
                    self.end_sessions_once(tenant, ids, reason, now)
                })
                .await
            }

            async fn unrevoked_account_sessions(
                &self,
                tenant: &str,
                account_id: &str,
            ) -> Result<Vec<SessionRecord>> {
                let mut tx = Backend::begin(self, tenant).await?;
                let rows = query(self.persistent(), sql::ACCOUNT_SESSIONS)
                    .bind(tenant)
                    .bind(account_id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows
                    .iter()
                    .map(session_from_row)
                    .collect::<std::result::Result<_, _>>()?)
            }

            async fn reauthenticate(
                &self,
                tenant: &str,
                session_id: &str,
                auth_time: i64,
                id_token: &UsedCredential,
            ) -> Result<Option<SessionRecord>> {
                let mut tx = Backend::begin(self, tenant).await?;
                spend(self.persistent(), &mut tx, tenant, id_token).await?;
                check_idp_sign_in(self, &mut tx, tenant, id_token.sign_in.as_ref()).await?;
                // auth_time only moves forward.
                query(self.persistent(), sql::RAISE_AUTH_TIME)
                    .bind(tenant)
                    .bind(session_id)
                    .bind(auth_time)
                    .execute(&mut *tx)
                    .await?;
                let row = query(self.persistent(), sql::LIVE_SESSION_BY_ID)
                    .bind(tenant)
                    .bind(session_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let record = row.as_ref().map(session_from_row).transpose()?;
                if record.is_some() {
                    tx.commit().await?;
                } else {
                    // Nothing to re-authenticate: the ID token stays unspent.
                    tx.rollback().await?;
                }
                Ok(record)
            }

            async fn idp_logout(
                &self,
                tenant: &str,
                logout: &$crate::store::IdpLogout<'_>,
            ) -> Result<Vec<EventRecord>> {
                $crate::store::backend::retry_conflicts(|| self.idp_logout_once(tenant, logout))
                    .await
            }

            async fn admin_sessions(
                &self,
                tenant: &str,
                f: &SessionFilter,
            ) -> Result<Vec<SessionRecord>> {
                let statement = match (&f.account_id, &f.device_id) {
                    (None, None) => sql::ADMIN_SESSIONS,
                    (Some(_), None) => sql::ADMIN_SESSIONS_OF_ACCOUNT,
                    (None, Some(_)) => sql::ADMIN_SESSIONS_ON_DEVICE,
                    (Some(_), Some(_)) => sql::ADMIN_SESSIONS_OF_ACCOUNT_ON_DEVICE,
                };
                // Every session id sorts after the empty string: the first page.
                let mut q = query(self.persistent(), statement)
                    .bind(tenant)
                    .bind(f.after.as_deref().unwrap_or(""))
                    .bind(f.limit);
                for filter in [&f.account_id, &f.device_id].into_iter().flatten() {
                    q = q.bind(filter.as_str());
                }
                let mut tx = Backend::begin(self, tenant).await?;
                let rows = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(rows
                    .iter()
                    .map(session_from_row)
                    .collect::<std::result::Result<_, _>>()?)
            }

            async fn latest_event_id(&self, tenant: &str, account_id: &str) -> Result<i64> {
                use sqlx::Row;
                let mut tx = Backend::begin(self, tenant).await?;
                let row = query(self.persistent(), sql::LATEST_EVENT_ID)
                    .bind(tenant)
                    .bind(account_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.try_get::<i64, _>("id")?)
            }

            async fn events_after(
                &self,
                tenant: &str,
                account_id: &str,
                after_seq: i64,
            ) -> Result<Vec<EventRecord>> {
                let mut tx = Backend::begin(self, tenant).await?;
                let rows = query(self.persistent(), sql::EVENTS_AFTER)
                    .bind(tenant)
                    .bind(account_id)
                    .bind(after_seq)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows
                    .iter()
                    .map(event_from_row)
                    .collect::<std::result::Result<_, _>>()?)
            }

            async fn revoked_since(&self, since: i64) -> Result<Vec<(String, String, i64)>> {
                use sqlx::Row;
                let mut out = Vec::new();
                for t in self.tenants().await? {
                    let mut tx = Backend::begin(self, &t.slug).await?;
                    let rows = query(self.persistent(), sql::REVOKED_SINCE)
                        .bind(&t.slug)
                        .bind(since)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    for r in rows {
                        out.push((
                            r.try_get("tenant")?,
                            r.try_get("id")?,
                            r.try_get("revoked_at")?,
                        ));
                    }
                }
                Ok(out)
            }

            async fn gc(&self, expired_before: i64, revoked_before: i64) -> Result<u64> {
                let mut total = 0;
                for t in self.tenants().await? {
                    let mut tx = Backend::begin(self, &t.slug).await?;
                    let expired = query(self.persistent(), sql::GC_EXPIRED_SESSIONS)
                        .bind(&t.slug)
                        .bind(expired_before)
                        .execute(&mut *tx)
                        .await?;
                    let revoked = query(self.persistent(), sql::GC_REVOKED_SESSIONS)
                        .bind(&t.slug)
                        .bind(revoked_before)
                        .execute(&mut *tx)
                        .await?;
                    query(self.persistent(), sql::GC_EVENTS)
                        .bind(&t.slug)
                        .bind(revoked_before)
                        .execute(&mut *tx)
                        .await?;
                    // A spent credential past its expiry would be refused as expired anyway.
                    query(self.persistent(), sql::GC_CREDENTIALS)
                        .bind(&t.slug)
                        .bind(expired_before)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    total += expired.rows_affected() + revoked.rows_affected();
                }
                // Failure windows older than a minute count nothing any more.
                let mut tx = Backend::begin_plain(self).await?;
                query(self.persistent(), sql::GC_FAILED_LOOKUPS)
                    .bind(expired_before - 60)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(total)
            }

            async fn note_failed_lookup(&self, client: &str, now: i64) -> Result<(i64, u32)> {
                use sqlx::Row;
                let mut tx = Backend::begin_plain(self).await?;
                let row = query(self.persistent(), sql::NOTE_FAILED_LOOKUP)
                    .bind(client)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                let start: i64 = row.try_get("window_start")?;
                let failures: i32 = row.try_get("failures")?;
                Ok((start, u32::try_from(failures).unwrap_or(0)))
            }

            async fn set_account_registered(
                &self,
                tenant: &str,
                account_id: &str,
                session_id: &str,
                email: Option<&str>,
                now: i64,
            ) -> Result<Option<EventRecord>> {
                $crate::store::backend::retry_conflicts(|| {
                    self.set_account_registered_once(tenant, account_id, session_id, email, now)
                })
                .await
            }
        }
    };
}

pub(crate) use impl_store;

/// A 128-bit random identifier for sessions and accounts (not a secret: the session token is).
pub fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
