-- Several token lookups in one statement: the registry gathers the lookups that arrive while its
-- connections are busy and sends them together (`store/pg_hot.rs`). Same rules as
-- `lanyard_session_by_token`: the row-level-security tenant is set for this statement only; the
-- answer carries each row's token hash so the caller can hand every row to its request.
CREATE FUNCTION lanyard_sessions_by_tokens(p_tenant TEXT, p_hashes TEXT[])
RETURNS TABLE (
    token_hash TEXT,
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
        SELECT s.token_hash, s.id, s.tenant, s.account_id, s.subject, s.email, s.is_guest,
               s.device_id, s.device_name, s.device_platform, s.last_authenticated_at, s.idp_sid,
               s.created_at, s.last_authenticated_at, s.expires_at, s.absolute_expires_at,
               s.revoked_at, s.revoked_reason, s.auth_method, s.user_agent, s.ip
        FROM sessions s
        WHERE s.tenant = p_tenant AND s.token_hash = ANY (p_hashes);
END
$$;
GRANT EXECUTE ON FUNCTION lanyard_sessions_by_tokens(TEXT, TEXT[]) TO lanyard_app;
