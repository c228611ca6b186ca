-- Resolving a session token in one round trip. The row-level-security tenant is set inside the
-- function (local to the statement's transaction) before the query runs, so the lookup needs no
-- `BEGIN` / `set_config` / `COMMIT` of its own; the policies on sessions, accounts and devices
-- still apply, since the function runs with the caller's rights (SECURITY INVOKER).
CREATE FUNCTION lanyard_session_by_token(p_tenant TEXT, p_hash TEXT)
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
        SELECT s.id, s.tenant, s.account_id, a.subject, a.email, a.is_guest, s.device_id,
               d.name, d.platform, d.last_seen, s.idp_sid, s.created_at,
               s.last_authenticated_at, s.expires_at, s.absolute_expires_at, s.revoked_at,
               s.revoked_reason, s.auth_method, s.user_agent, s.ip
        FROM sessions s
        JOIN accounts a ON a.id = s.account_id
        JOIN devices d ON d.tenant = s.tenant AND d.account_id = s.account_id AND d.id = s.device_id
        WHERE s.tenant = p_tenant AND s.token_hash = p_hash;
END
$$;
GRANT EXECUTE ON FUNCTION lanyard_session_by_token(TEXT, TEXT) TO lanyard_app;
