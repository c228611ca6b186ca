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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    account_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX events_by_account ON events (tenant, account_id, id);

