//! The store body shared by both backends, expanded once per pool type by `impl_store!`.
//! `$set_tenant` runs first in every transaction (Postgres sets `lanyard.tenant` for row-level
//! security; SQLite has nothing to set); every query also filters on the tenant in SQL.

macro_rules! impl_store {
    ($store:ident, $db:ty, $row:ty, $notify:ident) => {
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
                audiences: serde_json::from_str(&audiences).map_err(|e| StoreError::Inconsistent(e.to_string()))?,
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
                tenant: r.try_get("tenant")?,
                account_id: r.try_get("account_id")?,
                session_id: r.try_get("session_id")?,
                kind: r.try_get("kind")?,
                at: r.try_get("at")?,
            })
        }

        /// Records a single-use credential in `tx`: [`StoreError::AlreadyUsed`] if it is there.
        async fn spend(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            credential: &UsedCredential,
        ) -> Result<()> {
            let inserted = sqlx::query(
                "INSERT INTO used_credentials (tenant, kind, hash, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, kind, hash) DO NOTHING",
            )
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

        async fn insert_event(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            account_id: &str,
            session_id: &str,
            kind: &str,
            at: i64,
        ) -> Result<EventRecord> {
            let row = sqlx::query(
                "INSERT INTO events (tenant, account_id, session_id, kind, at) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id, tenant, account_id, session_id, kind, at",
            )
            .bind(tenant)
            .bind(account_id)
            .bind(session_id)
            .bind(kind)
            .bind(at)
            .fetch_one(&mut **tx)
            .await?;
            let event = event_from_row(&row)?;
            $notify(tx, &event).await?;
            Ok(event)
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn token_lookup_stats(&self) -> Option<TokenLookupStats> {
                self.lookup_stats()
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn upsert_tenant(&self, t: &TenantRecord) -> Result<()> {
                let audiences = serde_json::to_string(&t.audiences).map_err(|e| StoreError::Inconsistent(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO tenants (slug, issuer, audiences, idle_timeout_secs, absolute_timeout_secs, api_key_hash, created_at, \
                     max_id_token_age_secs, max_auth_age_secs) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (slug) DO UPDATE SET issuer = excluded.issuer, audiences = excluded.audiences, \
                     idle_timeout_secs = excluded.idle_timeout_secs, absolute_timeout_secs = excluded.absolute_timeout_secs, \
                     api_key_hash = COALESCE(excluded.api_key_hash, tenants.api_key_hash), \
                     max_id_token_age_secs = excluded.max_id_token_age_secs, max_auth_age_secs = excluded.max_auth_age_secs",
                )
                .bind(&t.slug)
                .bind(&t.issuer)
                .bind(audiences)
                .bind(t.idle_timeout_secs)
                .bind(t.absolute_timeout_secs)
                .bind(&t.api_key_hash)
                .bind(0i64)
                .bind(t.max_id_token_age_secs)
                .bind(t.max_auth_age_secs)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn tenant(&self, slug: &str) -> Result<Option<TenantRecord>> {
                let row = sqlx::query("SELECT * FROM tenants WHERE slug = $1").bind(slug).fetch_optional(&self.pool).await?;
                row.as_ref().map(tenant_from_row).transpose()
            }

            async fn tenants(&self) -> Result<Vec<TenantRecord>> {
                let rows = sqlx::query("SELECT * FROM tenants ORDER BY slug").fetch_all(&self.pool).await?;
                rows.iter().map(tenant_from_row).collect()
            }

            async fn create_session(&self, s: NewSession) -> Result<(SessionRecord, EventRecord)> {
                use sqlx::Row;
                let mut tx = self.begin(&s.tenant).await?;
                spend(&mut tx, &s.tenant, &s.id_token).await?;
                let new_id = random_id();
                let account = sqlx::query(
                    "INSERT INTO accounts (id, tenant, issuer, subject, email, is_guest, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, issuer, subject) DO UPDATE SET email = COALESCE(excluded.email, accounts.email), is_guest = excluded.is_guest \
                     RETURNING id, email, is_guest",
                )
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
                sqlx::query("UPDATE sessions SET email = $3, is_guest = $4 WHERE tenant = $1 AND account_id = $2")
                    .bind(&s.tenant)
                    .bind(&account_id)
                    .bind(&email)
                    .bind(is_guest)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE sessions SET device_name = $4, device_platform = $5 WHERE tenant = $1 AND account_id = $2 AND device_id = $3")
                    .bind(&s.tenant)
                    .bind(&account_id)
                    .bind(&s.device.id)
                    .bind(&s.device.name)
                    .bind(&s.device.platform)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO devices (tenant, account_id, id, name, platform, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                     ON CONFLICT (tenant, account_id, id) DO UPDATE SET name = excluded.name, platform = excluded.platform, last_seen = excluded.last_seen",
                )
                .bind(&s.tenant)
                .bind(&account_id)
                .bind(&s.device.id)
                .bind(&s.device.name)
                .bind(&s.device.platform)
                .bind(s.now)
                .execute(&mut *tx)
                .await?;
                let session_id = random_id();
                sqlx::query(
                    "INSERT INTO sessions (id, tenant, account_id, device_id, token_hash, idp_sid, created_at, last_authenticated_at, \
                     expires_at, absolute_expires_at, auth_method, user_agent, ip, subject, email, is_guest, device_name, device_platform, auth_time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
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
                let event = insert_event(&mut tx, &s.tenant, &account_id, &session_id, "created", s.now).await?;
                let row = sqlx::query(&format!("SELECT {} {} WHERE s.tenant = $1 AND s.id = $2", sql::SESSION_COLUMNS, sql::SESSION_FROM))
                    .bind(&s.tenant)
                    .bind(&session_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let record = session_from_row(&row)?;
                tx.commit().await?;
                Ok((record, event))
            }

            async fn session_by_token_hash(&self, tenant: &str, hash: &str) -> Result<Option<SessionRecord>> {
                // Each backend resolves tokens its own way (Postgres: one pipelined round trip,
                // see `PgStore::token_session`).
                self.token_session(tenant, hash).await
            }

            async fn session(&self, tenant: &str, id: &str) -> Result<Option<SessionRecord>> {
                let mut tx = self.begin(tenant).await?;
                let row = sqlx::query(&format!("SELECT {} {} WHERE s.tenant = $1 AND s.id = $2", sql::SESSION_COLUMNS, sql::SESSION_FROM))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.as_ref().map(session_from_row).transpose()?)
            }

            async fn touch(&self, tenant: &str, id: &str, now: i64, expires_at: Option<i64>) -> Result<Option<EventRecord>> {
                use sqlx::Row;
                let mut tx = self.begin(tenant).await?;
                let row = sqlx::query(
                    "UPDATE sessions SET last_authenticated_at = $3, expires_at = COALESCE($4, expires_at) \
                     WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL RETURNING account_id, device_id",
                )
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
                    sqlx::query("UPDATE devices SET last_seen = $4 WHERE tenant = $1 AND account_id = $2 AND id = $3")
                        .bind(tenant)
                        .bind(&account_id)
                        .bind(&device_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if expires_at.is_some() {
                        event = Some(insert_event(&mut tx, tenant, &account_id, id, "extended", now).await?);
                    }
                }
                tx.commit().await?;
                Ok(event)
            }

            async fn end_sessions(&self, tenant: &str, ids: &[String], reason: &str, now: i64) -> Result<Vec<EventRecord>> {
                use sqlx::Row;
                let mut tx = self.begin(tenant).await?;
                let mut events = Vec::new();
                for id in ids {
                    let row = sqlx::query(
                        "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL RETURNING account_id",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(now)
                    .bind(reason)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(row) = row {
                        let account_id: String = row.try_get("account_id")?;
                        events.push(insert_event(&mut tx, tenant, &account_id, id, "revoked", now).await?);
                    }
                }
                tx.commit().await?;
                Ok(events)
            }

            async fn account_sessions(&self, tenant: &str, account_id: &str) -> Result<Vec<SessionRecord>> {
                let mut tx = self.begin(tenant).await?;
                let rows = sqlx::query(&format!(
                    "SELECT {} {} WHERE s.tenant = $1 AND s.account_id = $2 ORDER BY s.created_at, s.id",
                    sql::SESSION_COLUMNS,
                    sql::SESSION_FROM
                ))
                .bind(tenant)
                .bind(account_id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(rows.iter().map(session_from_row).collect::<std::result::Result<_, _>>()?)
            }

            async fn reauthenticate(&self, tenant: &str, session_id: &str, auth_time: i64, id_token: &UsedCredential) -> Result<Option<SessionRecord>> {
                let mut tx = self.begin(tenant).await?;
                spend(&mut tx, tenant, id_token).await?;
                // auth_time only moves forward.
                sqlx::query(
                    "UPDATE sessions SET auth_time = $3 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL AND auth_time < $3",
                )
                .bind(tenant)
                .bind(session_id)
                .bind(auth_time)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(&format!("SELECT {} {} WHERE s.tenant = $1 AND s.id = $2 AND s.revoked_at IS NULL", sql::SESSION_COLUMNS, sql::SESSION_FROM))
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

            async fn idp_logout(&self, tenant: &str, issuer: &str, subject: Option<&str>, idp_sid: Option<&str>, jti: &UsedCredential, now: i64) -> Result<Vec<EventRecord>> {
                use sqlx::Row;
                let mut tx = self.begin(tenant).await?;
                spend(&mut tx, tenant, jti).await?;
                let rows = sqlx::query(
                    "UPDATE sessions SET revoked_at = $5, revoked_reason = 'idp_logout' \
                     WHERE tenant = $1 AND revoked_at IS NULL \
                     AND account_id IN (SELECT id FROM accounts WHERE tenant = $1 AND issuer = $2) \
                     AND (($3 IS NOT NULL AND idp_sid = $3) OR ($3 IS NULL AND subject = $4)) \
                     RETURNING id, account_id",
                )
                .bind(tenant)
                .bind(issuer)
                .bind(idp_sid)
                .bind(subject)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let mut events = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: String = row.try_get("id")?;
                    let account_id: String = row.try_get("account_id")?;
                    events.push(insert_event(&mut tx, tenant, &account_id, &id, "revoked", now).await?);
                }
                tx.commit().await?;
                Ok(events)
            }

            async fn admin_sessions(&self, tenant: &str, f: &SessionFilter) -> Result<Vec<SessionRecord>> {
                let mut tx = self.begin(tenant).await?;
                let rows = sqlx::query(&format!(
                    "SELECT {} {} WHERE s.tenant = $1 AND ($2 IS NULL OR s.account_id = $2) AND ($3 IS NULL OR s.device_id = $3) \
                     AND ($4 IS NULL OR s.id > $4) ORDER BY s.id LIMIT $5",
                    sql::SESSION_COLUMNS,
                    sql::SESSION_FROM
                ))
                .bind(tenant)
                .bind(&f.account_id)
                .bind(&f.device_id)
                .bind(&f.after)
                .bind(f.limit)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(rows.iter().map(session_from_row).collect::<std::result::Result<_, _>>()?)
            }

            async fn latest_event_id(&self, tenant: &str, account_id: &str) -> Result<i64> {
                use sqlx::Row;
                let mut tx = self.begin(tenant).await?;
                let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM events WHERE tenant = $1 AND account_id = $2")
                    .bind(tenant)
                    .bind(account_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.try_get::<i64, _>("id")?)
            }

            async fn events_after(&self, tenant: &str, account_id: &str, after_id: i64) -> Result<Vec<EventRecord>> {
                let mut tx = self.begin(tenant).await?;
                let rows = sqlx::query("SELECT * FROM events WHERE tenant = $1 AND account_id = $2 AND id > $3 ORDER BY id LIMIT 1000")
                    .bind(tenant)
                    .bind(account_id)
                    .bind(after_id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows.iter().map(event_from_row).collect::<std::result::Result<_, _>>()?)
            }

            async fn revoked_since(&self, since: i64) -> Result<Vec<(String, String)>> {
                use sqlx::Row;
                let mut out = Vec::new();
                for t in self.tenants().await? {
                    let mut tx = self.begin(&t.slug).await?;
                    let rows = sqlx::query("SELECT tenant, id FROM sessions WHERE tenant = $1 AND revoked_at >= $2")
                        .bind(&t.slug)
                        .bind(since)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    for r in rows {
                        out.push((r.try_get("tenant")?, r.try_get("id")?));
                    }
                }
                Ok(out)
            }

            async fn gc(&self, expired_before: i64, revoked_before: i64) -> Result<u64> {
                let mut total = 0;
                for t in self.tenants().await? {
                    let mut tx = self.begin(&t.slug).await?;
                    let r = sqlx::query(
                        "DELETE FROM sessions WHERE tenant = $1 AND ((revoked_at IS NULL AND expires_at < $2) OR (revoked_at IS NOT NULL AND revoked_at < $3))",
                    )
                    .bind(&t.slug)
                    .bind(expired_before)
                    .bind(revoked_before)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM events WHERE tenant = $1 AND at < $2")
                        .bind(&t.slug)
                        .bind(revoked_before)
                        .execute(&mut *tx)
                        .await?;
                    // A spent credential past its expiry would be refused as expired anyway.
                    sqlx::query("DELETE FROM used_credentials WHERE tenant = $1 AND expires_at < $2")
                        .bind(&t.slug)
                        .bind(expired_before)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    total += r.rows_affected();
                }
                Ok(total)
            }

            async fn set_account_registered(&self, tenant: &str, account_id: &str, session_id: &str, email: Option<&str>, now: i64) -> Result<Option<EventRecord>> {
                let mut tx = self.begin(tenant).await?;
                let changed = sqlx::query(
                    "UPDATE accounts SET is_guest = FALSE, email = COALESCE($3, email) WHERE tenant = $1 AND id = $2 AND is_guest = TRUE",
                )
                .bind(tenant)
                .bind(account_id)
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let event = if changed == 1 {
                    sqlx::query("UPDATE sessions SET is_guest = FALSE, email = COALESCE($3, email) WHERE tenant = $1 AND account_id = $2")
                        .bind(tenant)
                        .bind(account_id)
                        .bind(email)
                        .execute(&mut *tx)
                        .await?;
                    Some(insert_event(&mut tx, tenant, account_id, session_id, "upgraded", now).await?)
                } else {
                    None
                };
                tx.commit().await?;
                Ok(event)
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
