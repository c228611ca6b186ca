-- Trust boundaries (issue #12).
-- Per-tenant limits: how old an ID token may be when it is traded for a session, and how long
-- ago the person must have signed in at the IdP to end sessions other than the caller's own.
ALTER TABLE tenants
    ADD COLUMN max_id_token_age_secs BIGINT NOT NULL DEFAULT 600,
    ADD COLUMN max_auth_age_secs BIGINT NOT NULL DEFAULT 600;

-- When the person last proved who they are at the IdP (the ID token's auth_time), per session.
-- Sessions from before this column count as signed in when they were created.
ALTER TABLE sessions ADD COLUMN auth_time BIGINT;
UPDATE sessions SET auth_time = created_at;
ALTER TABLE sessions ALTER COLUMN auth_time SET NOT NULL;

-- Single-use credentials from outside: ID tokens traded for a session or a re-authentication,
-- and logout tokens' jti. Kept until they expire, so every registry process refuses a replay;
-- written in the transaction that acts on them.
CREATE TABLE used_credentials (
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, kind, hash)
);
CREATE INDEX used_credentials_by_expiry ON used_credentials (expires_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON used_credentials TO lanyard_app;
ALTER TABLE used_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE used_credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON used_credentials USING (tenant = current_setting('lanyard.tenant', true)) WITH CHECK (tenant = current_setting('lanyard.tenant', true));
