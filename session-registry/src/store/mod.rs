//! Persistence: one [`Store`] contract, two backends — Postgres (production, with row-level
//! security per tenant and LISTEN/NOTIFY fan-out) and SQLite (the embedded single-machine
//! default). Both run the same black-box contract tests. Only this module knows the schema.
//!
//! Queries are checked at run time rather than with `query!`: the two backends share one body of
//! SQL (expanded by `impl_store!` for each pool type), which the compile-time macros cannot do
//! without two offline caches kept in step. Every query still binds its parameters.

/// A [`SessionRecord`] from a row of the session columns (`sql::session_columns!`, or the token
/// lookup's): `$get(name)` reads one column, `?` passes its error on. One list of fields for sqlx's
/// rows and tokio-postgres's.
macro_rules! session_record {
    ($get:expr) => {
        SessionRecord {
            id: $get("id")?,
            tenant: $get("tenant")?,
            account_id: $get("account_id")?,
            subject: $get("subject")?,
            email: $get("email")?,
            is_guest: $get("is_guest")?,
            device_id: $get("device_id")?,
            device_name: $get("device_name")?,
            device_platform: $get("device_platform")?,
            device_last_seen: $get("device_last_seen")?,
            idp_sid: $get("idp_sid")?,
            created_at: $get("created_at")?,
            last_authenticated_at: $get("last_authenticated_at")?,
            expires_at: $get("expires_at")?,
            absolute_expires_at: $get("absolute_expires_at")?,
            revoked_at: $get("revoked_at")?,
            revoked_reason: $get("revoked_reason")?,
            auth_method: $get("auth_method")?,
            auth_time: $get("auth_time")?,
            user_agent: $get("user_agent")?,
            ip: $get("ip")?,
        }
    };
}

pub(crate) mod backend;
mod pg_hot;
mod postgres;
pub mod sql;
mod sqlite;
#[cfg(test)]
mod statements_check;

pub use backend::random_id;
pub use postgres::{Announce, OutboxRow, PgOptions, PgStore, StoredKey};
pub use sqlite::SqliteStore;

use serde::Serialize;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(String),
    /// The database aborted the transaction to break a deadlock, or for a serialization
    /// failure (SQLSTATE 40P01, 40001): running it again is the remedy (`backend::retry_conflicts`).
    #[error(
        "the transaction was aborted by the database (deadlock or serialization failure): {0}"
    )]
    Conflict(String),
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
    /// A single-use credential (an ID token, a logout token's `jti`) was used before.
    #[error("this credential was already used")]
    AlreadyUsed,
    /// The ID token comes from a sign-in that a back-channel logout has ended since: its IdP
    /// session's, or one of the person's that ended every IdP session issued until then.
    #[error("the ID token's sign-in at the IdP has been signed out")]
    IdpSessionEnded,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| sqlstate_means_unavailable(&c)) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| c == "40P01" || c == "40001") =>
            {
                StoreError::Conflict(e.to_string())
            }
            sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            other => StoreError::Query(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Whether a Postgres SQLSTATE means the database cannot serve now (the caller answers 503 and
/// may retry) rather than that it refused the statement: 57P0x shut down or terminated, 08xxx
/// connection exceptions, 53xxx insufficient resources, 55000 "not accepting connections". The
/// one classification both Postgres clients (sqlx and the token lookup's tokio-postgres) use.
pub(crate) fn sqlstate_means_unavailable(code: &str) -> bool {
    code.starts_with("57") || code.starts_with("08") || code.starts_with("53") || code == "55000"
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TenantRecord {
    pub slug: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
    /// How old (by `iat`) an ID token may be when it is traded for a session.
    pub max_id_token_age_secs: i64,
    /// How long ago the person must have signed in at the IdP to end sessions other than the
    /// caller's own (step-up, RFC 9470 `max_age`).
    pub max_auth_age_secs: i64,
    #[serde(skip)]
    pub api_key_hash: Option<String>,
}

/// Default of [`TenantRecord::max_id_token_age_secs`] and [`TenantRecord::max_auth_age_secs`].
pub const DEFAULT_MAX_AGE_SECS: i64 = 600;

/// A single-use credential from outside, recorded when it is acted on so that no registry
/// process acts on it again before it expires. (The same table keeps what back-channel logouts
/// ended: [`ENDED_IDP_SESSION`], [`ENDED_IDP_SUBJECT`].)
#[derive(Clone)]
pub struct UsedCredential {
    /// What it is: `id_token` or `logout_jti`.
    pub kind: &'static str,
    /// SHA-256 of the credential (hex): the raw value is never stored.
    pub hash: String,
    /// When it expires (after which it would be refused anyway and the record can go).
    pub expires_at: i64,
    /// For an ID token: the sign-in at the IdP it comes from. An ID token of a sign-in that a
    /// back-channel logout has ended since opens and re-authenticates nothing.
    pub sign_in: Option<IdpSignIn>,
}

/// Where an ID token comes from at its IdP, as back-channel logouts name it: the IdP session
/// (`sid`), the person (`sub`), and when the token was issued.
#[derive(Clone)]
pub struct IdpSignIn {
    /// [`idp_session_key`] of the token's `sid`, when it names one.
    pub session: Option<String>,
    /// [`idp_subject_key`] of the token's `sub`.
    pub subject: String,
    /// The token's `iat` (the IdP's clock).
    pub issued_at: i64,
}

/// A back-channel logout the tenant's IdP announced (a verified logout token).
pub struct IdpLogout<'a> {
    pub issuer: &'a str,
    /// `sub`: with no `sid`, every IdP session of the person ended.
    pub subject: Option<&'a str>,
    /// `sid`: that IdP session ended.
    pub sid: Option<&'a str>,
    /// The logout token's `jti`, spent by the logout.
    pub jti: &'a UsedCredential,
    /// The logout token's `iat` (the IdP's clock): ID tokens of the person issued then or
    /// before come from sign-ins a subject-wide logout ended.
    pub issued_at: i64,
    /// Until when what it ended is remembered: its ID tokens are too old to open anything then.
    pub ended_until: i64,
    pub now: i64,
}

/// The `kind` of the record a back-channel logout leaves of the IdP session it ended.
pub const ENDED_IDP_SESSION: &str = "ended_idp_session";
/// The `kind` of the record a back-channel logout naming only the subject leaves: every sign-in
/// of the person up to its `ended_at` (the logout token's `iat`) ended.
pub const ENDED_IDP_SUBJECT: &str = "ended_idp_subject";

/// The key of IdP session `sid` of `issuer` (hashed, as every credential record).
pub fn idp_session_key(issuer: &str, sid: &str) -> String {
    crate::token::hash_hex(&format!("{issuer}\0{sid}"))
}

/// The key of subject `sub` of `issuer` (hashed; never equal to an [`idp_session_key`], which
/// keeps the two kinds' locks apart).
pub fn idp_subject_key(issuer: &str, sub: &str) -> String {
    crate::token::hash_hex(&format!("{issuer}\0sub\0{sub}"))
}

impl std::fmt::Debug for UsedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsedCredential")
            .field("kind", &self.kind)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub platform: String,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub tenant: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub is_guest: bool,
    pub device: DeviceInfo,
    pub token_hash: String,
    pub idp_sid: Option<String>,
    pub now: i64,
    pub expires_at: i64,
    pub absolute_expires_at: i64,
    pub auth_method: String,
    /// When the person last signed in at the IdP (the ID token's `auth_time`).
    pub auth_time: i64,
    /// The ID token this session is opened with: recorded, so it opens no other.
    pub id_token: UsedCredential,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A session joined with its account and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub tenant: String,
    pub account_id: String,
    pub subject: String,
    pub email: Option<String>,
    pub is_guest: bool,
    pub device_id: String,
    pub device_name: String,
    pub device_platform: String,
    pub device_last_seen: i64,
    #[serde(skip)]
    pub idp_sid: Option<String>,
    pub created_at: i64,
    pub last_authenticated_at: i64,
    pub expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub auth_method: String,
    pub auth_time: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The most events [`Store::events_after`] answers at once.
pub const EVENTS_PAGE: usize = 1000;

/// Something that happened to a session. `id` is global (the order events were written in the
/// whole database); `seq` numbers the account's events 1, 2, 3, … in the order they committed,
/// and is what an SSE client sees as the event id and resumes from (`Last-Event-ID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EventRecord {
    pub id: i64,
    pub seq: i64,
    pub tenant: String,
    pub account_id: String,
    pub session_id: String,
    pub kind: String,
    pub at: i64,
}

/// Filters of the admin listing.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub account_id: Option<String>,
    pub device_id: Option<String>,
    /// Return sessions whose id sorts after this (keyset paging).
    pub after: Option<String>,
    pub limit: i64,
}

/// How the token lookups went to the database so far (Postgres batches them, see `pg_hot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenLookupStats {
    /// Token lookups asked for (queued to be sent).
    pub asked: u64,
    /// Token lookups sent.
    pub lookups: u64,
    /// Statements that carried them.
    pub statements: u64,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    async fn ping(&self) -> Result<()>;
    /// The token lookups' batching so far, where the backend batches them.
    fn token_lookup_stats(&self) -> Option<TokenLookupStats> {
        None
    }
    async fn upsert_tenant(&self, t: &TenantRecord) -> Result<()>;
    async fn tenant(&self, slug: &str) -> Result<Option<TenantRecord>>;
    async fn tenants(&self) -> Result<Vec<TenantRecord>>;
    /// Upserts account and device, inserts the session, records a `created` event.
    async fn create_session(&self, s: NewSession) -> Result<(SessionRecord, EventRecord)>;
    async fn session_by_token_hash(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<SessionRecord>>;
    async fn session(&self, tenant: &str, id: &str) -> Result<Option<SessionRecord>>;
    /// Records activity; with `expires_at`, extends (and records an `extended` event).
    async fn touch(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<Option<EventRecord>>;
    /// Records the activity of many live sessions of `tenant` — `(session id, at)` — in one
    /// transaction (one durable commit for the lot): the heartbeats' once-a-minute writes,
    /// batched by `service::activity`. Sessions revoked meanwhile are left alone.
    async fn record_activity(&self, tenant: &str, touches: &[(String, i64)]) -> Result<()>;
    /// Ends the live sessions among `ids` (revocation or timeout), one `revoked` event each.
    async fn end_sessions(
        &self,
        tenant: &str,
        ids: &[String],
        reason: &str,
        now: i64,
    ) -> Result<Vec<EventRecord>>;
    /// The account's sessions that are not revoked (an expired one until it is ended or
    /// collected), oldest first. Revoked sessions, kept for the audit window, are not read.
    async fn unrevoked_account_sessions(
        &self,
        tenant: &str,
        account_id: &str,
    ) -> Result<Vec<SessionRecord>>;
    /// Records a fresh sign-in at the IdP (`auth_time`) on a live session, spending the ID
    /// token that proves it: [`StoreError::AlreadyUsed`] if it was spent before. `None` when the
    /// session is gone or ended.
    async fn reauthenticate(
        &self,
        tenant: &str,
        session_id: &str,
        auth_time: i64,
        id_token: &UsedCredential,
    ) -> Result<Option<SessionRecord>>;
    /// Ends the live sessions matching an IdP logout (by IdP session id, else by subject) and
    /// records the logout token's `jti`, in one transaction: [`StoreError::AlreadyUsed`] and
    /// nothing ended if the `jti` was recorded before. What it ended (the IdP session, else the
    /// subject's sign-ins up to the logout) is recorded until `logout.ended_until`, so an ID
    /// token of it presented later opens nothing ([`StoreError::IdpSessionEnded`]).
    async fn idp_logout(&self, tenant: &str, logout: &IdpLogout<'_>) -> Result<Vec<EventRecord>>;
    async fn admin_sessions(
        &self,
        tenant: &str,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>>;
    /// The account's events numbered after `after_seq` (at most [`EVENTS_PAGE`]), in order.
    async fn events_after(
        &self,
        tenant: &str,
        account_id: &str,
        after_seq: i64,
    ) -> Result<Vec<EventRecord>>;
    /// The number of an account's newest event (0 if none): where a fresh event stream starts.
    async fn latest_event_id(&self, tenant: &str, account_id: &str) -> Result<i64>;
    /// Revocations since `since` in every tenant, each (tenant, session id, revoked at): to seed
    /// the session-JWT revocation cache.
    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, String, i64)>>;
    /// Deletes sessions expired before `expired_before` and revoked ones older than `revoked_before`.
    async fn gc(&self, expired_before: i64, revoked_before: i64) -> Result<u64>;
    /// Counts a lookup from `client` that matched nothing, in the client's current one-minute
    /// window (shared by every process on the database); answers the window's start and its
    /// count so far.
    async fn note_failed_lookup(&self, client: &str, now: i64) -> Result<(i64, u32)>;
    /// Marks a guest account registered (`is_guest` false; `email` if given) and records an
    /// `upgraded` event for `session_id`. `None` when the account was not a guest: nothing changes.
    async fn set_account_registered(
        &self,
        tenant: &str,
        account_id: &str,
        session_id: &str,
        email: Option<&str>,
        now: i64,
    ) -> Result<Option<EventRecord>>;
}
