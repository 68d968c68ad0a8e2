-- Migration 0007: nothing to change on SQLite.
--
-- On PostgreSQL this migration keys instances_by_updated on the second of the last update,
-- so that a turn's update of its instance's row writes no index entry (a HOT update). SQLite
-- rewrites only the entries of the indexes whose columns an UPDATE assigns, and an index on
-- a column derived from last_updated_at would be rewritten with it: its instances_by_updated
-- stays on last_updated_at. The stores' migrations keep the same numbers.
SELECT 1;
