-- Named queries of the SQLite store (loaded by queries.py).
--
-- Each query starts with "-- name: <identifier>". Parameters are named (:param); a list is
-- passed as one JSON array and expanded with json_each, so every query is one prepared
-- statement whatever the list length, and a NULL list means "no filter".
-- Terminal statuses are COMPLETED, FAILED and TERMINATED.


-- ===== instances ==========================================================================

-- name: get_instance
SELECT * FROM instances WHERE instance_id = :instance_id;

-- name: instances_among
-- lock_orchestrations: the rows of a batch of candidates, with their lease row's token and
-- expiry if they have one.
SELECT i.*, l.token AS held_token, l.expires_at AS held_until
FROM instances AS i
LEFT JOIN orchestration_leases AS l ON l.instance_id = i.instance_id
WHERE i.instance_id IN (SELECT value FROM json_each(:ids));

-- name: instances_with_leases
-- commit_turns: the rows of a batch of committing instances with their lease (if any).
SELECT i.*, l.token AS lease_token, l.lease_seconds AS lease_seconds
FROM instances AS i
LEFT JOIN orchestration_leases AS l ON l.instance_id = i.instance_id
WHERE i.instance_id IN (SELECT value FROM json_each(:ids));

-- name: insert_instance
-- A new run of an instance: PENDING (or as given), nothing run yet; its first execution is
-- 1, or the one after the last execution of the id's previous run.
INSERT INTO instances (
    instance_id, run_id, name, status, execution_id, input,
    parent_instance_id, parent_run_id, parent_execution_id, parent_task_id, created_at, last_updated_at, version
) VALUES (
    :instance_id, :run_id, :name, :status, :execution_id, :input,
    :parent_instance_id, :parent_run_id, :parent_execution_id, :parent_task_id, :now, :now, :version
);

-- name: update_instance_after_turn
-- The row after a committed turn; stats accumulate. orchestrations.py makes the statement
-- for a turn that keeps the status by leaving out the status line.
UPDATE instances SET
    status = :status,
    execution_id = :execution_id,
    version = COALESCE(:version, version),
    input = :input,
    output = :output,
    failure = :failure,
    custom_status = :custom_status,
    waiting_on = :waiting_on,
    history_event_count = :history_event_count,
    history_bytes = :history_bytes,
    last_updated_at = :now,
    turns = turns + 1,
    full_replays = full_replays + :full_replay,
    replayed_events = replayed_events + :replayed_events,
    last_turn_duration = :duration,
    last_progress_at = CASE WHEN :progressed THEN :now ELSE last_progress_at END
WHERE instance_id = :instance_id;

-- name: list_instances
-- Newest first; the cursor is the (created_at, instance_id) of the previous page's last row,
-- so rows inserted meanwhile (newer) never shift the pages after it.
SELECT * FROM instances
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:name IS NULL OR name = :name)
  AND (:version IS NULL OR version = :version)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:parent_instance_id IS NULL OR parent_instance_id = :parent_instance_id)
  AND (:prefix IS NULL OR substr(instance_id, 1, length(:prefix)) = :prefix)
  AND (:cursor_created IS NULL
       OR created_at < :cursor_created
       OR (created_at = :cursor_created AND instance_id < :cursor_id))
ORDER BY created_at DESC, instance_id DESC
LIMIT :limit;

-- name: terminal_instances_matching
-- purge_where: the terminal instances matching the list_instances filters.
SELECT instance_id FROM instances
WHERE status IN ('COMPLETED', 'FAILED', 'TERMINATED')
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:name IS NULL OR name = :name)
  AND (:version IS NULL OR version = :version)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:parent_instance_id IS NULL OR parent_instance_id = :parent_instance_id)
  AND (:prefix IS NULL OR substr(instance_id, 1, length(:prefix)) = :prefix);

-- name: terminal_instances_among
SELECT instance_id FROM instances
WHERE instance_id IN (SELECT value FROM json_each(:ids))
  AND status IN ('COMPLETED', 'FAILED', 'TERMINATED');

-- name: orphans_among
-- purge_instances: those of the ids that have no instance but left something behind (dead
-- letters, discard records, queued messages: a purged or never-created instance).
SELECT value AS instance_id FROM json_each(:ids) AS ids
WHERE NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.instance_id = ids.value)
  AND (EXISTS (SELECT 1 FROM dead_letters AS d WHERE d.instance_id = ids.value)
       OR EXISTS (SELECT 1 FROM discarded_messages AS x WHERE x.instance_id = ids.value)
       OR EXISTS (SELECT 1 FROM orchestration_messages AS m WHERE m.instance_id = ids.value));

-- name: orphans_with_prefix
-- purge_where: the ids (with the id prefix, if any) that have no instance but left dead
-- letters, discard records or queued messages behind.
SELECT instance_id FROM (
    SELECT instance_id FROM dead_letters
    UNION SELECT instance_id FROM discarded_messages
    UNION SELECT instance_id FROM orchestration_messages
) AS left_behind
WHERE NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.instance_id = left_behind.instance_id)
  AND (:prefix IS NULL OR substr(instance_id, 1, length(:prefix)) = :prefix);

-- name: delete_requests
DELETE FROM client_requests WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_instances
DELETE FROM instances WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_history
DELETE FROM history WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_messages
DELETE FROM orchestration_messages WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_tasks
DELETE FROM activity_tasks WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_leases
DELETE FROM orchestration_leases WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_dead_letters
DELETE FROM dead_letters WHERE instance_id IN (SELECT value FROM json_each(:ids));

-- name: delete_discards
DELETE FROM discarded_messages WHERE instance_id IN (SELECT value FROM json_each(:ids));


-- name: insert_request
-- A client operation's request id, unless it was recorded before (then it changes nothing).
INSERT INTO client_requests (request_id, operation, instance_id, created_at)
VALUES (:request_id, :operation, :instance_id, :now)
ON CONFLICT (request_id) DO NOTHING;


-- ===== history ============================================================================

-- name: insert_history
INSERT INTO history (instance_id, execution_id, sequence, event) VALUES (?, ?, ?, ?);

-- name: forget_history
-- Retention: the history of executions up to :up_to of one instance.
DELETE FROM history WHERE instance_id = :instance_id AND execution_id <= :up_to;

-- name: forget_discards
-- Retention: the discard records of executions up to :up_to of one instance.
DELETE FROM discarded_messages WHERE instance_id = :instance_id AND execution_id <= :up_to;

-- name: history_from
SELECT event FROM history
WHERE instance_id = :instance_id AND execution_id = :execution_id AND sequence >= :from_sequence
ORDER BY sequence;

-- name: history_page
-- LIMIT -1 means no limit in SQLite.
SELECT * FROM history
WHERE instance_id = :instance_id AND execution_id = :execution_id AND sequence > :after_sequence
ORDER BY sequence
LIMIT :limit;


-- ===== orchestration messages =============================================================

-- name: insert_message
INSERT INTO orchestration_messages (instance_id, run_id, execution_id, kind, event, enqueued_at, visible_at)
VALUES (:instance_id, :run_id, :execution_id, :kind, :event, :now, :visible_at);

-- name: orchestration_candidates
-- Instances with a due message and no live lease (or one of the caller's, :held), oldest
-- due message first. The inner
-- query walks the visible_at index and stops after :scan messages, so a lock never reads
-- the whole queue; the caller asks again if that yielded fewer than :limit instances and
-- the scan stopped at its bound (``scanned`` adds up to :scan).
-- :names holds routing keys (name@version, name@* for an instance whose version is not
-- chosen yet). With it, instances that do not exist or are terminal are still swept:
-- sorting their messages (defer, discard) needs no user code.
SELECT instance_id, MIN(visible_at) AS first_visible, MIN(message_id) AS first_message,
       COUNT(*) AS scanned
FROM (
    SELECT m.instance_id, m.visible_at, m.message_id
    FROM orchestration_messages AS m
    LEFT JOIN instances AS i ON i.instance_id = m.instance_id
    WHERE m.visible_at <= :now
      AND NOT EXISTS (
          SELECT 1 FROM orchestration_leases AS l
          WHERE l.instance_id = m.instance_id AND l.expires_at > :now
            AND (:held IS NULL OR l.token NOT IN (SELECT value FROM json_each(:held))))
      AND (:names IS NULL
           OR i.instance_id IS NULL
           OR i.status IN ('COMPLETED', 'FAILED', 'TERMINATED')
           OR i.name || '@' || COALESCE(i.version, '*') IN (SELECT value FROM json_each(:names)))
      AND (:instance_ids IS NULL OR m.instance_id IN (SELECT value FROM json_each(:instance_ids)))
    ORDER BY m.visible_at, m.message_id
    LIMIT :scan
)
GROUP BY instance_id
ORDER BY first_visible, first_message
LIMIT :limit;

-- name: visible_messages_among
-- lock_orchestrations: the visible messages of a batch of candidates.
SELECT * FROM orchestration_messages
WHERE instance_id IN (SELECT value FROM json_each(:ids)) AND visible_at <= :now
ORDER BY message_id;

-- name: visible_message_ids_among
-- commit_turns: the queued, due messages of instances whose turns apply handed-over
-- activity outcomes (any the turn did not consume came first: the turn must not commit).
SELECT instance_id, message_id FROM orchestration_messages
WHERE instance_id IN (SELECT value FROM json_each(:ids)) AND visible_at <= :now;

-- name: task_tokens
-- commit_turns: the lease tokens of the tasks whose outcomes a turn applies handed over.
SELECT task_row_id, lease_token FROM activity_tasks WHERE task_row_id IN (SELECT value FROM json_each(:ids));

-- name: message_owners
-- commit_turns: which of the consumed messages are still queued, and for which instance.
SELECT message_id, instance_id FROM orchestration_messages
WHERE message_id IN (SELECT value FROM json_each(:ids));

-- name: delete_messages_by_id
DELETE FROM orchestration_messages WHERE message_id IN (SELECT value FROM json_each(:ids));

-- name: any_messages_among
SELECT 1 FROM orchestration_messages WHERE instance_id IN (SELECT value FROM json_each(:ids)) LIMIT 1;

-- name: has_messages
-- An eager start: is anything already queued for the new instance's id?
SELECT 1 FROM orchestration_messages WHERE instance_id = :instance_id LIMIT 1;

-- name: messages_of_instance
SELECT * FROM orchestration_messages WHERE instance_id = :instance_id ORDER BY message_id;

-- name: pending_start
-- When the not-yet-started execution's ExecutionStarted becomes due (NULL if there is none).
SELECT MIN(visible_at) AS visible_at FROM orchestration_messages
WHERE instance_id = :instance_id AND execution_id = :execution_id AND kind = 'ExecutionStarted';

-- name: mark_delivered
UPDATE orchestration_messages SET delivery_count = delivery_count + 1
WHERE message_id IN (SELECT value FROM json_each(:ids));

-- name: hold_messages
UPDATE orchestration_messages SET visible_at = :visible_at
WHERE message_id IN (SELECT value FROM json_each(:ids));

-- name: defer_message
UPDATE orchestration_messages SET delivery_count = :tries, visible_at = :visible_at
WHERE message_id = :message_id;

-- name: hold_lease
-- abandon with retry_after: the lease passes to a fresh token nobody holds, until
-- :expires_at, so nothing of the instance is delivered before then, and its messages (those
-- queued and those still to come) keep their order (invariant 5).
UPDATE orchestration_leases SET token = :new_token, expires_at = :expires_at
WHERE instance_id = :instance_id AND token = :token;

-- name: delete_message
DELETE FROM orchestration_messages WHERE message_id = :message_id;

-- name: dead_letter_message
INSERT INTO dead_letters (
    message_id, instance_id, run_id, execution_id, event, reason, delivery_count, enqueued_at, dead_lettered_at
)
SELECT message_id, instance_id, run_id, execution_id, event, :reason, :tries, enqueued_at, :now
FROM orchestration_messages WHERE message_id = :message_id;

-- name: discard_message
INSERT INTO discarded_messages (instance_id, run_id, execution_id, event, reason, detail, discarded_at)
SELECT instance_id, run_id, execution_id, event, :reason, :detail, :now
FROM orchestration_messages WHERE message_id = :message_id;

-- name: discard_consumed
-- A turn's discarded message, only if it belongs to the committing instance.
INSERT INTO discarded_messages (instance_id, run_id, execution_id, event, reason, detail, discarded_at)
SELECT instance_id, run_id, execution_id, event, :reason, :detail, :now
FROM orchestration_messages WHERE message_id = :message_id AND instance_id = :instance_id;

-- name: insert_discard
INSERT INTO discarded_messages (instance_id, run_id, execution_id, event, reason, detail, discarded_at)
VALUES (:instance_id, :run_id, :execution_id, :event, :reason, :detail, :now);


-- ===== orchestration leases ===============================================================

-- name: upsert_lease
-- Only called for an instance with no live lease; replacing an expired lease's token is the
-- takeover that fences its old holder out.
INSERT INTO orchestration_leases (instance_id, owner, token, expires_at, lease_seconds, locked_at)
VALUES (:instance_id, :owner, :token, :expires_at, :lease_seconds, :now)
ON CONFLICT (instance_id) DO UPDATE SET
    owner = excluded.owner,
    token = excluded.token,
    expires_at = excluded.expires_at,
    lease_seconds = excluded.lease_seconds,
    locked_at = excluded.locked_at;

-- name: renew_lease
UPDATE orchestration_leases SET expires_at = :expires_at, lease_seconds = :lease_seconds
WHERE instance_id = :instance_id AND token = :token;

-- name: extend_lease
UPDATE orchestration_leases SET expires_at = :expires_at
WHERE instance_id = :instance_id AND token = :token;

-- name: release_lease
DELETE FROM orchestration_leases WHERE instance_id = :instance_id AND token = :token;


-- ===== activity tasks =====================================================================

-- name: insert_activity_task
INSERT INTO activity_tasks (
    instance_id, run_id, execution_id, task_id, name, input, attempt, enqueued_at, visible_at
) VALUES (
    :instance_id, :run_id, :execution_id, :task_id, :name, :input, :attempt, :now, :visible_at
);

-- name: insert_locked_activity_task
-- A task written locked for the worker whose round's turn schedules it (take_scheduled).
INSERT INTO activity_tasks (
    instance_id, run_id, execution_id, task_id, name, input, attempt, enqueued_at, visible_at,
    lease_owner, lease_token, lease_expires_at, delivery_count, locked_at
) VALUES (
    :instance_id, :run_id, :execution_id, :task_id, :name, :input, :attempt, :now, :visible_at,
    :lease_owner, :lease_token, :lease_expires_at, :delivery_count, :locked_at
);

-- name: activity_candidates
-- Due tasks and tasks whose lease expired (a locked task's visible_at is its lease expiry),
-- but not the caller's own running tasks (their leases may have expired while the store
-- did not answer).
SELECT * FROM activity_tasks
WHERE visible_at <= :now
  AND (:names IS NULL OR name IN (SELECT value FROM json_each(:names)))
  AND (:task_row_ids IS NULL OR task_row_id IN (SELECT value FROM json_each(:task_row_ids)))
  AND task_row_id NOT IN (SELECT value FROM json_each(:running))
ORDER BY visible_at, task_row_id
LIMIT :limit;

-- name: lock_activity_task
UPDATE activity_tasks SET
    lease_owner = :owner,
    lease_token = :token,
    lease_expires_at = :expires_at,
    visible_at = :expires_at,
    delivery_count = delivery_count + 1,
    locked_at = :now
WHERE task_row_id = :task_row_id;

-- name: tasks_with_instances
-- complete_activities: the tasks with their instance's status, current execution and run.
SELECT t.*, i.status AS instance_status, i.execution_id AS current_execution, i.run_id AS current_run
FROM activity_tasks AS t
LEFT JOIN instances AS i ON i.instance_id = t.instance_id
WHERE t.task_row_id IN (SELECT value FROM json_each(:ids));

-- name: renew_activity_lease
UPDATE activity_tasks SET lease_expires_at = :expires_at, visible_at = :expires_at
WHERE task_row_id = :task_row_id AND lease_token = :token;

-- name: abandon_activity
UPDATE activity_tasks SET
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, locked_at = NULL,
    visible_at = :visible_at
WHERE task_row_id = :task_row_id AND lease_token = :token;

-- name: unlocked_tasks_of_instance
SELECT * FROM activity_tasks
WHERE instance_id = :instance_id AND (lease_token IS NULL OR lease_expires_at <= :now);

-- name: tasks_of_instance
SELECT * FROM activity_tasks WHERE instance_id = :instance_id ORDER BY task_row_id;

-- name: delete_task
DELETE FROM activity_tasks WHERE task_row_id = :task_row_id;


-- ===== diagnosis reads ====================================================================

-- name: queue_stats
SELECT
    (SELECT COUNT(*) FROM orchestration_messages) AS orchestration_depth,
    (SELECT COUNT(*) FROM orchestration_messages WHERE visible_at <= :now) AS orchestration_visible,
    (SELECT MIN(visible_at) FROM orchestration_messages WHERE visible_at <= :now) AS oldest_orchestration,
    (SELECT COUNT(*) FROM activity_tasks) AS activity_depth,
    (SELECT COUNT(*) FROM activity_tasks WHERE visible_at <= :now) AS activity_visible,
    (SELECT COUNT(*) FROM activity_tasks
     WHERE lease_token IS NOT NULL AND lease_expires_at > :now) AS activity_locked,
    (SELECT MIN(visible_at) FROM activity_tasks WHERE visible_at <= :now) AS oldest_activity,
    (SELECT COUNT(*) FROM dead_letters) AS dead_letters;

-- name: dead_letters
SELECT * FROM dead_letters
WHERE (:instance_id IS NULL OR instance_id = :instance_id)
ORDER BY dead_letter_id DESC
LIMIT :limit;

-- name: discarded_messages
SELECT * FROM discarded_messages
WHERE (:instance_id IS NULL OR instance_id = :instance_id)
ORDER BY discard_id DESC
LIMIT :limit;

-- name: next_task_at
-- The earliest visible_at of an activity task (a locked task's is its lease expiry).
SELECT MIN(visible_at) AS t FROM activity_tasks;

-- name: next_message_at
-- The earliest time a message can be taken: a message of a leased instance cannot be taken
-- before the lease expires. The earliest of: the first message, in visible_at order, that
-- no lease holds back; the first lease to expire, up to :horizon, that holds a message
-- back. Each part walks an index and stops at its first row (the first walks past the
-- messages that leases hold back, which a worker takes as soon as they are due). A message
-- held back by a lease that expires after :horizon is left out.
SELECT MIN(t) AS t FROM (
    SELECT t FROM (
        SELECT m.visible_at AS t FROM orchestration_messages AS m
        WHERE NOT EXISTS (
            SELECT 1 FROM orchestration_leases AS l
            WHERE l.instance_id = m.instance_id AND l.expires_at > m.visible_at)
        ORDER BY m.visible_at
        LIMIT 1)
    UNION ALL
    SELECT t FROM (
        SELECT l.expires_at AS t FROM orchestration_leases AS l
        WHERE l.expires_at <= :horizon
          AND EXISTS (
              SELECT 1 FROM orchestration_messages AS m
              WHERE m.instance_id = l.instance_id AND m.visible_at < l.expires_at)
        ORDER BY l.expires_at
        LIMIT 1)
);

-- ===== fleet reads (diagnosis) ============================================================

-- name: instance_counts
SELECT name, status, COUNT(*) AS count FROM instances GROUP BY name, status ORDER BY name, status;

-- name: oldest_instances
-- Oldest first; OFFSET reads the age at a rank (percentiles of the fleet report).
SELECT instance_id, name, status, created_at, last_updated_at, last_progress_at,
       history_event_count, history_bytes
FROM instances
WHERE status IN (SELECT value FROM json_each(:statuses))
ORDER BY created_at, instance_id
LIMIT :limit OFFSET :offset;

-- name: oldest_instances_of_status
-- The same for one status: walks the (status, created_at) index instead of sorting.
SELECT instance_id, name, status, created_at, last_updated_at, last_progress_at,
       history_event_count, history_bytes
FROM instances
WHERE status = :status
ORDER BY created_at, instance_id
LIMIT :limit OFFSET :offset;

-- name: stalled_instances
-- Live instances whose last progress (or creation) is before :before, stalest first.
SELECT instance_id, name, status, created_at, last_updated_at, last_progress_at,
       history_event_count, history_bytes
FROM instances
WHERE status IN ('PENDING', 'RUNNING', 'SUSPENDED')
  AND COALESCE(last_progress_at, created_at) < :before
ORDER BY COALESCE(last_progress_at, created_at), instance_id
LIMIT :limit;

-- name: count_stalled_instances
SELECT COUNT(*) AS total FROM instances
WHERE status IN ('PENDING', 'RUNNING', 'SUSPENDED')
  AND COALESCE(last_progress_at, created_at) < :before;

-- ===== workers ============================================================================

-- name: upsert_worker
INSERT INTO workers (
    worker_id, host, pid, orchestrations, activities, concurrency, started_at, heartbeat_at
) VALUES (
    :worker_id, :host, :pid, :orchestrations, :activities, :concurrency, :started_at, :heartbeat_at
)
ON CONFLICT (worker_id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    orchestrations = excluded.orchestrations,
    activities = excluded.activities,
    concurrency = excluded.concurrency,
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at;

-- name: delete_worker
DELETE FROM workers WHERE worker_id = :worker_id;

-- name: forget_workers
-- Retention: workers whose last heartbeat is older than :before (they crashed).
DELETE FROM workers WHERE heartbeat_at < :before;

-- name: forget_requests
-- Retention: request ids of client operations recorded before :before.
DELETE FROM client_requests WHERE created_at < :before;

-- name: list_workers
SELECT * FROM workers
WHERE (:alive_since IS NULL OR heartbeat_at >= :alive_since)
ORDER BY worker_id;

-- ===== queues per name (dashboard) ========================================================

-- name: queue_depths
-- Depth, due rows and the oldest due time of each queue: orchestration messages by their
-- target's orchestration name (a primary-key lookup per message; NULL for a message to an
-- instance that does not exist), activity tasks by activity name. The queue tables hold only
-- work in flight, so one pass over each is the whole cost.
SELECT 'orchestration' AS kind, i.name AS name, COUNT(*) AS depth,
       SUM(m.visible_at <= :now) AS visible,
       MIN(CASE WHEN m.visible_at <= :now THEN m.visible_at END) AS oldest_visible
FROM orchestration_messages AS m
LEFT JOIN instances AS i ON i.instance_id = m.instance_id
GROUP BY i.name
UNION ALL
SELECT 'activity', name, COUNT(*),
       SUM(visible_at <= :now),
       MIN(CASE WHEN visible_at <= :now THEN visible_at END)
FROM activity_tasks
GROUP BY name;

-- name: list_instances_by_updated
-- list_instances with sort="updated": most recently updated first, the cursor being the
-- (last_updated_at, instance_id) of the previous page's last row (instances_by_updated).
SELECT * FROM instances
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:name IS NULL OR name = :name)
  AND (:version IS NULL OR version = :version)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:parent_instance_id IS NULL OR parent_instance_id = :parent_instance_id)
  AND (:prefix IS NULL OR substr(instance_id, 1, length(:prefix)) = :prefix)
  AND (:cursor_created IS NULL
       OR last_updated_at < :cursor_created
       OR (last_updated_at = :cursor_created AND instance_id < :cursor_id))
ORDER BY last_updated_at DESC, instance_id DESC
LIMIT :limit;

-- name: set_parent
-- A child a reset run still awaits reports to that run from now on.
UPDATE instances SET
    parent_instance_id = :parent_instance_id,
    parent_run_id = :parent_run_id,
    parent_execution_id = :parent_execution_id,
    parent_task_id = :parent_task_id
WHERE instance_id = :instance_id;
