-- An account's unrevoked sessions by index, with the revocation time in it (see the Postgres
-- migration 0010).
DROP INDEX IF EXISTS sessions_by_account;
CREATE INDEX sessions_by_account_and_revocation ON sessions (tenant, account_id, revoked_at);
