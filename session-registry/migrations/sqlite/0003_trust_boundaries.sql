-- Trust boundaries (issue #12), as on Postgres (see its 0005).
ALTER TABLE tenants ADD COLUMN max_id_token_age_secs BIGINT NOT NULL DEFAULT 600;
ALTER TABLE tenants ADD COLUMN max_auth_age_secs BIGINT NOT NULL DEFAULT 600;
ALTER TABLE sessions ADD COLUMN auth_time BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;
CREATE TABLE used_credentials (
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, kind, hash)
);
CREATE INDEX used_credentials_by_expiry ON used_credentials (expires_at);
