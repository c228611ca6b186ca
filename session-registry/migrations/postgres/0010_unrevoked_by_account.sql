-- An account's sessions as its list and its revokes by scope read them: the unrevoked ones. Revoked
-- sessions stay for the audit window (30 days), so an account that signs in and out all day piles
-- them up, and reading them all through sessions_by_account (tenant, account_id) made every list
-- of such an account slower by the minute (the 20-minute soak of 2026-12-04: over 200 ms per list
-- by minute 15). With the revocation time in the index, `revoked_at IS NULL` is an index condition
-- (sql::ACCOUNT_SESSIONS): the revoked sessions are never read. The index replaces the old one,
-- which served only its two leading columns. (A partial index of the unrevoked sessions by account
-- was tried first: on a table without statistics the planner took it for the collector's delete of
-- expired sessions, which must find them by expiry; tests/api/hot_paths.rs.)
DROP INDEX IF EXISTS sessions_by_account;
CREATE INDEX sessions_by_account_and_revocation ON sessions (tenant, account_id, revoked_at);
