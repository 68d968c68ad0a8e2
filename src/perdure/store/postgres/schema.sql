-- perdure PostgreSQL schema: the complete current schema.
--
-- A new database is created from this file; an existing one is brought up to date by
-- the numbered files in migrations/. tests/store/test_postgres_schema.py proves that
-- applying every migration in order yields exactly this schema.
--
-- Conventions: times are DOUBLE PRECISION UTC epoch seconds (the store's clock, so tests
-- can control it); payloads (inputs, outputs, custom status) are JSON text written by
-- perdure.core.payload, NULL standing for None; events are JSON text written by
-- perdure.core.history.dumps_event (kept as text, not jsonb, so that what is read back is
-- byte for byte what was written); column names follow the Store API and the SQLite schema.
--
-- Locking (see perdure/store/postgres/orchestrations.py): an instance row is locked
-- (FOR UPDATE) by whoever decides about the instance: lock_orchestrations (SKIP LOCKED),
-- commit_turns, create_instance and purge. Lease rows are only written under that lock or
-- fenced by their token.

-- Applied migrations; the schema version is MAX(version).
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,        -- NNNN of migrations/NNNN_name.sql
    name        TEXT NOT NULL,              -- the migration's file name
    applied_at  DOUBLE PRECISION NOT NULL   -- when it was applied
);

-- One row per orchestration instance; describes its current execution.
CREATE TABLE instances (
    instance_id          TEXT PRIMARY KEY,                        -- user-chosen or generated id
    name                 TEXT NOT NULL,                           -- registered orchestration name
    status               TEXT NOT NULL,                           -- OrchestrationStatus value
    execution_id         INTEGER NOT NULL DEFAULT 1,              -- current execution (grows with continue-as-new)
    input                TEXT,                                    -- input of the current execution (JSON)
    output               TEXT,                                    -- result once COMPLETED (JSON)
    failure              TEXT,                                    -- Failure.to_dict() once FAILED (JSON)
    custom_status        TEXT,                                    -- last ctx.set_custom_status value (JSON)
    parent_instance_id   TEXT,                                    -- parent of a sub-orchestration, else NULL
    parent_execution_id  INTEGER,                                 -- parent execution that scheduled it
    parent_task_id       INTEGER,                                 -- parent's task id for this child
    created_at           DOUBLE PRECISION NOT NULL,               -- when the instance was created
    last_updated_at      DOUBLE PRECISION NOT NULL,               -- last write to this row
    history_event_count  INTEGER NOT NULL DEFAULT 0,              -- events in the current execution's history
    history_bytes        BIGINT NOT NULL DEFAULT 0,               -- UTF-8 size of those events
    waiting_on           TEXT,                                    -- WaitingOn.to_dict() after the last turn (JSON)
    turns                INTEGER NOT NULL DEFAULT 0,              -- InstanceStats.turns: turns committed
    full_replays         INTEGER NOT NULL DEFAULT 0,              -- InstanceStats.full_replays: turns replayed from event 0
    replayed_events      BIGINT NOT NULL DEFAULT 0,               -- InstanceStats.replayed_events: events replayed, summed
    last_turn_duration   DOUBLE PRECISION NOT NULL DEFAULT 0,     -- InstanceStats.last_turn_duration (seconds)
    last_progress_at     DOUBLE PRECISION,  -- InstanceStats.last_progress_at: last turn that progressed
    run_id               TEXT NOT NULL DEFAULT '',  -- the run token of the run this row describes (invariant 9)
    parent_run_id        TEXT,                      -- the parent's run token (a sub-orchestration), else NULL
    version              INTEGER,                   -- orchestration version of the current execution; NULL: not chosen yet
    -- the second of last_updated_at: instances_by_updated keys on it, so that the turns of
    -- an instance within one second update its row in place (HOT), writing no index entry
    last_updated_second  BIGINT GENERATED ALWAYS AS (floor(last_updated_at)::bigint) STORED,
    -- a wait of another process relies on the NOTIFY of this instance's end (watch_instance);
    -- the ends of the others send none
    watched              BOOLEAN NOT NULL DEFAULT false
);

-- list_instances: newest first, keyset paging on (created_at, instance_id).
CREATE INDEX instances_by_created ON instances (created_at, instance_id);

-- list_instances / purge_where filtered by status.
CREATE INDEX instances_by_status ON instances (status, created_at);

-- list_instances filtered by parent (children of an instance).
CREATE INDEX instances_by_parent ON instances (parent_instance_id) WHERE parent_instance_id IS NOT NULL;

-- instance_counts: counts by name and status from the index alone.
CREATE INDEX instances_by_name_status ON instances (name, status);

-- list_instances(sort="updated"): most recently updated first, the rows of each second
-- sorted by (last_updated_at, instance_id) as they are read (keyset paging on those).
CREATE INDEX instances_by_updated ON instances (last_updated_second);

-- The event-sourced history of every execution of every instance.
CREATE TABLE history (
    instance_id   TEXT NOT NULL,     -- the instance
    execution_id  INTEGER NOT NULL,  -- the execution (1, 2, ... across continue-as-new)
    sequence      INTEGER NOT NULL,  -- 0-based position in the execution's history
    event         TEXT NOT NULL,     -- the event (JSON)
    PRIMARY KEY (instance_id, execution_id, sequence)
);

-- Messages waiting to be applied by an orchestration turn.
CREATE TABLE orchestration_messages (
    message_id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- increases in enqueue order, never reused
    instance_id     TEXT NOT NULL,                                    -- target instance (may not exist yet)
    execution_id    INTEGER,                                          -- target execution; NULL: current at delivery
    kind            TEXT NOT NULL,                                    -- the event's class name
    event           TEXT NOT NULL,                                    -- the event (JSON)
    enqueued_at     DOUBLE PRECISION NOT NULL,                        -- when it was enqueued
    visible_at      DOUBLE PRECISION NOT NULL,                        -- not delivered before (timers, backoff)
    delivery_count  INTEGER NOT NULL DEFAULT 0,  -- times handed out or deferred
    run_id          TEXT                                -- target run; NULL: the run current at delivery
);

-- lock_orchestrations / next_visible_at: due messages, oldest first.
CREATE INDEX orchestration_messages_by_visible ON orchestration_messages (visible_at);

-- Per-instance message order (message_id) for delivery, commit and diagnosis.
CREATE INDEX orchestration_messages_by_instance ON orchestration_messages (instance_id, message_id);

-- Orchestration leases: at most one holder per instance.
CREATE TABLE orchestration_leases (
    instance_id    TEXT PRIMARY KEY,            -- the locked instance
    owner          TEXT NOT NULL,               -- the worker holding it
    token          TEXT NOT NULL,               -- fresh random token per lock; every write presents it
    expires_at     DOUBLE PRECISION NOT NULL,   -- after this another caller may take the lease over
    lease_seconds  DOUBLE PRECISION NOT NULL,   -- duration used to extend the lease on commit
    locked_at      DOUBLE PRECISION NOT NULL    -- when this token was issued
);

-- next_message_at: the first lease to expire that holds a message back.
CREATE INDEX orchestration_leases_by_expiry ON orchestration_leases (expires_at);

-- Activity tasks, queued or running.
CREATE TABLE activity_tasks (
    task_row_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the task's handle, never reused
    instance_id       TEXT NOT NULL,                                    -- instance that scheduled it
    execution_id      INTEGER NOT NULL,                                 -- execution that scheduled it
    task_id           INTEGER NOT NULL,                                 -- the execution's task id
    name              TEXT NOT NULL,                                    -- registered activity name
    input             TEXT,                                             -- activity input (JSON)
    attempt           INTEGER NOT NULL DEFAULT 1,                       -- retry attempt, from 1
    enqueued_at       DOUBLE PRECISION NOT NULL,                        -- when it was enqueued
    visible_at        DOUBLE PRECISION NOT NULL,                        -- unlocked: due time; locked: lease expiry
    delivery_count    INTEGER NOT NULL DEFAULT 0,                       -- times locked
    lease_owner       TEXT,                                             -- worker holding it, NULL when unlocked
    lease_token       TEXT,                                             -- fresh random token per lock
    lease_expires_at  DOUBLE PRECISION,                                 -- after this another caller may take it over
    locked_at         DOUBLE PRECISION,  -- when the current lease was taken (NULL when unlocked)
    run_id            TEXT                                -- run that scheduled it (NULL: queued before runs had tokens)
);

-- lock_activities / next_visible_at: due or lease-expired tasks, oldest first.
CREATE INDEX activity_tasks_by_visible ON activity_tasks (visible_at);

-- Tasks of one instance (terminal cleanup, purge, diagnosis).
CREATE INDEX activity_tasks_by_instance ON activity_tasks (instance_id);

-- Messages that could not be delivered after max_deliveries tries (invariant 3).
CREATE TABLE dead_letters (
    dead_letter_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- newest has the highest id
    message_id        BIGINT NOT NULL,                                  -- the message's id in the queue
    instance_id       TEXT NOT NULL,                                    -- its target instance
    execution_id      INTEGER,                                          -- its target execution
    event             TEXT NOT NULL,                                    -- the event (JSON)
    reason            TEXT NOT NULL,                                    -- DeadLetterReason value
    delivery_count    INTEGER NOT NULL,                                 -- tries made
    enqueued_at       DOUBLE PRECISION NOT NULL,                        -- when it was first enqueued
    dead_lettered_at  DOUBLE PRECISION NOT NULL,  -- when it was moved here
    run_id            TEXT                                -- its target run
);

CREATE INDEX dead_letters_by_instance ON dead_letters (instance_id);

-- Messages and tasks removed without being applied, with the reason (invariant 3).
CREATE TABLE discarded_messages (
    discard_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- newest has the highest id
    instance_id   TEXT NOT NULL,                                    -- the target instance
    execution_id  INTEGER,                                          -- the target execution
    event         TEXT NOT NULL,                                    -- the discarded event (JSON)
    reason        TEXT NOT NULL,                                    -- DiscardReason value
    detail        TEXT,                                             -- human-readable explanation
    discarded_at  DOUBLE PRECISION NOT NULL,  -- when it was discarded
    run_id        TEXT                                -- the target run
);

CREATE INDEX discarded_messages_by_instance ON discarded_messages (instance_id);

-- Worker heartbeats, for diagnosis (live workers, registered names).
CREATE TABLE workers (
    worker_id       TEXT PRIMARY KEY,             -- unique per worker process
    host            TEXT NOT NULL,                -- host name
    pid             INTEGER NOT NULL,             -- process id
    orchestrations  TEXT NOT NULL,                -- registered orchestration names (JSON list)
    activities      TEXT NOT NULL,                -- registered activity names (JSON list)
    concurrency     TEXT NOT NULL,                -- concurrency limits by kind (JSON object)
    started_at      DOUBLE PRECISION NOT NULL,    -- when the worker started
    heartbeat_at    DOUBLE PRECISION NOT NULL     -- last heartbeat
);

-- Request ids of client operations applied recently, so a retried operation applies once.
CREATE TABLE client_requests (
    request_id   TEXT PRIMARY KEY,  -- the caller's idempotency key
    operation    TEXT NOT NULL,     -- what it did (start, raise_event, terminate, suspend, resume)
    instance_id  TEXT NOT NULL,     -- the instance it addressed
    created_at   DOUBLE PRECISION NOT NULL    -- when it was applied (swept after the retention period)
);

-- The sweep of old request ids.
CREATE INDEX client_requests_by_created ON client_requests (created_at);
