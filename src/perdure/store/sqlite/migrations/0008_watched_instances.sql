-- Migration 0008: nothing to do on SQLite.
--
-- On PostgreSQL an instance's end is signalled to other processes (NOTIFY) only if a wait
-- there marked the instance watched (instances.watched). A SQLite store signals no other
-- process: another process learns of an end by its next round. The number keeps the two
-- stores' schema versions alike.
SELECT 1;
