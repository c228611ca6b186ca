-- The hot token lookup reads one row of one table. A session carries copies of what
-- authenticate answers with from its account (subject, email, guest flag) and device (name,
-- platform); the store keeps them in step wherever the originals change (sign-in to an existing
-- account or device, guest upgrade). Listings still read the originals through the joins.
ALTER TABLE sessions
    ADD COLUMN subject TEXT,
    ADD COLUMN email TEXT,
    ADD COLUMN is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN device_name TEXT,
    ADD COLUMN device_platform TEXT;
UPDATE sessions s SET subject = a.subject, email = a.email, is_guest = a.is_guest
    FROM accounts a WHERE a.id = s.account_id;
UPDATE sessions s SET device_name = d.name, device_platform = d.platform
    FROM devices d WHERE d.tenant = s.tenant AND d.account_id = s.account_id AND d.id = s.device_id;
ALTER TABLE sessions
    ALTER COLUMN subject SET NOT NULL,
    ALTER COLUMN device_name SET NOT NULL,
    ALTER COLUMN device_platform SET NOT NULL;

-- Same contract as in 0002, now without the joins. The device's `last_seen` in the answer is the
-- session's own last activity (the session just authenticated on that device).
CREATE OR REPLACE FUNCTION lanyard_session_by_token(p_tenant TEXT, p_hash TEXT)
RETURNS TABLE (
    id TEXT, tenant TEXT, account_id TEXT, subject TEXT, email TEXT, is_guest BOOLEAN,
    device_id TEXT, device_name TEXT, device_platform TEXT, device_last_seen BIGINT, idp_sid TEXT,
    created_at BIGINT, last_authenticated_at BIGINT, expires_at BIGINT, absolute_expires_at BIGINT,
    revoked_at BIGINT, revoked_reason TEXT, auth_method TEXT, user_agent TEXT, ip TEXT
)
LANGUAGE plpgsql
SECURITY INVOKER
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('lanyard.tenant', p_tenant, true);
    RETURN QUERY
        SELECT s.id, s.tenant, s.account_id, s.subject, s.email, s.is_guest, s.device_id,
               s.device_name, s.device_platform, s.last_authenticated_at, s.idp_sid, s.created_at,
               s.last_authenticated_at, s.expires_at, s.absolute_expires_at, s.revoked_at,
               s.revoked_reason, s.auth_method, s.user_agent, s.ip
        FROM sessions s
        WHERE s.tenant = p_tenant AND s.token_hash = p_hash;
END
$$;
