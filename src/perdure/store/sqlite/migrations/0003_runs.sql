-- Migration 0003: run tokens (invariant 9) and client request ids.
--
-- Every run of an instance id (a start, a start after a purge, a replace_terminal start, a
-- child's retry under the same id) has its own random run token. Messages, activity tasks
-- and a child's parent reference name the run they belong to, so nothing of one run is
-- applied to another run of the same id. Instances that exist already get a token each;
-- messages and tasks queued before this migration name no run (NULL: the current one).
--
-- client_requests: the request ids of client operations (start, raise_event, terminate,
-- suspend, resume) applied recently, so an operation retried after an unknown commit
-- outcome applies once.

ALTER TABLE instances ADD COLUMN run_id TEXT NOT NULL DEFAULT '';
UPDATE instances SET run_id = lower(hex(randomblob(16)));
ALTER TABLE instances ADD COLUMN parent_run_id TEXT;
ALTER TABLE orchestration_messages ADD COLUMN run_id TEXT;
ALTER TABLE activity_tasks ADD COLUMN run_id TEXT;
ALTER TABLE dead_letters ADD COLUMN run_id TEXT;
ALTER TABLE discarded_messages ADD COLUMN run_id TEXT;

CREATE TABLE client_requests (
    request_id   TEXT PRIMARY KEY,  -- the caller's idempotency key
    operation    TEXT NOT NULL,     -- what it did (start, raise_event, terminate, suspend, resume)
    instance_id  TEXT NOT NULL,     -- the instance it addressed
    created_at   REAL NOT NULL      -- when it was applied (swept after the retention period)
) WITHOUT ROWID;

CREATE INDEX client_requests_by_created ON client_requests (created_at);
