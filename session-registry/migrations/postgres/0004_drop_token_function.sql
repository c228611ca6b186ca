-- The token lookup no longer calls a function: the registry sets the row-level-security tenant
-- on its lookup connections itself and runs a plain statement for a batch of tokens
-- (session-registry/src/store/pg_hot.rs), which costs Postgres about half as much per token.
DROP FUNCTION lanyard_session_by_token(TEXT, TEXT);
