-- Per-account event numbers (see the Postgres migration 0006): the SSE event id.
ALTER TABLE accounts ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE events SET seq = id;
UPDATE accounts SET event_seq = COALESCE(
    (SELECT MAX(e.id) FROM events e WHERE e.tenant = accounts.tenant AND e.account_id = accounts.id), 0);
CREATE UNIQUE INDEX events_by_account_seq ON events (tenant, account_id, seq);

-- The failed-lookup limit's counts (shared by every process in Postgres; here, one process).
CREATE TABLE failed_lookups (
    client TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures INTEGER NOT NULL
);
