-- A back-channel logout naming only the subject (no sid) ends every IdP session of the person:
-- the registry keeps, beside the ended IdP sessions, when the person's sign-ins were ended, so
-- that an ID token issued until then opens nothing (see store::ENDED_IDP_SUBJECT). NULL on every
-- other kind of record.
ALTER TABLE used_credentials ADD COLUMN ended_at BIGINT;
