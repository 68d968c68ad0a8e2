-- Named queries of the PostgreSQL store (loaded by queries.py).
--
-- Each query starts with "-- name: <identifier>". Parameters are psycopg named placeholders
-- (%(param)s), bound server-side; a list is passed as one array parameter (= ANY(...)), a
-- NULL list meaning "no filter". Parameters whose type the server cannot infer are cast.
-- Terminal statuses are COMPLETED, FAILED and TERMINATED.
--
-- Locking: "FOR UPDATE" marks the rows a decision is made on (READ COMMITTED re-reads a row
-- once it is locked, so the decision sees the latest committed version); "SKIP LOCKED"
-- is used where another worker holding the row means "not for me, take the next one".
-- Several instance rows are locked in instance id order, COLLATE "C" (byte order, the
-- order Python sorts str in), so that no two transactions wait on each other.


-- ===== instances ==========================================================================

-- name: get_instance
SELECT * FROM instances WHERE instance_id = %(instance_id)s;

-- name: watch_instance
-- A wait of another process relies on the NOTIFY of this instance's end: from now on its
-- end sends one (notify_ends). Under the instance's row lock: a transaction that ends the
-- instance either committed before (the wait then reads it ended) or sees the mark.
UPDATE instances SET watched = true
WHERE instance_id = %(instance_id)s AND NOT watched AND status NOT IN ('COMPLETED', 'FAILED', 'TERMINATED');

-- name: lock_instance
-- Whoever decides about an instance (commit, create, purge) holds its row.
SELECT * FROM instances WHERE instance_id = %(instance_id)s FOR UPDATE;

-- name: instance_exists
SELECT 1 FROM instances WHERE instance_id = %(instance_id)s;

-- name: lock_instance_id
-- Serializes the creation of an instance id with the sweep of messages addressed to it
-- while it does not exist (a missing row cannot be locked). Two-key form: its own space.
SELECT pg_advisory_xact_lock(7250417, hashtext(%(instance_id)s));

-- name: try_lock_instance_id
SELECT pg_try_advisory_xact_lock(7250417, hashtext(%(instance_id)s)) AS locked;

-- name: insert_instance
-- A new run of an instance: PENDING (or as given), nothing run yet; its first execution is
-- 1, or the one after the last execution of the id's previous run. Nothing is inserted if
-- the id is taken (a concurrent start); the caller then reads the existing row.
INSERT INTO instances (
    instance_id, run_id, name, status, execution_id, input,
    parent_instance_id, parent_run_id, parent_execution_id, parent_task_id, created_at, last_updated_at, version
) VALUES (
    %(instance_id)s, %(run_id)s, %(name)s, %(status)s, %(execution_id)s, %(input)s,
    %(parent_instance_id)s, %(parent_run_id)s, %(parent_execution_id)s, %(parent_task_id)s, %(now)s, %(now)s, %(version)s
)
ON CONFLICT (instance_id) DO NOTHING
RETURNING instance_id;

-- name: insert_started_instance
-- A fresh id's first run as its first turn, written in the same transaction, leaves it (an
-- eager or handed start, create_and_run): the turn's write then adds only its history and
-- tasks (write_one_turn for a started turn). The id was made at random, so it is not
-- looked up: should it be taken all the same, the insert fails the transaction, which then
-- runs again reading the id first.
INSERT INTO instances (
    instance_id, run_id, name, status, execution_id, input,
    parent_instance_id, parent_run_id, parent_execution_id, parent_task_id, created_at, last_updated_at, version,
    output, failure, custom_status, waiting_on, history_event_count, history_bytes,
    turns, full_replays, replayed_events, last_turn_duration, last_progress_at
) VALUES (
    %(instance_id)s, %(run_id)s, %(name)s, %(status)s, %(execution_id)s, %(input)s,
    %(parent_instance_id)s, %(parent_run_id)s, %(parent_execution_id)s, %(parent_task_id)s, %(now)s, %(now)s, %(version)s,
    %(output)s, %(failure)s, %(custom_status)s, %(waiting_on)s, %(history_event_count)s, %(history_bytes)s,
    1, %(full_replay)s, %(replayed_events)s, %(duration)s, CASE WHEN %(progressed)s::boolean THEN %(now)s::float8 END
);

-- name: lock_committing
-- commit_turns: the committing instances, locked in one order. The list as a subquery
-- (here and in commit_checks): the planner then costs the statement the same whatever the
-- list holds, and the prepared statement keeps its generic plan instead of being planned
-- again at every call.
SELECT * FROM instances WHERE instance_id = ANY((SELECT %(ids)s::text[])::text[])
ORDER BY instance_id COLLATE "C"
FOR UPDATE;

-- name: lock_committing_only
-- lock_committing for an optimistic commit, which reads nothing back: the same locks in the
-- same order, without sending the rows (their payloads may be large).
SELECT instance_id FROM instances WHERE instance_id = ANY((SELECT %(ids)s::text[])::text[])
ORDER BY instance_id COLLATE "C"
FOR UPDATE;

-- name: commit_checks
-- commit_turns, in a statement that starts once lock_committing holds the instances (a fresh
-- snapshot, so a takeover or a commit that held them meanwhile is seen: nobody changes a
-- lease's holder or an instance's messages without holding its row), one row per fact:
-- 'lease': the lease of a locked instance (token, lease_seconds);
-- 'owner': a consumed message still queued, and for which instance;
-- 'task': the lease token of a task whose outcome a turn applies handed over;
-- 'due': a queued, due message of an instance whose turn applies handed-over outcomes (any
-- the turn did not consume came first: the turn must not commit).
SELECT 'lease' AS fact, instance_id, token, lease_seconds, NULL::bigint AS id
FROM orchestration_leases WHERE instance_id = ANY((SELECT %(ids)s::text[])::text[])
UNION ALL
SELECT 'owner', instance_id, NULL, NULL, message_id
FROM orchestration_messages WHERE message_id = ANY((SELECT %(consumed)s::bigint[])::bigint[])
UNION ALL
SELECT 'task', NULL, lease_token, NULL, task_row_id
FROM activity_tasks WHERE task_row_id = ANY((SELECT %(tasks)s::bigint[])::bigint[])
UNION ALL
SELECT 'due', instance_id, NULL, NULL, message_id
FROM orchestration_messages WHERE instance_id = ANY((SELECT %(handing)s::text[])::text[]) AND visible_at <= %(now)s;

-- name: write_plain_turns
-- commit_turns: the writes of a group's plain turns (GroupWrite) in one statement, with the
-- deletion of the tasks whose outcomes committed turns applied. Each part touches rows no
-- other part touches (the turns' instances, leases and consumed messages are this
-- transaction's, locked), so one snapshot for all of them is each turn's own order. What a
-- turn appends follows the instance row as this statement finds it (history sequence and
-- counts; the lease keeps its length).
-- :turns is a JSON array of objects (one per turn); :events a JSON array of objects
-- (instance_id, execution_id, n, event), n counting the turn's events from 0, whose event
-- is the stored JSON text itself (json, not jsonb: the text is kept byte for byte), each
-- parsed once (json_to_recordset; an operator such as ->> parses its operand again); :tasks
-- and :messages JSON arrays of objects, the messages in the order their ids must follow;
-- :handed the task row ids. A task with a lease (lease_owner, lease_token, ...) is written
-- locked for its worker (a round's take_scheduled), and returned.
-- The check flag (TRUE or FALSE, written into the text: two statements, each with one
-- plan; see orchestrations.py): the statement checks each turn itself, as commit_turns
-- does before it writes (an optimistic commit, sent after lock_committing_only without reading
-- anything in between: this statement starts once the instances are locked, on a fresh
-- snapshot). A turn that fails a check fails the statement, and with it the transaction,
-- with the error of casting 'perdure: commit refused ...' to an integer (a query cannot
-- raise otherwise); the round is then run again with the checks read first. The flags
-- consumed_check, handed_check and ended_check (written into the text too) keep the checks
-- that only turns which consumed messages, applied handed-over outcomes or end their
-- instance need: FALSE when no turn of the group does, and the planner drops the check.
-- Every read of a table goes through an index whatever the table holds: the planner takes
-- json_to_recordset for 100 rows, and would rather read a table of a few thousand rows
-- whole than look 100 rows up in it; so each read is also restricted to :ids (the turns'
-- instances), to the consumed messages' ids or to the handed tasks' ids, which it
-- estimates at a few rows. The lists as subqueries, as in lock_committing: the prepared
-- statement then keeps its generic plan (a plan made for a list's actual length is no
-- better, and planning this statement costs more than running it).
WITH turn AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(turns)s::json) AS t (
        instance_id text, run_id text, token text, execution_id integer, consumed bigint[],
        handed bigint[], handed_tokens text[], status text, version integer, output text,
        failure text, custom_status text, waiting_on text, new_events integer, new_bytes bigint,
        full_replay integer, replayed_events integer, duration float8, progressed boolean,
        release boolean, extend boolean
    )
), refused AS MATERIALIZED (
    SELECT CAST('perdure: commit refused for instance ' || t.instance_id AS integer) AS refusal
    FROM turn AS t
    WHERE %(check)s AND NOT (
        EXISTS (
            SELECT 1 FROM instances AS i
            WHERE i.instance_id = t.instance_id AND i.status NOT IN ('COMPLETED', 'FAILED', 'TERMINATED')
              AND i.execution_id = t.execution_id AND (t.run_id IS NULL OR i.run_id = t.run_id)
        )
        AND EXISTS (
            SELECT 1 FROM orchestration_leases AS l
            WHERE l.instance_id = ANY((SELECT %(ids)s::text[])::text[]) AND l.instance_id = t.instance_id AND l.token = t.token
        )
        AND (NOT %(consumed_check)s OR (
            SELECT count(*) FROM orchestration_messages AS m
            WHERE m.message_id = ANY(t.consumed) AND m.instance_id = t.instance_id
        ) = cardinality(t.consumed))
        AND (NOT %(handed_check)s OR (
            SELECT count(*) FROM unnest(t.handed, t.handed_tokens) AS h (task_row_id, token)
            JOIN activity_tasks AS a ON a.task_row_id = h.task_row_id AND a.lease_token = h.token
            WHERE a.task_row_id = ANY(t.handed)
        ) = cardinality(t.handed) AND (cardinality(t.handed) = 0 OR NOT EXISTS (
            SELECT 1 FROM orchestration_messages AS m
            WHERE m.instance_id = t.instance_id AND m.visible_at <= %(now)s AND m.message_id <> ALL(t.consumed)
        )))
        -- A turn that ends its instance unread: the instance reports to no parent, and it
        -- has no queued task to discard (else the checks are read, and the record written).
        AND (NOT %(ended_check)s OR t.status NOT IN ('COMPLETED', 'FAILED', 'TERMINATED') OR (
            NOT EXISTS (
                SELECT 1 FROM instances AS i
                WHERE i.instance_id = ANY((SELECT %(ids)s::text[])::text[]) AND i.instance_id = t.instance_id
                  AND i.parent_instance_id IS NOT NULL
            )
            AND NOT EXISTS (
                SELECT 1 FROM activity_tasks AS a
                WHERE a.instance_id = t.instance_id AND (a.lease_token IS NULL OR a.lease_expires_at <= %(now)s)
                  AND a.task_row_id <> ALL(t.handed)
            )
        ))
    )
), consumed AS (
    DELETE FROM orchestration_messages AS m USING turn
    WHERE m.message_id = ANY((SELECT %(consumed)s::bigint[])::bigint[])
      AND m.instance_id = turn.instance_id AND m.message_id = ANY(turn.consumed)
), events AS (
    INSERT INTO history (instance_id, execution_id, sequence, event)
    SELECT i.instance_id, e.execution_id, i.history_event_count + e.n, e.event::text
    FROM json_to_recordset(%(events)s::json) AS e (instance_id text, execution_id integer, n integer, event json)
    JOIN instances AS i ON i.instance_id = e.instance_id
    WHERE i.instance_id = ANY((SELECT %(ids)s::text[])::text[])
), instance AS (
    UPDATE instances AS i SET
        status = turn.status,
        version = COALESCE(turn.version, i.version),
        output = turn.output,
        failure = turn.failure,
        custom_status = turn.custom_status,
        waiting_on = turn.waiting_on,
        history_event_count = i.history_event_count + turn.new_events,
        history_bytes = i.history_bytes + turn.new_bytes,
        last_updated_at = %(now)s,
        turns = i.turns + 1,
        full_replays = i.full_replays + turn.full_replay,
        replayed_events = i.replayed_events + turn.replayed_events,
        last_turn_duration = turn.duration,
        last_progress_at = CASE WHEN turn.progressed THEN %(now)s ELSE i.last_progress_at END
    FROM turn
    WHERE i.instance_id = ANY((SELECT %(ids)s::text[])::text[]) AND i.instance_id = turn.instance_id
), tasks AS (
    INSERT INTO activity_tasks (
        instance_id, run_id, execution_id, task_id, name, input, attempt, enqueued_at, visible_at,
        lease_owner, lease_token, lease_expires_at, delivery_count, locked_at
    )
    SELECT t.instance_id, t.run_id, t.execution_id, t.task_id, t.name, t.input, t.attempt, %(now)s, t.visible_at,
           t.lease_owner, t.lease_token, t.lease_expires_at, COALESCE(t.delivery_count, 0), t.locked_at
    FROM ROWS FROM (json_to_recordset(%(tasks)s::json) AS (
        instance_id text, run_id text, execution_id integer, task_id integer, name text, input text,
        attempt integer, visible_at float8, lease_owner text, lease_token text, lease_expires_at float8,
        delivery_count integer, locked_at float8
    )) WITH ORDINALITY AS t (
        instance_id, run_id, execution_id, task_id, name, input, attempt, visible_at,
        lease_owner, lease_token, lease_expires_at, delivery_count, locked_at, n
    )
    ORDER BY t.n
    RETURNING task_row_id, instance_id, execution_id, task_id, name, input, attempt, lease_token, enqueued_at,
              delivery_count, run_id
), messages AS (
    INSERT INTO orchestration_messages (instance_id, run_id, execution_id, kind, event, enqueued_at, visible_at)
    SELECT m.instance_id, m.run_id, m.execution_id, m.kind, m.event, %(now)s, m.visible_at
    FROM ROWS FROM (json_to_recordset(%(messages)s::json) AS (
        instance_id text, run_id text, execution_id integer, kind text, event text, visible_at float8
    )) WITH ORDINALITY AS m (instance_id, run_id, execution_id, kind, event, visible_at, n)
    ORDER BY m.n
), released AS (
    DELETE FROM orchestration_leases AS l USING turn
    WHERE turn.release AND l.instance_id = ANY((SELECT %(ids)s::text[])::text[]) AND l.instance_id = turn.instance_id AND l.token = turn.token
), extended AS (
    UPDATE orchestration_leases AS l SET expires_at = %(now)s + l.lease_seconds
    FROM turn
    WHERE NOT turn.release AND turn.extend AND l.instance_id = ANY((SELECT %(ids)s::text[])::text[])
      AND l.instance_id = turn.instance_id AND l.token = turn.token
), handed AS (
    DELETE FROM activity_tasks WHERE task_row_id = ANY(%(handed)s::bigint[])
)
-- The tasks written locked (one row of NULLs if none): the left side is always read, and
-- with it the checks.
SELECT tasks.* FROM (SELECT count(refusal) FROM refused) AS checked
LEFT JOIN tasks ON tasks.lease_token IS NOT NULL;

-- name: write_one_turn
-- commit_turns: write_plain_turns for a group of one turn (GroupWrite), with the same parts,
-- the same checks and flags, and the same tasks, messages and answer (the parts both write
-- the same way are the same text; a test keeps them so). The turn's fields are parameters
-- of their own (:instance_id, :run_id, :token, :execution_id, :turn_handed (its handed
-- tasks; :handed, those the statement deletes), :handed_tokens, :status, ... as in :turns),
-- and its events the text[] of their stored JSON (:event_texts), in order. With no row
-- source for the turn, the server runs each check once, as an index lookup of parameters,
-- and each write as a lookup by key: a sequential step costs it a fifth less CPU than
-- through write_plain_turns.
WITH refused AS MATERIALIZED (
    SELECT CAST('perdure: commit refused for instance ' || %(instance_id)s::text AS integer) AS refusal
    WHERE %(check)s AND NOT (
        EXISTS (
            SELECT 1 FROM instances AS i
            WHERE i.instance_id = %(instance_id)s::text AND i.status NOT IN ('COMPLETED', 'FAILED', 'TERMINATED')
              AND i.execution_id = %(execution_id)s::integer
              AND (%(run_id)s::text IS NULL OR i.run_id = %(run_id)s::text)
        )
        AND EXISTS (
            SELECT 1 FROM orchestration_leases AS l
            WHERE l.instance_id = %(instance_id)s::text AND l.token = %(token)s::text
        )
        AND (NOT %(consumed_check)s OR (
            SELECT count(*) FROM orchestration_messages AS m
            WHERE m.message_id = ANY(%(consumed)s::bigint[]) AND m.instance_id = %(instance_id)s::text
        ) = cardinality(%(consumed)s::bigint[]))
        AND (NOT %(handed_check)s OR (
            SELECT count(*) FROM unnest(%(turn_handed)s::bigint[], %(handed_tokens)s::text[]) AS h (task_row_id, token)
            JOIN activity_tasks AS a ON a.task_row_id = h.task_row_id AND a.lease_token = h.token
            WHERE a.task_row_id = ANY(%(turn_handed)s::bigint[])
        ) = cardinality(%(turn_handed)s::bigint[]) AND (cardinality(%(turn_handed)s::bigint[]) = 0 OR NOT EXISTS (
            SELECT 1 FROM orchestration_messages AS m
            WHERE m.instance_id = %(instance_id)s::text AND m.visible_at <= %(now)s
              AND m.message_id <> ALL(%(consumed)s::bigint[])
        )))
        AND (NOT %(ended_check)s OR %(status)s::text NOT IN ('COMPLETED', 'FAILED', 'TERMINATED') OR (
            NOT EXISTS (
                SELECT 1 FROM instances AS i
                WHERE i.instance_id = %(instance_id)s::text AND i.parent_instance_id IS NOT NULL
            )
            AND NOT EXISTS (
                SELECT 1 FROM activity_tasks AS a
                WHERE a.instance_id = %(instance_id)s::text AND (a.lease_token IS NULL OR a.lease_expires_at <= %(now)s)
                  AND a.task_row_id <> ALL(%(turn_handed)s::bigint[])
            )
        ))
    )
), consumed AS (
    DELETE FROM orchestration_messages AS m
    WHERE m.message_id = ANY(%(consumed)s::bigint[]) AND m.instance_id = %(instance_id)s::text
), events AS (
    INSERT INTO history (instance_id, execution_id, sequence, event)
    SELECT i.instance_id, %(execution_id)s::integer, i.history_event_count + e.n - 1, e.event
    FROM instances AS i, unnest(%(event_texts)s::text[]) WITH ORDINALITY AS e (event, n)
    WHERE i.instance_id = %(instance_id)s::text
), instance AS (
    UPDATE instances AS i SET
        status = %(status)s::text,
        version = COALESCE(%(version)s::integer, i.version),
        output = %(output)s::text,
        failure = %(failure)s::text,
        custom_status = %(custom_status)s::text,
        waiting_on = %(waiting_on)s::text,
        history_event_count = i.history_event_count + %(new_events)s::integer,
        history_bytes = i.history_bytes + %(new_bytes)s::bigint,
        last_updated_at = %(now)s,
        turns = i.turns + 1,
        full_replays = i.full_replays + %(full_replay)s::integer,
        replayed_events = i.replayed_events + %(replayed_events)s::bigint,
        last_turn_duration = %(duration)s::float8,
        last_progress_at = CASE WHEN %(progressed)s::boolean THEN %(now)s ELSE i.last_progress_at END
    WHERE i.instance_id = %(instance_id)s::text
), tasks AS (
    INSERT INTO activity_tasks (
        instance_id, run_id, execution_id, task_id, name, input, attempt, enqueued_at, visible_at,
        lease_owner, lease_token, lease_expires_at, delivery_count, locked_at
    )
    SELECT t.instance_id, t.run_id, t.execution_id, t.task_id, t.name, t.input, t.attempt, %(now)s, t.visible_at,
           t.lease_owner, t.lease_token, t.lease_expires_at, COALESCE(t.delivery_count, 0), t.locked_at
    FROM ROWS FROM (json_to_recordset(%(tasks)s::json) AS (
        instance_id text, run_id text, execution_id integer, task_id integer, name text, input text,
        attempt integer, visible_at float8, lease_owner text, lease_token text, lease_expires_at float8,
        delivery_count integer, locked_at float8
    )) WITH ORDINALITY AS t (
        instance_id, run_id, execution_id, task_id, name, input, attempt, visible_at,
        lease_owner, lease_token, lease_expires_at, delivery_count, locked_at, n
    )
    ORDER BY t.n
    RETURNING task_row_id, instance_id, execution_id, task_id, name, input, attempt, lease_token, enqueued_at,
              delivery_count, run_id
), messages AS (
    INSERT INTO orchestration_messages (instance_id, run_id, execution_id, kind, event, enqueued_at, visible_at)
    SELECT m.instance_id, m.run_id, m.execution_id, m.kind, m.event, %(now)s, m.visible_at
    FROM ROWS FROM (json_to_recordset(%(messages)s::json) AS (
        instance_id text, run_id text, execution_id integer, kind text, event text, visible_at float8
    )) WITH ORDINALITY AS m (instance_id, run_id, execution_id, kind, event, visible_at, n)
    ORDER BY m.n
), released AS (
    DELETE FROM orchestration_leases AS l
    WHERE %(release)s::boolean AND l.instance_id = %(instance_id)s::text AND l.token = %(token)s::text
), extended AS (
    UPDATE orchestration_leases AS l SET expires_at = %(now)s + l.lease_seconds
    WHERE NOT %(release)s::boolean AND %(extend)s::boolean
      AND l.instance_id = %(instance_id)s::text AND l.token = %(token)s::text
), handed AS (
    DELETE FROM activity_tasks WHERE task_row_id = ANY(%(handed)s::bigint[])
)
-- The tasks written locked (one row of NULLs if none): the left side is always read, and
-- with it the checks.
SELECT tasks.* FROM (SELECT count(refusal) FROM refused) AS checked
LEFT JOIN tasks ON tasks.lease_token IS NOT NULL;

-- name: insert_request
-- A client operation's request id, unless it was recorded before (then nothing is returned).
INSERT INTO client_requests (request_id, operation, instance_id, created_at)
VALUES (%(request_id)s, %(operation)s, %(instance_id)s, %(now)s)
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id;

-- name: update_instance_after_turn
-- The row after a committed turn; stats accumulate.
UPDATE instances SET
    status = %(status)s,
    execution_id = %(execution_id)s,
    version = COALESCE(%(version)s, version),
    input = %(input)s,
    output = %(output)s,
    failure = %(failure)s,
    custom_status = %(custom_status)s,
    waiting_on = %(waiting_on)s,
    history_event_count = %(history_event_count)s,
    history_bytes = %(history_bytes)s,
    last_updated_at = %(now)s,
    turns = turns + 1,
    full_replays = full_replays + %(full_replay)s,
    replayed_events = replayed_events + %(replayed_events)s,
    last_turn_duration = %(duration)s,
    last_progress_at = CASE WHEN %(progressed)s::boolean THEN %(now)s ELSE last_progress_at END
WHERE instance_id = %(instance_id)s;

-- name: list_instances
-- Newest first; the cursor is the (created_at, instance_id) of the previous page's last row,
-- so rows inserted meanwhile (newer) never shift the pages after it.
SELECT * FROM instances
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(version)s::int IS NULL OR version = %(version)s::int)
  AND (%(created_after)s::float8 IS NULL OR created_at >= %(created_after)s::float8)
  AND (%(created_before)s::float8 IS NULL OR created_at < %(created_before)s::float8)
  AND (%(parent_instance_id)s::text IS NULL OR parent_instance_id = %(parent_instance_id)s::text)
  AND (%(prefix)s::text IS NULL OR left(instance_id, length(%(prefix)s::text)) = %(prefix)s::text)
  AND (%(cursor_created)s::float8 IS NULL
       OR (created_at, instance_id) < (%(cursor_created)s::float8, %(cursor_id)s::text))
ORDER BY created_at DESC, instance_id DESC
LIMIT %(limit)s;

-- name: terminal_instances_matching
-- purge_where: the terminal instances matching the list_instances filters, locked.
SELECT instance_id FROM instances
WHERE status IN ('COMPLETED', 'FAILED', 'TERMINATED')
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(version)s::int IS NULL OR version = %(version)s::int)
  AND (%(created_after)s::float8 IS NULL OR created_at >= %(created_after)s::float8)
  AND (%(created_before)s::float8 IS NULL OR created_at < %(created_before)s::float8)
  AND (%(parent_instance_id)s::text IS NULL OR parent_instance_id = %(parent_instance_id)s::text)
  AND (%(prefix)s::text IS NULL OR left(instance_id, length(%(prefix)s::text)) = %(prefix)s::text)
ORDER BY instance_id COLLATE "C"
FOR UPDATE;

-- name: terminal_instances_among
SELECT instance_id FROM instances
WHERE instance_id = ANY(%(ids)s::text[])
  AND status IN ('COMPLETED', 'FAILED', 'TERMINATED')
ORDER BY instance_id COLLATE "C"
FOR UPDATE;

-- name: orphans_among
-- purge_instances: those of the ids that have no instance but left something behind (dead
-- letters, discard records, queued messages: a purged or never-created instance).
SELECT ids.instance_id FROM unnest(%(ids)s::text[]) AS ids (instance_id)
WHERE NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.instance_id = ids.instance_id)
  AND (EXISTS (SELECT 1 FROM dead_letters AS d WHERE d.instance_id = ids.instance_id)
       OR EXISTS (SELECT 1 FROM discarded_messages AS x WHERE x.instance_id = ids.instance_id)
       OR EXISTS (SELECT 1 FROM orchestration_messages AS m WHERE m.instance_id = ids.instance_id));

-- name: orphans_with_prefix
-- purge_where: the ids (with the id prefix, if any) that have no instance but left dead
-- letters, discard records or queued messages behind.
SELECT instance_id FROM (
    SELECT instance_id FROM dead_letters
    UNION SELECT instance_id FROM discarded_messages
    UNION SELECT instance_id FROM orchestration_messages
) AS left_behind
WHERE NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.instance_id = left_behind.instance_id)
  AND (%(prefix)s::text IS NULL OR left(instance_id, length(%(prefix)s::text)) = %(prefix)s::text);

-- name: delete_requests
DELETE FROM client_requests WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_instances
DELETE FROM instances WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_history
DELETE FROM history WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_messages
DELETE FROM orchestration_messages WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_tasks
DELETE FROM activity_tasks WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_leases
DELETE FROM orchestration_leases WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_dead_letters
DELETE FROM dead_letters WHERE instance_id = ANY(%(ids)s::text[]);

-- name: delete_discards
DELETE FROM discarded_messages WHERE instance_id = ANY(%(ids)s::text[]);


-- ===== history ============================================================================

-- name: insert_history
INSERT INTO history (instance_id, execution_id, sequence, event)
SELECT %(instance_id)s, %(execution_id)s, %(first)s + ordinality - 1, event
FROM unnest(%(events)s::text[]) WITH ORDINALITY AS e (event, ordinality);

-- name: forget_history
-- Retention: the history of executions up to :up_to of one instance.
DELETE FROM history WHERE instance_id = %(instance_id)s AND execution_id <= %(up_to)s;

-- name: forget_discards
-- Retention: the discard records of executions up to :up_to of one instance.
DELETE FROM discarded_messages WHERE instance_id = %(instance_id)s AND execution_id <= %(up_to)s;

-- name: history_from
SELECT event FROM history
WHERE instance_id = %(instance_id)s AND execution_id = %(execution_id)s AND sequence >= %(from_sequence)s
ORDER BY sequence;

-- name: history_page
-- One statement, so the current execution and its events come from one snapshot.
SELECT h.* FROM history AS h
WHERE h.instance_id = %(instance_id)s
  AND h.execution_id = COALESCE(
      %(execution_id)s::integer,
      (SELECT execution_id FROM instances WHERE instance_id = %(instance_id)s))
  AND h.sequence > %(after_sequence)s
ORDER BY h.sequence
LIMIT %(limit)s;


-- ===== orchestration messages =============================================================

-- name: insert_messages
-- Many messages in one statement, in the order given (message ids follow it).
INSERT INTO orchestration_messages (instance_id, run_id, execution_id, kind, event, enqueued_at, visible_at)
SELECT instance_id, run_id, execution_id, kind, event, %(now)s, visible_at
FROM unnest(%(instance_ids)s::text[], %(run_ids)s::text[], %(execution_ids)s::integer[], %(kinds)s::text[],
            %(events)s::text[], %(visible_ats)s::float8[])
     WITH ORDINALITY AS m (instance_id, run_id, execution_id, kind, event, visible_at, ordinality)
ORDER BY ordinality;

-- name: lock_candidates
-- Instances with a due message and no live lease (or one of the caller's, :held), oldest
-- due message first, each with its row locked (columns NULL if another worker holds it, or
-- if it does not exist: present tells which). %(names)s holds routing keys (name@version,
-- name@* for an instance whose version is not chosen yet). With it, instances that do not
-- exist or are terminal are still swept: sorting their messages (defer, discard) needs no
-- user code. :exclude holds the instances this call already looked at (skipped ones would
-- otherwise come back). A locked row is its latest version (READ COMMITTED re-reads it).
WITH candidate AS (
    SELECT m.instance_id, MIN(m.visible_at) AS first_visible, MIN(m.message_id) AS first_message
    FROM orchestration_messages AS m
    LEFT JOIN instances AS i ON i.instance_id = m.instance_id
    LEFT JOIN orchestration_leases AS l ON l.instance_id = m.instance_id
    WHERE m.visible_at <= %(now)s
      AND (l.instance_id IS NULL OR l.expires_at <= %(now)s OR l.token = ANY(%(held)s::text[]))
      AND (%(names)s::text[] IS NULL
           OR i.instance_id IS NULL
           OR i.status IN ('COMPLETED', 'FAILED', 'TERMINATED')
           OR i.name || '@' || COALESCE(i.version::text, '*') = ANY(%(names)s::text[]))
      AND (%(instance_ids)s::text[] IS NULL OR m.instance_id = ANY(%(instance_ids)s::text[]))
      AND m.instance_id <> ALL(%(exclude)s::text[])
    GROUP BY m.instance_id
    ORDER BY first_visible, first_message
    LIMIT %(limit)s
)
SELECT c.instance_id AS candidate,
       EXISTS (SELECT 1 FROM instances AS e WHERE e.instance_id = c.instance_id) AS present,
       locked.*
FROM candidate AS c
LEFT JOIN LATERAL (
    SELECT * FROM instances AS i WHERE i.instance_id = c.instance_id FOR UPDATE SKIP LOCKED
) AS locked ON true
ORDER BY c.first_visible, c.first_message;

-- name: visible_messages
-- Under the instances' row locks (or, for a missing instance, its id lock). The list as a
-- subquery (as in lock_committing) keeps the generic plan.
SELECT * FROM orchestration_messages
WHERE instance_id = ANY((SELECT %(ids)s::text[])::text[]) AND visible_at <= %(now)s
ORDER BY message_id;

-- name: messages_of_instance
SELECT * FROM orchestration_messages WHERE instance_id = %(instance_id)s ORDER BY message_id;

-- name: any_messages_among
-- Each id looked up by key (as in notify_ends: a worker's generic plan of
-- "instance_id = ANY(list)" may read the whole table).
SELECT 1 FROM unnest(%(ids)s::text[]) AS e (instance_id),
LATERAL (SELECT 1 FROM orchestration_messages AS m WHERE m.instance_id = e.instance_id LIMIT 1) AS found
LIMIT 1;

-- name: due_messages_among
-- Whether messages due now are queued for any of the instances :ids (whose leases the
-- transaction released: a worker must look at them), and if so the NOTIFY of :channel (none
-- if NULL) with :sender: the answer is needed only after the COMMIT. Each id looked up by
-- key (as in notify_ends).
SELECT q.due, (
    SELECT COUNT(pg_notify(%(channel)s::text, %(sender)s::text)) WHERE q.due AND %(channel)s::text IS NOT NULL
) AS notified
FROM (
    SELECT EXISTS (
        SELECT 1 FROM unnest(%(ids)s::text[]) AS e (instance_id),
        LATERAL (
            SELECT 1 FROM orchestration_messages AS m
            WHERE m.instance_id = e.instance_id AND m.visible_at <= %(now)s LIMIT 1
        ) AS found
    ) AS due
) AS q;

-- name: pending_start
-- When the not-yet-started execution's ExecutionStarted becomes due (NULL if there is none).
SELECT MIN(visible_at) AS visible_at FROM orchestration_messages
WHERE instance_id = %(instance_id)s AND execution_id = %(execution_id)s AND kind = 'ExecutionStarted';

-- name: mark_delivered
UPDATE orchestration_messages SET delivery_count = delivery_count + 1
WHERE message_id = ANY((SELECT %(ids)s::bigint[])::bigint[]);

-- name: hold_messages
UPDATE orchestration_messages SET visible_at = %(visible_at)s
WHERE message_id = ANY(%(ids)s::bigint[]);

-- name: defer_messages
UPDATE orchestration_messages AS m SET delivery_count = d.tries, visible_at = d.visible_at
FROM unnest(%(ids)s::bigint[], %(tries)s::integer[], %(visible_ats)s::float8[])
     AS d (message_id, tries, visible_at)
WHERE m.message_id = d.message_id;

-- name: hold_lease
-- abandon with retry_after: the lease passes to a fresh token nobody holds, until
-- :expires_at, so nothing of the instance is delivered before then, and its messages (those
-- queued and those still to come) keep their order (invariant 5).
UPDATE orchestration_leases SET token = %(new_token)s, expires_at = %(expires_at)s
WHERE instance_id = %(instance_id)s AND token = %(token)s;

-- name: dead_letter_messages
-- Move messages to the dead letters (copy, then delete, in one statement).
WITH gone AS (
    DELETE FROM orchestration_messages AS m
    USING unnest(%(ids)s::bigint[], %(tries)s::integer[]) AS d (message_id, tries)
    WHERE m.message_id = d.message_id
    RETURNING m.message_id, m.instance_id, m.run_id, m.execution_id, m.event, m.enqueued_at, d.tries
)
INSERT INTO dead_letters (
    message_id, instance_id, run_id, execution_id, event, reason, delivery_count, enqueued_at, dead_lettered_at
)
SELECT message_id, instance_id, run_id, execution_id, event, %(reason)s, tries, enqueued_at, %(now)s
FROM gone ORDER BY message_id;

-- name: discard_messages
-- Delete messages with a discard record each (reason and detail per message).
WITH gone AS (
    DELETE FROM orchestration_messages AS m
    USING unnest(%(ids)s::bigint[], %(reasons)s::text[], %(details)s::text[]) AS d (message_id, reason, detail)
    WHERE m.message_id = d.message_id AND m.instance_id = %(instance_id)s
    RETURNING m.message_id, m.instance_id, m.run_id, m.execution_id, m.event, d.reason, d.detail
)
INSERT INTO discarded_messages (instance_id, run_id, execution_id, event, reason, detail, discarded_at)
SELECT instance_id, run_id, execution_id, event, reason, detail, %(now)s
FROM gone ORDER BY message_id;

-- name: discard_consumed
-- A turn's discarded messages, each with its own reason, only if they belong to the
-- committing instance; the rows are deleted with the other consumed messages.
INSERT INTO discarded_messages (instance_id, run_id, execution_id, event, reason, detail, discarded_at)
SELECT m.instance_id, m.run_id, m.execution_id, m.event, d.reason, d.detail, %(now)s
FROM unnest(%(ids)s::bigint[], %(reasons)s::text[], %(details)s::text[])
     WITH ORDINALITY AS d (message_id, reason, detail, ordinality)
JOIN orchestration_messages AS m ON m.message_id = d.message_id AND m.instance_id = %(instance_id)s
ORDER BY d.ordinality;

-- name: delete_consumed
DELETE FROM orchestration_messages
WHERE instance_id = %(instance_id)s AND message_id = ANY(%(ids)s::bigint[]);

-- name: insert_discards
INSERT INTO discarded_messages (instance_id, run_id, execution_id, event, reason, detail, discarded_at)
SELECT instance_id, run_id, execution_id, event, reason, detail, %(now)s
FROM unnest(%(instance_ids)s::text[], %(run_ids)s::text[], %(execution_ids)s::integer[], %(events)s::text[],
            %(reasons)s::text[], %(details)s::text[])
     WITH ORDINALITY AS d (instance_id, run_id, execution_id, event, reason, detail, ordinality)
ORDER BY ordinality;


-- ===== orchestration leases ===============================================================

-- name: try_lock_leases
-- The lease rows of instances whose rows this transaction holds, locked: one row per id,
-- with present false if it has no lease row, and NULL lease columns if its lease row is
-- locked by its holder (renewing, committing, abandoning): in use, skipped.
WITH locked AS (
    SELECT * FROM orchestration_leases WHERE instance_id = ANY((SELECT %(ids)s::text[])::text[])
    ORDER BY instance_id COLLATE "C"
    FOR UPDATE SKIP LOCKED
)
SELECT ids.instance_id, l.instance_id IS NOT NULL AS present, locked.token, locked.expires_at
FROM unnest(%(ids)s::text[]) AS ids(instance_id)
LEFT JOIN orchestration_leases AS l ON l.instance_id = ids.instance_id
LEFT JOIN locked ON locked.instance_id = ids.instance_id;

-- name: upsert_leases
-- Only called for instances with no live lease, under their row locks and lease row locks;
-- replacing an expired lease's token is the takeover that fences its old holder out.
INSERT INTO orchestration_leases (instance_id, owner, token, expires_at, lease_seconds, locked_at)
SELECT instance_id, %(owner)s, token, %(expires_at)s, %(lease_seconds)s, %(now)s
FROM unnest(%(instance_ids)s::text[], %(tokens)s::text[]) AS l(instance_id, token)
ON CONFLICT (instance_id) DO UPDATE SET
    owner = excluded.owner,
    token = excluded.token,
    expires_at = excluded.expires_at,
    lease_seconds = excluded.lease_seconds,
    locked_at = excluded.locked_at;

-- name: renew_lease
UPDATE orchestration_leases SET expires_at = %(expires_at)s, lease_seconds = %(lease_seconds)s
WHERE instance_id = %(instance_id)s AND token = %(token)s;

-- name: extend_lease
UPDATE orchestration_leases SET expires_at = %(expires_at)s
WHERE instance_id = %(instance_id)s AND token = %(token)s;

-- name: release_lease
DELETE FROM orchestration_leases WHERE instance_id = %(instance_id)s AND token = %(token)s;


-- ===== activity tasks =====================================================================

-- name: insert_activity_tasks
INSERT INTO activity_tasks (
    instance_id, run_id, execution_id, task_id, name, input, attempt, enqueued_at, visible_at
)
SELECT instance_id, run_id, execution_id, task_id, name, input, attempt, %(now)s, visible_at
FROM unnest(%(instance_ids)s::text[], %(run_ids)s::text[], %(execution_ids)s::integer[], %(task_ids)s::integer[],
            %(names)s::text[], %(inputs)s::text[], %(attempts)s::integer[], %(visible_ats)s::float8[])
     WITH ORDINALITY AS t (instance_id, run_id, execution_id, task_id, name, input, attempt, visible_at, ordinality)
ORDER BY ordinality;

-- name: lock_activities
-- Due tasks and tasks whose lease expired (a locked task's visible_at is its lease expiry),
-- oldest first, locked for :owner; tasks another worker is locking right now are skipped,
-- and so are the caller's own running tasks (their leases may have expired while the store
-- did not answer). Each gets the token :prefix followed by its rank in hex (n, to order
-- the rows); the delivery count returned is the new one.
WITH picked AS (
    SELECT task_row_id, visible_at FROM activity_tasks
    WHERE visible_at <= %(now)s
      AND (%(names)s::text[] IS NULL OR name = ANY(%(names)s::text[]))
      AND (%(task_row_ids)s::bigint[] IS NULL OR task_row_id = ANY(%(task_row_ids)s::bigint[]))
      AND task_row_id <> ALL(%(running)s::bigint[])
    ORDER BY visible_at, task_row_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT task_row_id, row_number() OVER (ORDER BY visible_at, task_row_id) AS n FROM picked
)
UPDATE activity_tasks AS t SET
    lease_owner = %(owner)s,
    lease_token = %(prefix)s::text || to_hex(ranked.n - 1),
    lease_expires_at = %(expires_at)s,
    visible_at = %(expires_at)s,
    delivery_count = t.delivery_count + 1,
    locked_at = %(now)s
FROM ranked
WHERE t.task_row_id = ranked.task_row_id
RETURNING ranked.n, t.task_row_id, t.instance_id, t.execution_id, t.task_id, t.name, t.input, t.attempt,
          t.lease_token, t.enqueued_at, t.delivery_count, t.run_id;

-- name: due_times_after_lock
-- A worker round's lock_activities and due_times in one statement: appended to
-- lock_activities with its UPDATE made the CTE "taken" (activities.py). One row per task
-- taken, or one row of NULL task columns, each with the due times and the NOTIFYs of
-- due_times. The statement does not see its own UPDATE: a task it took counts at its new
-- visible_at (the lease's expiry), not at the one its snapshot holds. (next_message_at):
-- the query of that name, which activities.py puts in.
), due AS (
    SELECT
        (next_message_at) AS next_message_at,
        LEAST(
            (SELECT MIN(a.visible_at) FROM activity_tasks AS a
             WHERE a.task_row_id NOT IN (SELECT task_row_id FROM picked)),
            (SELECT %(expires_at)s::float8 WHERE EXISTS (SELECT 1 FROM picked))
        ) AS next_task_at
), notified AS (
    SELECT COUNT(pg_notify(c.channel, %(sender)s)) AS notified
    FROM due, unnest(%(channels)s::text[]) AS c (channel)
    WHERE (c.channel <> 'perdure_orchestrations' OR due.next_message_at <= %(now)s)
      AND (c.channel <> 'perdure_activities' OR due.next_task_at <= %(now)s)
)
SELECT due.next_message_at, due.next_task_at, notified.notified, taken.*
FROM due CROSS JOIN notified LEFT JOIN taken ON TRUE;

-- name: lock_instances_of_tasks
-- complete_activities decides on the instances' status and execution: hold them (shared),
-- in one order, before the tasks, as commit_turns does.
SELECT i.instance_id FROM instances AS i
WHERE i.instance_id IN (SELECT instance_id FROM activity_tasks WHERE task_row_id = ANY(%(ids)s::bigint[]))
ORDER BY i.instance_id COLLATE "C"
FOR SHARE;

-- name: tasks_with_instances
-- complete_activities: the tasks (locked) with their instance's status, current execution
-- and run.
SELECT t.*, i.status AS instance_status, i.execution_id AS current_execution, i.run_id AS current_run
FROM activity_tasks AS t
LEFT JOIN instances AS i ON i.instance_id = t.instance_id
WHERE t.task_row_id = ANY(%(ids)s::bigint[])
ORDER BY t.task_row_id
FOR UPDATE OF t;

-- name: renew_activity_leases
UPDATE activity_tasks AS t SET lease_expires_at = %(expires_at)s, visible_at = %(expires_at)s
FROM unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS l (task_row_id, token)
WHERE t.task_row_id = l.task_row_id AND t.lease_token = l.token
RETURNING t.task_row_id, t.lease_token;

-- name: abandon_activity
UPDATE activity_tasks SET
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, locked_at = NULL,
    visible_at = %(visible_at)s
WHERE task_row_id = %(task_row_id)s AND lease_token = %(token)s;

-- name: discard_unlocked_tasks
-- A terminal instance's tasks no live worker holds: deleted (one statement: a task being
-- locked concurrently is re-checked once its lock is released), returned for the record.
DELETE FROM activity_tasks
WHERE instance_id = %(instance_id)s AND (lease_token IS NULL OR lease_expires_at <= %(now)s)
RETURNING *;

-- name: tasks_of_instance
SELECT * FROM activity_tasks WHERE instance_id = %(instance_id)s ORDER BY task_row_id;

-- name: delete_tasks_by_id
DELETE FROM activity_tasks WHERE task_row_id = ANY(%(ids)s::bigint[]);


-- name: server_time
-- The server's clock (ServerClock measures its offset from the host's).
SELECT extract(epoch FROM clock_timestamp())::float8 AS t;


-- ===== notifications ======================================================================

-- name: notify
-- Delivered to listeners when (and only if) the transaction commits. The payload names the
-- sending store object, whose own listener ignores it (it has signalled its waiters already).
SELECT pg_notify(channel, %(sender)s) FROM unnest(%(channels)s::text[]) AS c (channel);

-- name: notify_ends
-- notify, and the instances channel only if one of the instances the transaction ended
-- is watched (watch_instance): PostgreSQL wakes every listening backend of the database
-- at each NOTIFY, so an end no other process waits for sends none. Run after the turns'
-- writes, which hold the instances' rows: a mark committed before them is seen here.
-- Each ended instance is looked up by its key alone (LATERAL, LIMIT 1: the planner cannot
-- make it a join): for instance_id = ANY(list), a worker's generic plan guesses ten ids,
-- and in a table of a few hundred rows analyzed while it held a few dozen, would rather
-- read every row.
SELECT pg_notify(channel, %(sender)s) FROM unnest(%(channels)s::text[]) AS c (channel)
UNION ALL
SELECT pg_notify(%(instances)s, %(sender)s)
WHERE EXISTS (
    SELECT 1 FROM unnest(%(ended)s::text[]) AS e (instance_id),
    LATERAL (SELECT 1 FROM instances AS i WHERE i.instance_id = e.instance_id AND i.watched LIMIT 1) AS w
);


-- ===== diagnosis reads ====================================================================

-- name: queue_stats
SELECT
    (SELECT COUNT(*) FROM orchestration_messages) AS orchestration_depth,
    (SELECT COUNT(*) FROM orchestration_messages WHERE visible_at <= %(now)s) AS orchestration_visible,
    (SELECT MIN(visible_at) FROM orchestration_messages WHERE visible_at <= %(now)s) AS oldest_orchestration,
    (SELECT COUNT(*) FROM activity_tasks) AS activity_depth,
    (SELECT COUNT(*) FROM activity_tasks WHERE visible_at <= %(now)s) AS activity_visible,
    (SELECT COUNT(*) FROM activity_tasks
     WHERE lease_token IS NOT NULL AND lease_expires_at > %(now)s) AS activity_locked,
    (SELECT MIN(visible_at) FROM activity_tasks WHERE visible_at <= %(now)s) AS oldest_activity,
    (SELECT COUNT(*) FROM dead_letters) AS dead_letters;

-- name: dead_letters
SELECT * FROM dead_letters
WHERE (%(instance_id)s::text IS NULL OR instance_id = %(instance_id)s::text)
ORDER BY dead_letter_id DESC
LIMIT %(limit)s;

-- name: discarded_messages
SELECT * FROM discarded_messages
WHERE (%(instance_id)s::text IS NULL OR instance_id = %(instance_id)s::text)
ORDER BY discard_id DESC
LIMIT %(limit)s;

-- name: next_task_at
-- The earliest visible_at of an activity task (a locked task's is its lease expiry).
SELECT MIN(visible_at) AS t FROM activity_tasks;

-- name: due_times
-- A round's next_message_at and next_task_at in one statement, and the NOTIFY of each
-- channel given (none: an empty array): a queue's only if it holds work due now, by the
-- rule of store/common/rounds.py (work the round created and took itself wakes nobody),
-- any other (an instance that ended) always. Sent as a round's last statement.
-- (next_message_at): the query of that name, which orchestrations.py puts in (DUE_TIMES).
WITH due AS (
    SELECT
        (next_message_at) AS next_message_at,
        (SELECT MIN(visible_at) FROM activity_tasks) AS next_task_at
)
SELECT
    next_message_at,
    next_task_at,
    (SELECT COUNT(pg_notify(c.channel, %(sender)s))
     FROM unnest(%(channels)s::text[]) AS c (channel)
     WHERE (c.channel <> 'perdure_orchestrations' OR next_message_at <= %(now)s)
       AND (c.channel <> 'perdure_activities' OR next_task_at <= %(now)s)) AS notified
FROM due;

-- name: next_message_at
-- The earliest time a message can be taken: a message of a leased instance cannot be taken
-- before the lease expires. The earliest of: the first message, in visible_at order, that
-- no lease holds back; the first lease to expire, up to :horizon, that holds a message
-- back. Each part walks an index and stops at its first row (the first walks past the
-- messages that leases hold back, which a worker takes as soon as they are due). A message
-- held back by a lease that expires after :horizon is left out.
SELECT LEAST(
    (SELECT m.visible_at FROM orchestration_messages AS m
     WHERE NOT EXISTS (
         SELECT 1 FROM orchestration_leases AS l
         WHERE l.instance_id = m.instance_id AND l.expires_at > m.visible_at)
     ORDER BY m.visible_at
     LIMIT 1),
    (SELECT l.expires_at FROM orchestration_leases AS l
     WHERE l.expires_at <= %(horizon)s
       AND EXISTS (
           SELECT 1 FROM orchestration_messages AS m
           WHERE m.instance_id = l.instance_id AND m.visible_at < l.expires_at)
     ORDER BY l.expires_at
     LIMIT 1)
) AS t;

-- ===== fleet reads (diagnosis) ============================================================

-- name: instance_counts
SELECT name, status, COUNT(*) AS count FROM instances GROUP BY name, status ORDER BY name, status;

-- name: oldest_instances
-- Oldest first; OFFSET reads the age at a rank (percentiles of the fleet report).
SELECT instance_id, name, status, created_at, last_updated_at, last_progress_at,
       history_event_count, history_bytes
FROM instances
WHERE status = ANY(%(statuses)s::text[])
ORDER BY created_at, instance_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: stalled_instances
-- Live instances whose last progress (or creation) is before :before, stalest first.
SELECT instance_id, name, status, created_at, last_updated_at, last_progress_at,
       history_event_count, history_bytes
FROM instances
WHERE status IN ('PENDING', 'RUNNING', 'SUSPENDED')
  AND COALESCE(last_progress_at, created_at) < %(before)s
ORDER BY COALESCE(last_progress_at, created_at), instance_id
LIMIT %(limit)s;

-- name: count_stalled_instances
SELECT COUNT(*) AS total FROM instances
WHERE status IN ('PENDING', 'RUNNING', 'SUSPENDED')
  AND COALESCE(last_progress_at, created_at) < %(before)s;

-- ===== workers ============================================================================

-- name: upsert_worker
INSERT INTO workers (
    worker_id, host, pid, orchestrations, activities, concurrency, started_at, heartbeat_at
) VALUES (
    %(worker_id)s, %(host)s, %(pid)s, %(orchestrations)s, %(activities)s, %(concurrency)s,
    %(started_at)s, %(heartbeat_at)s
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
DELETE FROM workers WHERE worker_id = %(worker_id)s;

-- name: forget_workers
-- Retention: workers whose last heartbeat is older than :before (they crashed).
DELETE FROM workers WHERE heartbeat_at < %(before)s;

-- name: forget_requests
-- Retention: request ids of client operations recorded before :before.
DELETE FROM client_requests WHERE created_at < %(before)s;

-- name: list_workers
SELECT * FROM workers
WHERE (%(alive_since)s::float8 IS NULL OR heartbeat_at >= %(alive_since)s::float8)
ORDER BY worker_id;

-- ===== queues per name (dashboard) ========================================================

-- name: queue_depths
-- Depth, due rows and the oldest due time of each queue: orchestration messages by their
-- target's orchestration name (a primary-key lookup per message; NULL for a message to an
-- instance that does not exist), activity tasks by activity name. The queue tables hold only
-- work in flight, so one pass over each is the whole cost.
SELECT 'orchestration' AS kind, i.name AS name, COUNT(*) AS depth,
       COUNT(*) FILTER (WHERE m.visible_at <= %(now)s) AS visible,
       MIN(m.visible_at) FILTER (WHERE m.visible_at <= %(now)s) AS oldest_visible
FROM orchestration_messages AS m
LEFT JOIN instances AS i ON i.instance_id = m.instance_id
GROUP BY i.name
UNION ALL
SELECT 'activity', name, COUNT(*),
       COUNT(*) FILTER (WHERE visible_at <= %(now)s),
       MIN(visible_at) FILTER (WHERE visible_at <= %(now)s)
FROM activity_tasks
GROUP BY name;

-- name: list_instances_by_updated
-- list_instances with sort="updated": most recently updated first, the cursor being the
-- (last_updated_at, instance_id) of the previous page's last row. instances_by_updated
-- keys on the second of the last update: the rows come a second at a time from the
-- newest (from the cursor's second on), each second's rows sorted as they are read.
SELECT * FROM instances
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(version)s::int IS NULL OR version = %(version)s::int)
  AND (%(created_after)s::float8 IS NULL OR created_at >= %(created_after)s::float8)
  AND (%(created_before)s::float8 IS NULL OR created_at < %(created_before)s::float8)
  AND (%(parent_instance_id)s::text IS NULL OR parent_instance_id = %(parent_instance_id)s::text)
  AND (%(prefix)s::text IS NULL OR left(instance_id, length(%(prefix)s::text)) = %(prefix)s::text)
  AND (%(cursor_created)s::float8 IS NULL
       OR (last_updated_second <= floor(%(cursor_created)s::float8)::bigint
           AND (last_updated_at, instance_id) < (%(cursor_created)s::float8, %(cursor_id)s::text)))
ORDER BY last_updated_second DESC, last_updated_at DESC, instance_id DESC
LIMIT %(limit)s;

-- name: set_parent
-- A child a reset run still awaits reports to that run from now on.
UPDATE instances SET
    parent_instance_id = %(parent_instance_id)s,
    parent_run_id = %(parent_run_id)s,
    parent_execution_id = %(parent_execution_id)s,
    parent_task_id = %(parent_task_id)s
WHERE instance_id = %(instance_id)s;
