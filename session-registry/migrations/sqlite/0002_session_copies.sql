-- Copies of the account's and device's fields on each session, as on Postgres (see its 0003):
-- the store writes them on both backends; Postgres's token lookup reads them.
ALTER TABLE sessions ADD COLUMN subject TEXT;
ALTER TABLE sessions ADD COLUMN email TEXT;
ALTER TABLE sessions ADD COLUMN is_guest BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN device_name TEXT;
ALTER TABLE sessions ADD COLUMN device_platform TEXT;
UPDATE sessions SET
    subject = (SELECT a.subject FROM accounts a WHERE a.id = sessions.account_id),
    email = (SELECT a.email FROM accounts a WHERE a.id = sessions.account_id),
    is_guest = COALESCE((SELECT a.is_guest FROM accounts a WHERE a.id = sessions.account_id), FALSE),
    device_name = (SELECT d.name FROM devices d WHERE d.tenant = sessions.tenant AND d.account_id = sessions.account_id AND d.id = sessions.device_id),
    device_platform = (SELECT d.platform FROM devices d WHERE d.tenant = sessions.tenant AND d.account_id = sessions.account_id AND d.id = sessions.device_id);
