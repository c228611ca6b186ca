//! Every SQL statement the store runs, in one place: the body both backends share (`$n`
//! placeholders work in Postgres and SQLite alike) and the few each backend has of its own. The
//! lists [`SHARED`], [`POSTGRES`] and [`SQLITE`] name them all, so a test prepares each against
//! both schemas (`store::statements_check`) and a typo fails there, not in production. No statement
//! tests a parameter for NULL to make a filter optional: the driver's prepared statements get a
//! generic plan, which cannot use an index for such a filter; optional filters get a statement
//! each (see [`ADMIN_SESSIONS`]).

/// The columns of a session joined with its account and device (see `session_record!`).
macro_rules! session_columns {
    () => {
        "s.id, s.tenant, s.account_id, a.subject, a.email, a.is_guest, s.device_id, \
        d.name AS device_name, d.platform AS device_platform, d.last_seen AS device_last_seen, s.idp_sid, s.created_at, \
        s.last_authenticated_at, s.expires_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, s.auth_method, \
        s.auth_time, s.user_agent, s.ip"
    };
}

/// The join behind [`session_columns!`].
macro_rules! session_from {
    () => {
        "FROM sessions s JOIN accounts a ON a.id = s.account_id \
        JOIN devices d ON d.tenant = s.tenant AND d.account_id = s.account_id AND d.id = s.device_id"
    };
}

/// Notes what a back-channel logout ended (an IdP session; a subject's sign-ins up to
/// `ended_at`) whether or not it was noted before, keeping the later expiry and `ended_at`.
pub const NOTE_CREDENTIAL: &str =
    "INSERT INTO used_credentials (tenant, kind, hash, expires_at, ended_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (tenant, kind, hash) DO UPDATE SET expires_at = \
    CASE WHEN excluded.expires_at > used_credentials.expires_at \
    THEN excluded.expires_at ELSE used_credentials.expires_at END, ended_at = \
    CASE WHEN used_credentials.ended_at IS NULL OR excluded.ended_at > used_credentials.ended_at \
    THEN excluded.ended_at ELSE used_credentials.ended_at END";
/// A noted record (see `NOTE_CREDENTIAL`) and its `ended_at`.
pub const CREDENTIAL_NOTED: &str =
    "SELECT ended_at FROM used_credentials WHERE tenant = $1 AND kind = $2 AND hash = $3";
/// Postgres: one transaction at a time per IdP session, or per subject (a sign-in with an ID
/// token of it, its back-channel logout), until the transaction ends.
pub const LOCK_KEY: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
pub const SPEND_CREDENTIAL: &str =
    "INSERT INTO used_credentials (tenant, kind, hash, expires_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (tenant, kind, hash) DO NOTHING";
/// The account's next event number: the row stays locked until the transaction ends, so the
/// account's events commit in the order of their numbers.
pub const NEXT_EVENT_SEQ: &str = "UPDATE accounts SET event_seq = event_seq + 1 \
    WHERE tenant = $1 AND id = $2 RETURNING event_seq";
pub const INSERT_EVENT: &str =
    "INSERT INTO events (tenant, account_id, session_id, kind, at, seq) VALUES ($1, $2, $3, $4, $5, $6) \
    RETURNING id, seq, tenant, account_id, session_id, kind, at";
pub const PING: &str = "SELECT 1";
pub const UPSERT_TENANT: &str = "INSERT INTO tenants (slug, issuer, audiences, idle_timeout_secs, absolute_timeout_secs, api_key_hash, created_at, \
    max_id_token_age_secs, max_auth_age_secs) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (slug) DO UPDATE SET issuer = excluded.issuer, audiences = excluded.audiences, \
    idle_timeout_secs = excluded.idle_timeout_secs, absolute_timeout_secs = excluded.absolute_timeout_secs, \
    api_key_hash = COALESCE(excluded.api_key_hash, tenants.api_key_hash), \
    max_id_token_age_secs = excluded.max_id_token_age_secs, max_auth_age_secs = excluded.max_auth_age_secs";
pub const TENANT: &str = "SELECT * FROM tenants WHERE slug = $1";
pub const TENANTS: &str = "SELECT * FROM tenants ORDER BY slug";
pub const UPSERT_ACCOUNT: &str = "INSERT INTO accounts (id, tenant, issuer, subject, email, is_guest, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (tenant, issuer, subject) DO UPDATE SET email = COALESCE(excluded.email, accounts.email), is_guest = excluded.is_guest \
    RETURNING id, email, is_guest";
/// Only the copies that differ: a sign-in used to rewrite (and lock) every session of its
/// account — O(sessions) writes per sign-in, and row locks taken while the account's row is held,
/// the opposite order of a revoke's (a deadlock seen in the soak).
pub const COPY_ACCOUNT_TO_SESSIONS: &str =
    "UPDATE sessions SET email = $3, is_guest = $4 WHERE tenant = $1 AND account_id = $2 \
    AND (email IS DISTINCT FROM $3 OR is_guest IS DISTINCT FROM $4)";
pub const COPY_DEVICE_TO_SESSIONS: &str = "UPDATE sessions SET device_name = $4, device_platform = $5 WHERE tenant = $1 AND account_id = $2 AND device_id = $3 \
    AND (device_name IS DISTINCT FROM $4 OR device_platform IS DISTINCT FROM $5)";
pub const UPSERT_DEVICE: &str = "INSERT INTO devices (tenant, account_id, id, name, platform, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6) \
    ON CONFLICT (tenant, account_id, id) DO UPDATE SET name = excluded.name, platform = excluded.platform, last_seen = excluded.last_seen";
pub const INSERT_SESSION: &str = "INSERT INTO sessions (id, tenant, account_id, device_id, token_hash, idp_sid, created_at, last_authenticated_at, \
    expires_at, absolute_expires_at, auth_method, user_agent, ip, subject, email, is_guest, device_name, device_platform, auth_time) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
pub const SESSION_BY_ID: &str = concat!(
    "SELECT ",
    session_columns!(),
    " ",
    session_from!(),
    " WHERE s.tenant = $1 AND s.id = $2"
);
pub const TOUCH_SESSION: &str =
    "UPDATE sessions SET last_authenticated_at = $3, expires_at = COALESCE($4, expires_at) \
    WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL RETURNING account_id, device_id";
pub const TOUCH_DEVICE: &str =
    "UPDATE devices SET last_seen = $4 WHERE tenant = $1 AND account_id = $2 AND id = $3";
/// [`TOUCH_SESSION`] and [`TOUCH_DEVICE`] for a batch in one statement (Postgres): `$2` the
/// session ids, `$3` their times; a device with several sessions in the batch gets the latest.
/// The rows are locked in a fixed order — sessions by id, then devices by account and id — as
/// the row-by-row writes did, so two processes' writers touching the same rows wait for each
/// other rather than deadlock (a join's or an aggregate's output order is the plan's).
pub const TOUCH_SESSIONS_BATCH: &str = "WITH t AS (SELECT id, at FROM unnest($2::text[], $3::bigint[]) AS t(id, at)), \
    locked AS MATERIALIZED (SELECT s.id, t.at FROM sessions s JOIN t ON s.id = t.id \
        WHERE s.tenant = $1 AND s.revoked_at IS NULL ORDER BY s.id FOR UPDATE OF s), \
    touched AS (UPDATE sessions s SET last_authenticated_at = l.at FROM locked l \
        WHERE s.tenant = $1 AND s.id = l.id AND s.revoked_at IS NULL \
        RETURNING s.account_id, s.device_id, l.at), \
    devices_locked AS MATERIALIZED (SELECT d.account_id, d.id, m.at FROM devices d \
        JOIN (SELECT account_id, device_id, max(at) AS at FROM touched GROUP BY account_id, device_id) m \
        ON d.account_id = m.account_id AND d.id = m.device_id \
        WHERE d.tenant = $1 ORDER BY d.account_id, d.id FOR UPDATE OF d) \
    UPDATE devices d SET last_seen = dl.at FROM devices_locked dl \
    WHERE d.tenant = $1 AND d.account_id = dl.account_id AND d.id = dl.id";
pub const END_SESSION: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL RETURNING account_id";
/// The account's unrevoked sessions (expired ones included until collected), by the index
/// `sessions_by_account_and_revocation` with `revoked_at IS NULL` as its condition: revoked ones,
/// kept for the audit window, are never read.
pub const ACCOUNT_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " ",
    session_from!(),
    " WHERE s.tenant = $1 AND s.account_id = $2 AND s.revoked_at IS NULL ORDER BY s.created_at, s.id"
);
pub const RAISE_AUTH_TIME: &str = "UPDATE sessions SET auth_time = $3 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL AND auth_time < $3";
pub const LIVE_SESSION_BY_ID: &str = concat!(
    "SELECT ",
    session_columns!(),
    " ",
    session_from!(),
    " WHERE s.tenant = $1 AND s.id = $2 AND s.revoked_at IS NULL"
);
/// A back-channel logout of one IdP session (`$3`, the logout token's `sid`) ends the unrevoked
/// sessions it opened, by the index `sessions_by_idp_sid`. Once one statement served both kinds of
/// logout with `(CAST($3 AS TEXT) IS NOT NULL AND …) OR (CAST($3 AS TEXT) IS NULL AND …)`, whose
/// generic plan could use no index and read every session of the tenant per logout.
pub const END_SESSIONS_FOR_IDP_SESSION_LOGOUT: &str =
    "UPDATE sessions SET revoked_at = $4, revoked_reason = 'idp_logout' \
    WHERE tenant = $1 AND idp_sid = $3 AND revoked_at IS NULL \
    AND account_id IN (SELECT id FROM accounts WHERE tenant = $1 AND issuer = $2) \
    RETURNING id, account_id";
/// A back-channel logout of a person (`$3`, the logout token's `sub`, with no `sid`) ends every
/// unrevoked session of their account, found by the account's unique key and then by
/// `sessions_by_account_and_revocation`.
pub const END_SESSIONS_FOR_SUBJECT_LOGOUT: &str =
    "UPDATE sessions SET revoked_at = $4, revoked_reason = 'idp_logout' \
    WHERE tenant = $1 AND revoked_at IS NULL \
    AND account_id IN (SELECT id FROM accounts WHERE tenant = $1 AND issuer = $2 AND subject = $3) \
    RETURNING id, account_id";
/// The admin listing: a tenant's sessions after a cursor (`$2`, `''` for the first page), by id,
/// at most `$3`. One statement per combination of filters rather than one with optional
/// `(CAST($n AS TEXT) IS NULL OR …)` filters: the driver's prepared statements get a generic plan,
/// which must serve every combination, and for that one the planner guessed a single row, scanned
/// the sessions and looped over every account and device for each of them (at 25,000 sessions,
/// 4–9 s a page in the soak of 2026-12-04). Here the cursor and the account are index conditions;
/// a device id alone is not (no index on it: the admin lists by device within an account), so a
/// listing by device alone walks the tenant's sessions from the cursor, a page at a time.
macro_rules! admin_sessions {
    ($filters:literal) => {
        concat!(
            "SELECT ",
            session_columns!(),
            " ",
            session_from!(),
            " WHERE s.tenant = $1 AND s.id > $2",
            $filters,
            " ORDER BY s.id LIMIT $3"
        )
    };
}
pub const ADMIN_SESSIONS: &str = admin_sessions!("");
/// [`ADMIN_SESSIONS`] of one account (`$4`).
pub const ADMIN_SESSIONS_OF_ACCOUNT: &str = admin_sessions!(" AND s.account_id = $4");
/// [`ADMIN_SESSIONS`] on devices of one id (`$4`), whichever account's.
pub const ADMIN_SESSIONS_ON_DEVICE: &str = admin_sessions!(" AND s.device_id = $4");
/// [`ADMIN_SESSIONS`] of one account (`$4`) on one of its devices (`$5`).
pub const ADMIN_SESSIONS_OF_ACCOUNT_ON_DEVICE: &str =
    admin_sessions!(" AND s.account_id = $4 AND s.device_id = $5");
pub const LATEST_EVENT_ID: &str =
    "SELECT COALESCE(MAX(event_seq), 0) AS id FROM accounts WHERE tenant = $1 AND id = $2";
/// At most [`super::EVENTS_PAGE`] rows (a test holds the two together).
pub const EVENTS_AFTER: &str =
    "SELECT * FROM events WHERE tenant = $1 AND account_id = $2 AND seq > $3 \
    ORDER BY seq LIMIT 1000";
pub const REVOKED_SINCE: &str =
    "SELECT tenant, id, revoked_at FROM sessions WHERE tenant = $1 AND revoked_at >= $2";
/// Expired live sessions, by the partial index `sessions_live_by_expiry`.
pub const GC_EXPIRED_SESSIONS: &str =
    "DELETE FROM sessions WHERE tenant = $1 AND revoked_at IS NULL AND expires_at < $2";
/// Sessions revoked before the audit window, by the partial index `sessions_revoked_by_time`.
pub const GC_REVOKED_SESSIONS: &str =
    "DELETE FROM sessions WHERE tenant = $1 AND revoked_at IS NOT NULL AND revoked_at < $2";
pub const GC_EVENTS: &str = "DELETE FROM events WHERE tenant = $1 AND at < $2";
pub const GC_CREDENTIALS: &str =
    "DELETE FROM used_credentials WHERE tenant = $1 AND expires_at < $2";
/// Counts a failed lookup of a client in its current one-minute window (a new window once the
/// old one is a minute old); answers the window's count.
pub const NOTE_FAILED_LOOKUP: &str = "INSERT INTO failed_lookups (client, window_start, failures) VALUES ($1, $2, 1) \
    ON CONFLICT (client) DO UPDATE SET \
    failures = CASE WHEN failed_lookups.window_start <= $2 - 60 THEN 1 ELSE failed_lookups.failures + 1 END, \
    window_start = CASE WHEN failed_lookups.window_start <= $2 - 60 THEN $2 ELSE failed_lookups.window_start END \
    RETURNING window_start, failures";
pub const GC_FAILED_LOOKUPS: &str = "DELETE FROM failed_lookups WHERE window_start < $1";
pub const REGISTER_ACCOUNT: &str = "UPDATE accounts SET is_guest = FALSE, email = COALESCE($3, email) WHERE tenant = $1 AND id = $2 AND is_guest = TRUE";
pub const REGISTER_ACCOUNT_SESSIONS: &str = "UPDATE sessions SET is_guest = FALSE, email = COALESCE($3, email) WHERE tenant = $1 AND account_id = $2";

/// SQLite's token lookup (Postgres has its own, `pg_hot`).
pub const SESSION_BY_TOKEN_HASH: &str = concat!(
    "SELECT ",
    session_columns!(),
    " ",
    session_from!(),
    " WHERE s.tenant = $1 AND s.token_hash = $2"
);
/// Postgres: the row-level-security tenant of a transaction.
/// Behind a transaction pooler: the role row-level security applies to, for this transaction.
pub const SET_LOCAL_ROLE: &str = "SET LOCAL ROLE lanyard_app";
/// The primary's WAL insert position, for the read replica's watermark: past every commit
/// record already inserted, so past every commit already visible (with `synchronous_commit =
/// off` too, where the write position may lag a visible commit).
pub const CURRENT_WAL_LSN: &str = "SELECT pg_current_wal_insert_lsn()::text AS lsn";
/// How far a standby has replayed (NULL on a primary).
pub const REPLAYED_WAL_LSN: &str = "SELECT pg_last_wal_replay_lsn()::text AS lsn";
pub const SET_TRANSACTION_TENANT: &str = "SELECT set_config('lanyard.tenant', $1, true)";
/// Postgres: announce an event on the LISTEN channel.
pub const NOTIFY: &str = "SELECT pg_notify($1, $2)";
/// Postgres: the newest event id handed out so far.
pub const LAST_EVENT_ID: &str =
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS id FROM events_id_seq";
/// Postgres: an announcement for the outbox relay (`--events nats://…`).
pub const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (subject, msg_id, payload, created_at) VALUES ($1, $2, $3, $4)";
/// Postgres: the oldest announcements no other relay holds, claimed until the transaction ends.
pub const CLAIM_OUTBOX: &str = "SELECT id, subject, msg_id, payload FROM outbox ORDER BY id \
    LIMIT $1 FOR UPDATE SKIP LOCKED";
pub const DELETE_OUTBOX: &str = "DELETE FROM outbox WHERE id = ANY($1)";
/// Postgres: the shared session-JWT signing keys still published at `$1`, oldest first.
pub const SIGNING_KEYS: &str = "SELECT kid, alg, sealed_private_key, created_at, retired_at, published_until \
    FROM signing_keys WHERE published_until IS NULL OR published_until > $1 ORDER BY created_at, kid";
pub const INSERT_SIGNING_KEY: &str =
    "INSERT INTO signing_keys (kid, alg, sealed_private_key, created_at) \
    VALUES ($1, $2, $3, $4)";
/// Postgres: retires the signing keys other than `$1` that still sign.
pub const RETIRE_SIGNING_KEYS: &str =
    "UPDATE signing_keys SET retired_at = $2, published_until = $3 \
    WHERE kid <> $1 AND retired_at IS NULL";
/// Postgres: serialises key rotations (and the first key's creation) across processes.
pub const LOCK_SIGNING_KEYS: &str = "LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE";
pub const GC_SIGNING_KEYS: &str = "DELETE FROM signing_keys WHERE published_until < $1";
/// Postgres: a page of one tenant's events after an id (the relay's catch-up).
pub const TENANT_EVENTS_AFTER: &str =
    "SELECT * FROM events WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3";

/// The statements both backends run.
pub const SHARED: &[(&str, &str)] = &[
    ("SPEND_CREDENTIAL", SPEND_CREDENTIAL),
    ("NOTE_CREDENTIAL", NOTE_CREDENTIAL),
    ("CREDENTIAL_NOTED", CREDENTIAL_NOTED),
    ("NEXT_EVENT_SEQ", NEXT_EVENT_SEQ),
    ("INSERT_EVENT", INSERT_EVENT),
    ("PING", PING),
    ("UPSERT_TENANT", UPSERT_TENANT),
    ("TENANT", TENANT),
    ("TENANTS", TENANTS),
    ("UPSERT_ACCOUNT", UPSERT_ACCOUNT),
    ("COPY_ACCOUNT_TO_SESSIONS", COPY_ACCOUNT_TO_SESSIONS),
    ("COPY_DEVICE_TO_SESSIONS", COPY_DEVICE_TO_SESSIONS),
    ("UPSERT_DEVICE", UPSERT_DEVICE),
    ("INSERT_SESSION", INSERT_SESSION),
    ("SESSION_BY_ID", SESSION_BY_ID),
    ("TOUCH_SESSION", TOUCH_SESSION),
    ("TOUCH_DEVICE", TOUCH_DEVICE),
    ("END_SESSION", END_SESSION),
    ("ACCOUNT_SESSIONS", ACCOUNT_SESSIONS),
    ("RAISE_AUTH_TIME", RAISE_AUTH_TIME),
    ("LIVE_SESSION_BY_ID", LIVE_SESSION_BY_ID),
    (
        "END_SESSIONS_FOR_IDP_SESSION_LOGOUT",
        END_SESSIONS_FOR_IDP_SESSION_LOGOUT,
    ),
    (
        "END_SESSIONS_FOR_SUBJECT_LOGOUT",
        END_SESSIONS_FOR_SUBJECT_LOGOUT,
    ),
    ("ADMIN_SESSIONS", ADMIN_SESSIONS),
    ("ADMIN_SESSIONS_OF_ACCOUNT", ADMIN_SESSIONS_OF_ACCOUNT),
    ("ADMIN_SESSIONS_ON_DEVICE", ADMIN_SESSIONS_ON_DEVICE),
    (
        "ADMIN_SESSIONS_OF_ACCOUNT_ON_DEVICE",
        ADMIN_SESSIONS_OF_ACCOUNT_ON_DEVICE,
    ),
    ("LATEST_EVENT_ID", LATEST_EVENT_ID),
    ("EVENTS_AFTER", EVENTS_AFTER),
    ("REVOKED_SINCE", REVOKED_SINCE),
    ("GC_EXPIRED_SESSIONS", GC_EXPIRED_SESSIONS),
    ("GC_REVOKED_SESSIONS", GC_REVOKED_SESSIONS),
    ("GC_EVENTS", GC_EVENTS),
    ("GC_CREDENTIALS", GC_CREDENTIALS),
    ("NOTE_FAILED_LOOKUP", NOTE_FAILED_LOOKUP),
    ("GC_FAILED_LOOKUPS", GC_FAILED_LOOKUPS),
    ("REGISTER_ACCOUNT", REGISTER_ACCOUNT),
    ("REGISTER_ACCOUNT_SESSIONS", REGISTER_ACCOUNT_SESSIONS),
];

/// The statements only Postgres runs (the token lookup's are in `pg_hot`, listed there).
pub const POSTGRES: &[(&str, &str)] = &[
    ("SET_TRANSACTION_TENANT", SET_TRANSACTION_TENANT),
    ("LOCK_KEY", LOCK_KEY),
    ("NOTIFY", NOTIFY),
    ("LAST_EVENT_ID", LAST_EVENT_ID),
    ("TENANT_EVENTS_AFTER", TENANT_EVENTS_AFTER),
    ("INSERT_OUTBOX", INSERT_OUTBOX),
    ("CLAIM_OUTBOX", CLAIM_OUTBOX),
    ("DELETE_OUTBOX", DELETE_OUTBOX),
    ("SIGNING_KEYS", SIGNING_KEYS),
    ("INSERT_SIGNING_KEY", INSERT_SIGNING_KEY),
    ("RETIRE_SIGNING_KEYS", RETIRE_SIGNING_KEYS),
    ("LOCK_SIGNING_KEYS", LOCK_SIGNING_KEYS),
    ("GC_SIGNING_KEYS", GC_SIGNING_KEYS),
    ("SET_LOCAL_ROLE", SET_LOCAL_ROLE),
    ("CURRENT_WAL_LSN", CURRENT_WAL_LSN),
    ("REPLAYED_WAL_LSN", REPLAYED_WAL_LSN),
    ("TOUCH_SESSIONS_BATCH", TOUCH_SESSIONS_BATCH),
];

/// The statements only SQLite runs.
pub const SQLITE: &[(&str, &str)] = &[("SESSION_BY_TOKEN_HASH", SESSION_BY_TOKEN_HASH)];

#[cfg(test)]
mod tests {
    /// The event streams read on while a page comes back full: the statement's limit and the
    /// page size they compare with are one number.
    #[test]
    fn the_events_page_is_the_statements_limit() {
        assert!(
            super::EVENTS_AFTER.ends_with(&format!("LIMIT {}", super::super::EVENTS_PAGE)),
            "{}",
            super::EVENTS_AFTER
        );
    }
}
