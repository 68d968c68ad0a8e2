-- Migration 0006: the leases by expiry.
--
-- orchestration_leases_by_expiry: a worker round's next_message_at finds the first lease to
-- expire that holds a message back by walking this index up to the round's horizon, instead
-- of looking at every lease (one per instance a worker holds).

CREATE INDEX orchestration_leases_by_expiry ON orchestration_leases (expires_at);
