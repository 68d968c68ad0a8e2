-- Migration 0007: a turn rewrites its instance's row in place.
--
-- Every turn updates its instance's row (last_updated_at, the counters). PostgreSQL writes
-- an update in place, without an entry in any index (a HOT update), only if no indexed
-- column changes: instances_by_updated on last_updated_at made every turn write one entry
-- into each of the table's indexes. The index now keys on the second of the last update
-- (last_updated_second, generated from last_updated_at), which changes at most once a
-- second: the turns of an instance within one second leave every index as it is, unless
-- they change its status. list_instances(sort="updated") reads the index from its newest
-- second and sorts the rows of each second by last_updated_at.
-- Adding a stored generated column rewrites the table, holding its lock meanwhile.

ALTER TABLE instances
    ADD COLUMN last_updated_second BIGINT GENERATED ALWAYS AS (floor(last_updated_at)::bigint) STORED;
DROP INDEX instances_by_updated;
CREATE INDEX instances_by_updated ON instances (last_updated_second);
