-- Garbage collection by index (see the Postgres migration 0007): one partial index per case of
-- the collector's deletes, and the events' by time.
DROP INDEX IF EXISTS sessions_by_expiry;
CREATE INDEX sessions_live_by_expiry ON sessions (tenant, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX sessions_revoked_by_time ON sessions (tenant, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX events_by_time ON events (tenant, at);
