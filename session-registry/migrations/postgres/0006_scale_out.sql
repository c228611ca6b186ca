-- Scale-out (issue #14).

-- Every account numbers its events 1, 2, 3, … (`events.seq`, the SSE event id): the next number
-- is taken from the account's row, whose lock is held until the event's transaction commits, so
-- an account's events commit in the order of their numbers, and `Last-Event-ID` replays exactly
-- what a client missed, from any registry process. Events from before take their global id (a
-- client holding one resumes after it); the accounts continue above their largest.
-- The migrating role may be the tables' owner, which row-level security binds too (FORCE): lifted
-- for the rewrite, put back at once.
ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE events NO FORCE ROW LEVEL SECURITY;
ALTER TABLE accounts ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN seq BIGINT;
UPDATE events SET seq = id;
UPDATE accounts a SET event_seq = m.seq
    FROM (SELECT tenant, account_id, MAX(id) AS seq FROM events GROUP BY tenant, account_id) m
    WHERE m.tenant = a.tenant AND m.account_id = a.id;
ALTER TABLE events ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX events_by_account_seq ON events (tenant, account_id, seq);
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;

-- The transactional outbox (`--events nats://…`): what other processes must learn of, written in
-- the transaction that makes the change, published to NATS JetStream by a relay (any process;
-- rows are claimed with SKIP LOCKED) and deleted once the stream has acknowledged them. Not
-- per tenant: the relay reads every tenant's, and it holds nothing secret.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- UPDATE only for the row locks of `SELECT … FOR UPDATE SKIP LOCKED`.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO lanyard_app;
GRANT USAGE, SELECT ON SEQUENCE outbox_id_seq TO lanyard_app;

-- Session-JWT signing keys shared by every registry process: the private key sealed with
-- AES-256-GCM under the key-encryption key from configuration (never stored in clear).
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    sealed_private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- When a rotation retired it (NULL while it signs): it stays published until `retired_at`
    -- plus the grace a rotation names.
    retired_at BIGINT,
    published_until BIGINT
);
GRANT SELECT, INSERT, UPDATE, DELETE ON signing_keys TO lanyard_app;

-- The failed-lookup limit, shared: failures per client (IPv4 address or IPv6 /64) in one-minute
-- windows, counted by whichever process saw them.
CREATE TABLE failed_lookups (
    client TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures INTEGER NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON failed_lookups TO lanyard_app;
