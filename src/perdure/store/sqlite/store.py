"""The SQLite implementation of :class:`perdure.store.base.Store`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perdure.core.history import dumps_checked
from perdure.core.status import OrchestrationStatus
from perdure.errors import InvalidInputError, StoreError, StoreUnavailableError
from perdure.store.base import (
    ActivityCompletion,
    ActivityWorkItem,
    DeadLetter,
    DiscardRecord,
    EagerResult,
    HistoryRecord,
    InstanceCount,
    InstanceQuery,
    InstanceRecord,
    InstanceSummary,
    KnownHistory,
    Message,
    NewInstance,
    OrchestrationWorkItem,
    Outcome,
    Page,
    QueueDepth,
    QueuedMessage,
    QueueStats,
    Reset,
    Rewind,
    RoundRequest,
    RoundResult,
    TaskRequest,
    TurnCommit,
    WorkerRecord,
)
from perdure.store.common import rounds
from perdure.store.common.encode import StoreOptions, check_retention, prepare_completions, prepare_turn
from perdure.store.common.queries import due_times
from perdure.store.common.reopen import check_new_instance
from perdure.store.common.routing import check_replaceable, purges_orphans
from perdure.store.common.rows import (
    count_from_row,
    dead_letter_from_row,
    decode_cursor,
    discard_from_row,
    encode_cursor,
    history_from_row,
    input_column,
    instance_from_row,
    json_list,
    message_from_row,
    new_instance_params,
    new_run_id,
    queue_depths_from_rows,
    start_row,
    summary_from_row,
    task_from_row,
    worker_from_row,
    worker_params,
)
from perdure.store.notify import ACTIVITIES, INSTANCES, ORCHESTRATIONS, Notifier
from perdure.store.open import check_sqlite_file
from perdure.store.sqlite import activities, orchestrations, reopen
from perdure.store.sqlite.connection import MEMORY, Database
from perdure.store.sqlite.migrations import migrate
from perdure.store.sqlite.queries import Q
from perdure.store.sqlite.tx import Tx


class SQLiteStore:
    """A store in one SQLite database file (or a private in-memory database).

    Options: ``clock`` (``() -> float`` UTC epoch seconds, default ``time.time``),
    ``synchronous`` (``"FULL"`` default, ``"NORMAL"``, ``"OFF"``), ``busy_timeout`` (seconds
    to wait for another process's write lock, default 10), ``max_deliveries`` (tries before
    an undeliverable message is dead-lettered, default 25), ``defer_backoff`` /
    ``defer_backoff_cap`` (backoff of those tries: 0.1 s doubling up to 30 s),
    ``keep_executions`` (history retention: how many executions before an instance's current
    one keep their history, default 5; ``None`` keeps all), ``cached_statements``,
    ``read_pool_size`` and ``create`` (default True: create or migrate the schema; False:
    refuse a missing file or one without perdure's current schema, see
    :func:`perdure.store.open.open_store`).

    Leases: a token holds until another caller takes the lease over (possible only once it
    has expired) or it is released. A holder whose lease expired but was not yet taken over
    may still write; after a takeover its writes fail (``LEASE_LOST`` / :class:`LeaseLost`)
    and write nothing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        max_deliveries: int = 25,
        defer_backoff: float = 0.1,
        defer_backoff_cap: float = 30.0,
        keep_executions: int | None = 5,
        cached_statements: int = 256,
        read_pool_size: int = 8,
        url: str | None = None,
        create: bool = True,
    ) -> None:
        if max_deliveries < 1:
            raise InvalidInputError(f"max_deliveries must be at least 1, not {max_deliveries}")
        check_retention(keep_executions)
        path = str(path)
        if not create and path != MEMORY:  # read-only tools: refuse, before anything is written
            check_sqlite_file(path)
        self.url = url or (f"sqlite://{MEMORY}" if path == MEMORY else f"sqlite:///{path}")
        self.clock = clock
        self.notifier = Notifier()
        # Other processes' commits are signalled by this process's next worker round.
        self.notifier.every_process = True
        self._data_version: int | None = None  # of the writer connection, at the last round
        self.fault_hook: Callable[[str], None] | None = None
        self.options = StoreOptions(max_deliveries, float(defer_backoff), float(defer_backoff_cap), keep_executions)
        self._db = Database(
            path,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            cached_statements=cached_statements,
            read_pool_size=read_pool_size,
        )
        try:
            with self._db.write_lock:
                migrate(self._db.writer, now=self.clock())
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreUnavailableError(f"cannot prepare the schema of {path!r}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """Open ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
        if not url.lower().startswith("sqlite://"):
            raise InvalidInputError(f"not an SQLite URL: {url!r}")
        rest = url[len("sqlite://") :]
        if rest in (MEMORY, "/" + MEMORY):
            path = MEMORY
        elif rest.startswith("/") and len(rest) > 1:
            path = rest[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        else:
            raise InvalidInputError(
                f"SQLite URL {url!r} has no path; use sqlite:///relative.db, "
                f"sqlite:////abs/path.db or sqlite://:memory:"
            )
        return cls(path, url=url, **options)

    def close(self) -> None:
        """Close the connections. Idempotent."""
        self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    # -- transactions --

    @contextmanager
    def _write(self, method: str, *, durable: bool = True, point: str = "inside") -> Iterator[Tx]:
        """One ``BEGIN IMMEDIATE`` transaction on the write connection. The fault hook runs
        just before COMMIT (as ``f"{method}:{point}"``); any exception rolls everything back.
        Notifications go out after the commit. ``durable=False`` commits without waiting
        for the disk when the store is ``synchronous=FULL`` (``NORMAL`` for this one
        transaction: in WAL mode it stays atomic and ordered, and the next durable commit
        makes it durable too)."""
        db = self._db
        with db.write_lock:
            db.check_open()
            conn = db.writer
            if conn.in_transaction:
                # The lock is reentrant, so this thread is inside a write of this store
                # (a fault hook, say, writing through a client). Refused before touching the
                # connection: BEGIN would fail, and the ROLLBACK after it would end the outer
                # transaction, whose writes would then go on outside any transaction.
                raise StoreError(
                    f"{method}: this thread is already inside a write transaction of this SQLite "
                    f"store; write from outside it"
                )
            relax = not durable and db.synchronous == "FULL"
            try:
                if relax:
                    conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                tx = Tx(conn, self.clock(), self.options)
                yield tx
                if self.fault_hook is not None:
                    self.fault_hook(f"{method}:{point}")
                # Read in the transaction, so as its turns wrote them; handed over once committed.
                ended = [
                    conn.execute(Q.get_instance, {"instance_id": i}).fetchone()
                    for i in self.notifier.ended.expected_among(tx.ended)
                ]
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailableError(f"{method} failed: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"{method} failed: {exc}") from exc
                raise
            finally:
                if relax:
                    conn.execute("PRAGMA synchronous = FULL")
        if ended:
            self.notifier.ended.hand(map(instance_from_row, ended))
        if tx.topics:
            self.notifier.notify(*sorted(tx.topics))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db.reader() as conn:
                yield conn
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"read failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    # -- client writes --

    def create_instance(self, instance: NewInstance, *, replace_terminal: bool = False) -> None:
        """See :meth:`perdure.store.base.Store.create_instance`."""
        self.create_instances([instance], replace_terminal=replace_terminal)

    def create_instances(
        self, instances: Sequence[NewInstance], *, replace_terminal: bool = False, request_id: str | None = None
    ) -> None:
        """See :meth:`perdure.store.base.Store.create_instances`."""
        inputs = [input_column(i) for i in instances]
        if not instances:
            return
        with self._write("create_instance") as tx:
            if not orchestrations.first_request(tx, request_id, "start", instances[0].instance_id):
                return  # applied already: a retry after an unknown outcome
            for instance, input_text in zip(instances, inputs, strict=True):
                self._insert_instance(tx, instance, input_text, replace_terminal)
            tx.notify(ORCHESTRATIONS)

    @staticmethod
    def _insert_instance(
        tx: Tx, instance: NewInstance, input_text: str | None, replace_terminal: bool, *, queue_start: bool = True
    ) -> None:
        """Insert the instance row, a new run (after create_instance's checks), and, if
        ``queue_start``, its start message."""
        iid = instance.instance_id
        row = tx.conn.execute(Q.get_instance, {"instance_id": iid}).fetchone()
        check_new_instance(row, instance)
        execution = 1
        if row is not None:
            check_replaceable(row, replace_terminal)
            execution = orchestrations.retire_run(tx, row)
        run_id = instance.run_id or new_run_id()
        params = new_instance_params(
            iid, instance.name, input_text, instance.parent, tx.now, run_id, execution, instance.version
        )
        orchestrations.insert_instance(tx, params)
        if queue_start:
            message = orchestrations.message_params(
                iid, run_id, execution, *start_row(instance, run_id, execution, tx.now), tx.now, instance.start_at
            )
            tx.conn.execute(Q.insert_message, message)

    def enqueue_messages(self, messages: Sequence[Message], *, request_id: str | None = None) -> None:
        """See :meth:`perdure.store.base.Store.enqueue_messages`."""
        encoded = [(m, type(m.event).__name__, dumps_checked(m.event, "a message")) for m in messages]
        if not encoded:
            return
        with self._write("enqueue_messages") as tx:
            if not orchestrations.first_request(tx, request_id, encoded[0][1], messages[0].instance_id):
                return  # applied already: a retry after an unknown outcome
            tx.conn.executemany(
                Q.insert_message,
                [
                    orchestrations.message_params(
                        m.instance_id, m.run_id, m.execution_id, kind, text, tx.now, m.visible_at
                    )
                    for m, kind, text in encoded
                ],
            )
            tx.notify(ORCHESTRATIONS)

    def purge_instances(self, instance_ids: Sequence[str]) -> int:
        """See :meth:`perdure.store.base.Store.purge_instances`."""
        ids = json.dumps(list(instance_ids))
        with self._write("purge_instances") as tx:
            rows = tx.conn.execute(Q.terminal_instances_among, {"ids": ids}).fetchall()
            orphans = tx.conn.execute(Q.orphans_among, {"ids": ids}).fetchall()
            return self._purge(tx, [r["instance_id"] for r in (*rows, *orphans)])

    def purge_where(self, query: InstanceQuery) -> int:
        """See :meth:`perdure.store.base.Store.purge_where`."""
        params = _filter_params(query)
        with self._write("purge_where") as tx:
            ids = [r["instance_id"] for r in tx.conn.execute(Q.terminal_instances_matching, params)]
            if purges_orphans(query):
                ids += [r["instance_id"] for r in tx.conn.execute(Q.orphans_with_prefix, params)]
            return self._purge(tx, ids)

    @staticmethod
    def _purge(tx: Tx, instance_ids: list[str]) -> int:
        if not instance_ids:
            return 0
        ids = json.dumps(instance_ids)
        for query in (
            Q.delete_history,
            Q.delete_messages,
            Q.delete_tasks,
            Q.delete_leases,
            Q.delete_dead_letters,
            Q.delete_discards,
            Q.delete_requests,
            Q.delete_instances,
        ):
            tx.conn.execute(query, {"ids": ids})
        tx.notify(INSTANCES)
        return len(instance_ids)

    def rewind(self, rewinds: Sequence[Rewind], *, request_id: str | None = None) -> None:
        """See :meth:`perdure.store.base.Store.rewind`."""
        if not rewinds:
            return
        with self._write("rewind") as tx:
            if orchestrations.first_request(tx, request_id, "rewind", rewinds[-1].instance_id):
                for one in rewinds:
                    reopen.rewind(tx, one)

    def reset(self, reset: Reset, *, request_id: str | None = None) -> None:
        """See :meth:`perdure.store.base.Store.reset`."""
        with self._write("reset") as tx:
            if orchestrations.first_request(tx, request_id, "reset", reset.instance_id):
                reopen.reset(tx, reset)

    # -- orchestration work --

    def lock_orchestrations(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        names: Collection[str] | None = None,
        known_history: KnownHistory | None = None,
        instance_ids: Collection[str] | None = None,
        held: Mapping[str, str] | None = None,
    ) -> list[OrchestrationWorkItem]:
        """See :meth:`perdure.store.base.Store.lock_orchestrations`.

        Beyond the contract: an execution whose history is still empty gets its
        ``ExecutionStarted`` first among the returned messages; other messages for it wait
        (without using up tries) until that start message is due.
        """
        if limit < 1:
            return []
        with self._write("lock_orchestrations") as tx:
            return orchestrations.lock_orchestrations(
                tx,
                self.options,
                owner,
                lease_seconds=lease_seconds,
                limit=limit,
                names=names,
                known_history=known_history,
                instance_ids=instance_ids,
                held=held,
            )

    def commit_turns(self, commits: Sequence[TurnCommit]) -> list[Outcome]:
        """See :meth:`perdure.store.base.Store.commit_turns`.

        Payloads are encoded before the transaction: one that is not JSON raises
        :class:`~perdure.errors.SerializationError` for the whole batch, which writes nothing.
        """
        prepared = [prepare_turn(c) for c in commits]
        if not prepared:
            return []
        with self._write("commit_turns") as tx:
            return orchestrations.commit_turns(tx, prepared)

    def abandon_orchestration(self, instance_id: str, lease_token: str, *, retry_after: float = 0.0) -> None:
        """See :meth:`perdure.store.base.Store.abandon_orchestration`."""
        with self._write("abandon_orchestration") as tx:
            orchestrations.abandon(tx, instance_id, lease_token, retry_after)

    def renew_orchestration_lease(self, instance_id: str, lease_token: str, lease_seconds: float) -> float:
        """See :meth:`perdure.store.base.Store.renew_orchestration_lease`."""
        with self._write("renew_orchestration_lease") as tx:
            return orchestrations.renew(tx, instance_id, lease_token, lease_seconds)

    # -- activity work --

    def lock_activities(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        names: Collection[str] | None = None,
        task_row_ids: Collection[int] | None = None,
    ) -> list[ActivityWorkItem]:
        """See :meth:`perdure.store.base.Store.lock_activities`."""
        if limit < 1:
            return []
        with self._write("lock_activities") as tx:
            return activities.lock_activities(
                tx,
                owner,
                lease_seconds=lease_seconds,
                limit=limit,
                names=names,
                task_row_ids=task_row_ids,
            )

    def complete_activities(self, completions: Sequence[ActivityCompletion]) -> list[Outcome]:
        """See :meth:`perdure.store.base.Store.complete_activities`."""
        prepared = prepare_completions(completions)
        if not prepared:
            return []
        with self._write("complete_activities") as tx:
            return activities.complete_activities(tx, prepared)

    # -- a worker round --

    def run_round(self, request: RoundRequest) -> RoundResult:
        """See :meth:`perdure.store.base.Store.run_round`."""
        self._db.grow_wal()  # a worker's rounds commit: its first grows the WAL (once)
        prepared = rounds.prepare_round(request)
        with self._write("run_round", durable=prepared.durable) as tx:
            self._signal_other_writers(tx)
            return rounds.run_round(tx, _ROUND, self.options, request, prepared)()

    def _signal_other_writers(self, tx: Tx) -> None:
        """Signal both queues if another connection (another process, as a rule: this
        one's writes go through the writer connection and signal for themselves) committed
        since the last round: a busy worker's next round then looks for their work. So a
        worker may rely on signals while it is busy (:attr:`Notifier.every_process`).
        Signalled at once, not after this commit: the work is another transaction's,
        committed already, and it stays signalled if this one rolls back."""
        version = tx.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self.notifier.notify(ORCHESTRATIONS, ACTIVITIES)

    def create_and_run(
        self,
        instance: NewInstance,
        *,
        owner: str,
        lease_seconds: float,
        run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
        replace_terminal: bool = False,
        request_id: str | None = None,
        tasks: TaskRequest | None = None,
    ) -> EagerResult:
        """See :meth:`perdure.store.base.Store.create_and_run`."""
        input_text = input_column(instance)
        now = self.clock()
        if instance.start_at is not None and instance.start_at > now:
            self.create_instances([instance], replace_terminal=replace_terminal, request_id=request_id)
            return EagerResult([])
        new, item, turns = rounds.first_turn(instance, now, replace_terminal, self.get_instance, run_turns)
        with self._write("create_and_run") as tx:
            orchestrations.first_request(tx, request_id, "start", instance.instance_id)
            self._insert_instance(tx, new, input_text, replace_terminal, queue_start=False)
            tx.conn.execute(
                Q.upsert_lease,
                orchestrations.lease_params(
                    instance.instance_id, owner, item.lease_token, now + lease_seconds, lease_seconds, tx.now
                ),
            )
            taken = rounds.take_scheduled(tx, owner, lease_seconds, tasks)
            outcomes = orchestrations.commit_turns(tx, turns)
            if (
                not instance.fresh_id
                and tx.conn.execute(Q.has_messages, {"instance_id": instance.instance_id}).fetchone()
            ):
                tx.notify(ORCHESTRATIONS)  # queued for the id before it existed: next turn
            return EagerResult(outcomes, taken())

    def renew_activity_leases(self, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[bool]:
        """See :meth:`perdure.store.base.Store.renew_activity_leases`."""
        if not leases:
            return []
        with self._write("renew_activity_leases") as tx:
            return activities.renew_leases(tx, leases, lease_seconds)

    def abandon_activity(self, task_row_id: int, lease_token: str, *, retry_after: float = 0.0) -> None:
        """See :meth:`perdure.store.base.Store.abandon_activity`."""
        with self._write("abandon_activity") as tx:
            activities.abandon(tx, task_row_id, lease_token, retry_after)

    # -- workers --

    def heartbeat(self, worker: WorkerRecord) -> None:
        """See :meth:`perdure.store.base.Store.heartbeat`."""
        with self._write("heartbeat") as tx:
            tx.conn.execute(Q.upsert_worker, worker_params(worker, tx.now))

    def remove_worker(self, worker_id: str) -> None:
        """See :meth:`perdure.store.base.Store.remove_worker`."""
        with self._write("remove_worker") as tx:
            tx.conn.execute(Q.delete_worker, {"worker_id": worker_id})

    def sweep(self, *, workers_before: float, requests_before: float) -> None:
        """See :meth:`perdure.store.base.Store.sweep`."""
        with self._write("sweep") as tx:
            tx.conn.execute(Q.forget_workers, {"before": workers_before})
            tx.conn.execute(Q.forget_requests, {"before": requests_before})

    def list_workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """See :meth:`perdure.store.base.Store.list_workers`."""
        since = None if alive_within is None else self.clock() - alive_within
        with self._read() as conn:
            return [worker_from_row(r) for r in conn.execute(Q.list_workers, {"alive_since": since})]

    # -- reads --

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """See :meth:`perdure.store.base.Store.get_instance`."""
        with self._read() as conn:
            row = conn.execute(Q.get_instance, {"instance_id": instance_id}).fetchone()
        return None if row is None else instance_from_row(row)

    def watch_instance(self, instance_id: str) -> InstanceRecord | None:
        """See :meth:`perdure.store.base.Store.watch_instance`: another process learns of an
        end by its next round, watched or not."""
        return self.get_instance(instance_id)

    def get_history(
        self,
        instance_id: str,
        *,
        execution_id: int | None = None,
        after_sequence: int = -1,
        limit: int | None = None,
    ) -> list[HistoryRecord]:
        """See :meth:`perdure.store.base.Store.get_history`."""
        with self._read() as conn:
            if execution_id is None:
                row = conn.execute(Q.get_instance, {"instance_id": instance_id}).fetchone()
                if row is None:
                    return []
                execution_id = row["execution_id"]
            rows = conn.execute(
                Q.history_page,
                {
                    "instance_id": instance_id,
                    "execution_id": execution_id,
                    "after_sequence": after_sequence,
                    "limit": -1 if limit is None else max(0, limit),
                },
            ).fetchall()
        return [history_from_row(r) for r in rows]

    def list_instances(self, query: InstanceQuery) -> Page:
        """See :meth:`perdure.store.base.Store.list_instances`.

        ``created_after`` is inclusive, ``created_before`` exclusive; the cursor is opaque.
        """
        limit = max(1, query.limit)
        params = _filter_params(query)
        params["cursor_created"], params["cursor_id"] = (None, None)
        if query.cursor:
            params["cursor_created"], params["cursor_id"] = decode_cursor(query.cursor)
        params["limit"] = limit + 1
        sql, key = (
            (Q.list_instances_by_updated, "last_updated_at")
            if query.sort == "updated"
            else (Q.list_instances, "created_at")
        )
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = encode_cursor(rows[-1][key], rows[-1]["instance_id"]) if more else None
        return Page([instance_from_row(r) for r in rows], cursor)

    def pending_messages(self, instance_id: str) -> list[QueuedMessage]:
        """See :meth:`perdure.store.base.Store.pending_messages`."""
        with self._read() as conn:
            rows = conn.execute(Q.messages_of_instance, {"instance_id": instance_id}).fetchall()
        return [message_from_row(r) for r in rows]

    def activity_tasks(self, instance_id: str) -> list[ActivityWorkItem]:
        """See :meth:`perdure.store.base.Store.activity_tasks`."""
        with self._read() as conn:
            rows = conn.execute(Q.tasks_of_instance, {"instance_id": instance_id}).fetchall()
        return [task_from_row(r) for r in rows]

    def queue_stats(self) -> QueueStats:
        """See :meth:`perdure.store.base.Store.queue_stats`."""
        now = self.clock()
        with self._read() as conn:
            row = conn.execute(Q.queue_stats, {"now": now}).fetchone()
        oldest_orch, oldest_act = row["oldest_orchestration"], row["oldest_activity"]
        return QueueStats(
            orchestration_depth=row["orchestration_depth"],
            orchestration_visible=row["orchestration_visible"],
            oldest_orchestration_age=None if oldest_orch is None else max(0.0, now - oldest_orch),
            activity_depth=row["activity_depth"],
            activity_visible=row["activity_visible"],
            activity_locked=row["activity_locked"],
            oldest_activity_age=None if oldest_act is None else max(0.0, now - oldest_act),
            dead_letters=row["dead_letters"],
        )

    def dead_letters(self, *, instance_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """See :meth:`perdure.store.base.Store.dead_letters`."""
        with self._read() as conn:
            rows = conn.execute(Q.dead_letters, {"instance_id": instance_id, "limit": limit}).fetchall()
        return [dead_letter_from_row(r) for r in rows]

    def discarded_messages(self, *, instance_id: str | None = None, limit: int = 100) -> list[DiscardRecord]:
        """See :meth:`perdure.store.base.Store.discarded_messages`."""
        with self._read() as conn:
            rows = conn.execute(Q.discarded_messages, {"instance_id": instance_id, "limit": limit}).fetchall()
        return [discard_from_row(r) for r in rows]

    def next_visible_at(self, *, queue: str | None = None) -> float | None:
        """See :meth:`perdure.store.base.Store.next_visible_at`."""
        with self._read() as conn:
            times = due_times(conn, Q, queue)
        return min((t for t in times if t is not None), default=None)

    # -- fleet reads (diagnosis) --

    def instance_counts(self) -> list[InstanceCount]:
        """See :meth:`perdure.store.base.Store.instance_counts`."""
        with self._read() as conn:
            rows = conn.execute(Q.instance_counts).fetchall()
        return [count_from_row(r) for r in rows]

    def oldest_instances(
        self,
        *,
        statuses: Collection[OrchestrationStatus],
        offset: int = 0,
        limit: int = 10,
    ) -> list[InstanceSummary]:
        """See :meth:`perdure.store.base.Store.oldest_instances`."""
        values = sorted({OrchestrationStatus(s).value for s in statuses})
        params: dict[str, Any] = {"offset": max(0, offset), "limit": max(0, limit)}
        query = Q.oldest_instances
        if len(values) == 1:
            params["status"], query = values[0], Q.oldest_instances_of_status
        else:
            params["statuses"] = json_list(values)
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [summary_from_row(r) for r in rows]

    def stalled_instances(self, *, progress_before: float, limit: int = 100) -> tuple[int, list[InstanceSummary]]:
        """See :meth:`perdure.store.base.Store.stalled_instances`."""
        with self._read() as conn:
            total = conn.execute(Q.count_stalled_instances, {"before": progress_before}).fetchone()["total"]
            rows = conn.execute(Q.stalled_instances, {"before": progress_before, "limit": max(0, limit)}).fetchall()
        return int(total), [summary_from_row(r) for r in rows]

    def queue_depths(self) -> list[QueueDepth]:
        """See :meth:`perdure.store.base.Store.queue_depths`."""
        now = self.clock()
        with self._read() as conn:
            rows = conn.execute(Q.queue_depths, {"now": now}).fetchall()
        return queue_depths_from_rows(rows, now)


_ROUND = rounds.RoundSteps(
    complete_activities=activities.complete_activities,
    lock_orchestrations=orchestrations.lock_orchestrations,
    commit_turns=orchestrations.commit_turns,
    send_lock_activities=rounds.at_once(activities.lock_activities),
    send_due_times=rounds.due_times_when_read(Q),
)


def _filter_params(query: InstanceQuery) -> dict[str, Any]:
    """The filter parameters shared by ``list_instances`` and ``terminal_instances_matching``."""
    statuses = None
    if query.statuses is not None:
        statuses = sorted(OrchestrationStatus(s).value for s in query.statuses)
    return {
        "statuses": json_list(statuses),
        "name": query.name,
        "version": query.version,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "parent_instance_id": query.parent_instance_id,
        "prefix": query.instance_id_prefix or None,
    }
