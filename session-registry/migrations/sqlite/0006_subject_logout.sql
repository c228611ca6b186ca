-- A back-channel logout naming only the subject: when the person's sign-ins were ended (see the
-- Postgres migration 0008).
ALTER TABLE used_credentials ADD COLUMN ended_at BIGINT;
