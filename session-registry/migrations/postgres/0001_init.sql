-- Tenants are global (no row-level security): the server admin manages them.
CREATE TABLE tenants (
    slug TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    audiences TEXT NOT NULL,              -- JSON array of accepted `aud` values
    idle_timeout_secs BIGINT NOT NULL,
    absolute_timeout_secs BIGINT NOT NULL,
    api_key_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant, issuer, subject)
);

CREATE TABLE devices (
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    account_id TEXT NOT NULL REFERENCES accounts (id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (tenant, account_id, id)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    account_id TEXT NOT NULL REFERENCES accounts (id),
    device_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    idp_sid TEXT,
    created_at BIGINT NOT NULL,
    last_authenticated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT,
    auth_method TEXT NOT NULL,
    user_agent TEXT,
    ip TEXT
);
CREATE INDEX sessions_by_account ON sessions (tenant, account_id);
CREATE INDEX sessions_by_idp_sid ON sessions (tenant, idp_sid);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    account_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX events_by_account ON events (tenant, account_id, id);

-- Tenant isolation in the database: the application runs as `lanyard_app` (SET ROLE after
-- connecting), and every row it can see or write belongs to the tenant in `lanyard.tenant`.
DO $$
BEGIN
    CREATE ROLE lanyard_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, accounts, devices, sessions, events TO lanyard_app;
GRANT USAGE, SELECT ON SEQUENCE events_id_seq TO lanyard_app;

ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON accounts USING (tenant = current_setting('lanyard.tenant', true)) WITH CHECK (tenant = current_setting('lanyard.tenant', true));
CREATE POLICY tenant_isolation ON devices USING (tenant = current_setting('lanyard.tenant', true)) WITH CHECK (tenant = current_setting('lanyard.tenant', true));
CREATE POLICY tenant_isolation ON sessions USING (tenant = current_setting('lanyard.tenant', true)) WITH CHECK (tenant = current_setting('lanyard.tenant', true));
CREATE POLICY tenant_isolation ON events USING (tenant = current_setting('lanyard.tenant', true)) WITH CHECK (tenant = current_setting('lanyard.tenant', true));
