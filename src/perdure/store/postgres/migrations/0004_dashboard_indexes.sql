-- Migration 0004: indexes for the dashboard's reads (perdure 0.1, perdure.web).
--
-- instances_by_name_status: instance_counts (counts by name and status) reads this index
-- alone instead of every row. instances_by_updated: list_instances(sort="updated"), most
-- recently updated first, keyset paging on (last_updated_at, instance_id).

CREATE INDEX instances_by_name_status ON instances (name, status);

CREATE INDEX instances_by_updated ON instances (last_updated_at, instance_id);
