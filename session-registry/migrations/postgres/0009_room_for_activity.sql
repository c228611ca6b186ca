-- A live session's heartbeat writes its activity (sessions.last_authenticated_at,
-- devices.last_seen) once a minute: the registry's most frequent write. Neither column is
-- indexed, so Postgres can make the write a HOT update (the new row version on the same page, no
-- index touched), but only when the page has room for it. At the default fillfactor (100) pages
-- are packed full: each such write moved its row to another page and inserted an entry into
-- every index of the table (six on sessions, each a random page at 10 M sessions, logged whole
-- after a checkpoint). New pages now keep a fifth of their space for updated rows; pages written
-- before this migration gain room as their rows are updated or deleted and vacuum runs.
ALTER TABLE sessions SET (fillfactor = 80);
ALTER TABLE devices SET (fillfactor = 80);
