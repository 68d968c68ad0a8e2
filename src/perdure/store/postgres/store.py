"""The PostgreSQL implementation of :class:`perdure.store.base.Store`."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import psycopg

from perdure.core.history import dumps_checked
from perdure.core.status import OrchestrationStatus
from perdure.errors import InstanceExistsError, InvalidInputError, StoreError
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
from perdure.store.common.encode import (
    StoreOptions,
    check_retention,
    prepare_completions,
    prepare_turn,
    started_instance,
)
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
from perdure.store.notify import INSTANCES, ORCHESTRATIONS, Notifier
from perdure.store.open import check_postgres_schema, public_url
from perdure.store.postgres import activities, orchestrations, reopen
from perdure.store.postgres.clock import ServerClock
from perdure.store.postgres.connection import AfterCommit, Answer, ChecksRefused, Database, RetryPolicy, Tx, text_array
from perdure.store.postgres.listen import Listener, channel, channels
from perdure.store.postgres.migrations import migrate
from perdure.store.postgres.queries import Q
from perdure.store.postgres.wire import Pipeline

log = logging.getLogger("perdure.store.postgres")

#: The server's refusals of a write to a role that may only read.
_READ_ONLY = (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)

SCHEMES = ("postgresql", "postgres")


class PostgresStore:
    """A store in one PostgreSQL database, shared by any number of worker processes.

    Time: lease expiry, lease takeover and timer due times follow the database server's
    clock (:class:`~perdure.store.postgres.clock.ServerClock`: this host's clock, given by
    ``host_clock``, plus the measured offset to the server's), so hosts whose clocks
    disagree still agree on them. ``clock`` (``() -> float`` UTC epoch seconds) replaces it
    entirely (tests control time with it; every process sharing a database must then agree).

    Options: ``max_deliveries`` (tries before an undeliverable message is dead-lettered,
    default 25), ``defer_backoff`` / ``defer_backoff_cap`` (backoff of those tries: 0.1 s
    doubling up to 30 s), ``keep_executions`` (history retention: how many executions
    before an instance's current one keep their history, default 5; ``None`` keeps all),
    ``pool_size`` (most connections, default 10; or a ``(min, max)`` pair), ``connect_timeout``
    (seconds to wait for a connection, default 10), ``retry_attempts`` / ``retry_backoff``
    (transient faults: 6 tries, from 0.05 s doubling up to 2 s), ``notify`` (LISTEN/NOTIFY
    wake-ups across processes, default on), ``listen_url`` (where the listener connects, by
    default ``url``; LISTEN needs a session, so behind a transaction-pooling PgBouncer point
    it at the server itself), ``prepare_threshold`` (0, the default: every statement is
    prepared on its first use on each connection; ``None`` behind such a PgBouncer: none
    is; no counting threshold is offered), ``application_name`` (the
    listener's gets ``-listener`` appended) and ``create`` (default True: create or migrate
    the schema; False: refuse a database without perdure's current schema, see
    :func:`perdure.store.open.open_store`).

    Leases: as in the SQLite store, a token holds until another caller takes the lease over
    (possible only once it has expired) or it is released; a holder whose lease expired but
    was not yet taken over may still write.

    Faults: an operation that meets a transient fault (lost connection, server restarting,
    deadlock) before COMMIT is retried; if the connection fails *during* COMMIT the outcome
    is unknown and :class:`~perdure.errors.StoreUnavailableError` is raised. Repeating the
    operation is safe: writes under a lease are fenced by its token and duplicated messages
    are discarded on delivery.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        host_clock: Callable[[], float] = time.time,
        max_deliveries: int = 25,
        defer_backoff: float = 0.1,
        defer_backoff_cap: float = 30.0,
        keep_executions: int | None = 5,
        pool_size: int | tuple[int, int] = 10,
        connect_timeout: float = 10.0,
        retry_attempts: int = 6,
        retry_backoff: float = 0.05,
        notify: bool = True,
        listen_url: str | None = None,
        prepare_threshold: int | None = 0,
        application_name: str = "perdure",
        create: bool = True,
    ) -> None:
        if prepare_threshold not in (0, None) or isinstance(prepare_threshold, bool):
            raise InvalidInputError(
                "prepare_threshold must be 0 (prepare every statement on its first use) or None "
                f"(never: behind a transaction-pooling PgBouncer), not {prepare_threshold!r}"
            )
        if max_deliveries < 1:
            raise InvalidInputError(f"max_deliveries must be at least 1, not {max_deliveries}")
        check_retention(keep_executions)
        if url.split("://", 1)[0].lower() not in SCHEMES:
            raise InvalidInputError(f"not a PostgreSQL URL: {public_url(url)!r}")
        min_size, max_size = (1, pool_size) if isinstance(pool_size, int) else pool_size
        if not 0 <= min_size <= max_size or max_size < 1:
            raise InvalidInputError(f"pool_size must be a positive size or a (min, max) pair, not {pool_size!r}")
        self.url = public_url(url)
        self.notifier = Notifier()
        self.fault_hook: Callable[[str], None] | None = None
        self.options = StoreOptions(max_deliveries, float(defer_backoff), float(defer_backoff_cap), keep_executions)
        self.notify_enabled = notify
        self.sender = secrets.token_hex(8)  # NOTIFY payload: lets our listener skip our own
        self._may_watch = True  # False once the server refused this role the mark of a watch
        self._db = Database(
            url,
            display=self.url,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            retry=RetryPolicy(attempts=max(1, retry_attempts), backoff=retry_backoff),
            prepare_threshold=prepare_threshold,
            application_name=application_name,
        )
        self.listener: Listener | None = None
        self.server_clock: ServerClock | None = None
        self.clock: Callable[[], float] = clock or host_clock
        try:
            if clock is None:
                self.server_clock = ServerClock(self._server_time, host_clock)
                self.server_clock.start()
                self.clock = self.server_clock
            if create:
                self._db.session("migrate", lambda conn: migrate(conn, now=self.clock()))
            else:  # read-only tools: a database without perdure's current schema is refused
                self._db.session("check schema", lambda conn: check_postgres_schema(conn, self.url))
            if notify:
                self.listener = Listener(
                    listen_url or url,
                    self.notifier,
                    sender=self.sender,
                    connect_kwargs={
                        "connect_timeout": max(1, int(connect_timeout)),
                        "application_name": f"{application_name}-listener",
                        "keepalives": 1,
                        "keepalives_idle": 30,
                        "keepalives_interval": 10,
                        "keepalives_count": 3,
                    },
                )
                self.notifier.every_process = True
                self.notifier.follow = self.listener.follow
        except BaseException:
            if self.server_clock is not None:
                self.server_clock.stop()
            self._db.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """Open ``postgresql://user[:password]@host[:port]/database[?param=value...]`` (also
        ``postgres://``); libpq parameters in the query string are passed through."""
        return cls(url, **options)

    def close(self) -> None:
        """Stop the listener and the clock and close the connections. Idempotent."""
        if self.listener is not None:
            self.listener.close()
        if self.server_clock is not None:
            self.server_clock.stop()
        self._db.close()

    def _server_time(self) -> float:
        """The server's clock now (one query)."""
        row = self._db.read("server_time", lambda conn: conn.execute(Q.server_time).fetchone())
        return float(row["t"])

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    # -- transactions --

    def _write(
        self,
        method: str,
        body: Callable[[Tx], Any],
        *,
        durable: bool = True,
        generic_plans: bool = False,
        point: str = "inside",
    ) -> Any:
        """Run ``body`` in one transaction (retried on transient faults before COMMIT). The
        NOTIFYs and the fault hook (as ``f"{method}:{point}"``) run last inside it; local
        waiters are woken after it. ``durable=False``, ``generic_plans``: see
        :meth:`Database.write`."""

        def before_commit(tx: Tx) -> None:
            expected = self.notifier.ended.expected_among(tx.ended)
            unsent = tx.topics - tx.notified if self.notify_enabled else set()
            if expected or unsent:
                # The server runs the statements sent so far (a turn's write) while the
                # reads of ends and the NOTIFY are built.
                tx.send_ahead()
            for instance_id in expected:
                # Read in the transaction, so as its turn wrote it; handed over if it commits.
                tx.read_after_commit(
                    Q.get_instance,
                    {"instance_id": instance_id},
                    lambda answer: self.notifier.ended.hand(map(instance_from_row, answer.fetchall())),
                )
            if unsent:
                if INSTANCES in unsent and not tx.instances_for_all:
                    # Only ends: other processes hear of them only where a wait watches one.
                    tx.run(
                        Q.notify_ends,
                        {
                            "channels": text_array(channels(unsent - {INSTANCES})),
                            "instances": channel(INSTANCES),
                            "ended": text_array(tx.ended),
                            "sender": self.sender,
                        },
                    )
                else:
                    tx.run(Q.notify, {"channels": text_array(channels(unsent)), "sender": self.sender})
            if self.fault_hook is not None:
                tx.flush()  # the hook finds the transaction as COMMIT will: every statement done
                self.fault_hook(f"{method}:{point}")

        result, topics = self._db.write(
            method,
            body,
            clock=self.clock,
            before_commit=before_commit,
            options=self.options,
            durable=durable,
            generic_plans=generic_plans,
            sender=self.sender if self.notify_enabled else None,
        )
        if topics:
            self.notifier.notify(*sorted(topics))
        return result

    def _write_optimistically(self, method: str, body: Callable[[Tx], Any], *, durable: bool = True) -> Any:
        """:meth:`_write` with the turns committed optimistically (:attr:`Tx.optimistic`:
        their checks are not read before they are written); if a turn fails its checks,
        the transaction is run again, reading them first. A worker's transactions, with
        generic plans."""

        def optimistic(tx: Tx) -> Any:
            tx.optimistic = True
            return body(tx)

        try:
            return self._write(method, optimistic, durable=durable, generic_plans=True)
        except ChecksRefused:
            log.debug("%s: a turn failed its checks; running the transaction again, checks first", method)
            return self._write(method, body, durable=durable, generic_plans=True)

    def _read(self, method: str, body: Callable[[Pipeline], Any]) -> Any:
        return self._db.read(method, body)

    # -- client writes --

    def create_instance(self, instance: NewInstance, *, replace_terminal: bool = False) -> None:
        """See :meth:`perdure.store.base.Store.create_instance`."""
        self.create_instances([instance], replace_terminal=replace_terminal)

    def create_instances(
        self, instances: Sequence[NewInstance], *, replace_terminal: bool = False, request_id: str | None = None
    ) -> None:
        """See :meth:`perdure.store.base.Store.create_instances`."""
        inputs = {i.instance_id: input_column(i) for i in instances}
        if not instances:
            return
        # Id order: the per-id advisory locks are always taken in the same order, so two
        # batches never deadlock.
        ordered = sorted(instances, key=lambda i: i.instance_id)

        def body(tx: Tx) -> None:
            # Every statement is sent before any answer is read (one round trip); if the
            # request was applied already (a retry after an unknown outcome), the
            # transaction is rolled back instead of committed.
            request = orchestrations.send_request(tx, request_id, "start", instances[0].instance_id)
            outbox = orchestrations.Outbox()
            insert = self._send_inserts(tx, ordered, inputs, replace_terminal)
            if not request():
                raise _AppliedAlready
            insert(outbox)
            outbox.flush(tx)
            tx.notify(ORCHESTRATIONS)

        with contextlib.suppress(_AppliedAlready):
            self._write("create_instance", body)

    @staticmethod
    def _send_inserts(
        tx: Tx,
        instances: Sequence[NewInstance],
        inputs: Mapping[str, str | None],
        replace_terminal: bool,
        status: OrchestrationStatus = OrchestrationStatus.PENDING,
    ) -> Callable[[orchestrations.Outbox | None], None]:
        """Send, for each of ``instances`` in turn, the lock of its id, the read of its row
        and the insert of its first run (which does nothing if the id is taken), with
        ``status``; return the function that reads the answers and finishes each start after
        create_instance's checks (a taken id whose run may be replaced is retired and
        inserted again), queuing the start messages in the outbox given (if any). A fresh id
        (nobody else knows it) is only inserted."""
        sent = []
        for instance in instances:
            iid = instance.instance_id
            row: Answer | None = None
            if not instance.fresh_id:
                tx.run(Q.lock_instance_id, {"instance_id": iid})
                row = tx.run(Q.lock_instance, {"instance_id": iid})
            run_id = instance.run_id or new_run_id()
            params = new_instance_params(
                iid, instance.name, inputs[iid], instance.parent, tx.now, run_id, 1, instance.version, status
            )
            sent.append((instance, row, run_id, params, tx.run(Q.insert_instance, params)))

        def finish(outbox: orchestrations.Outbox | None) -> None:
            for instance, row_cursor, run_id, params, inserted in sent:
                row = row_cursor.fetchone() if row_cursor is not None else None
                check_new_instance(row, instance)
                execution = 1
                if row is not None:
                    check_replaceable(row, replace_terminal)
                    execution = orchestrations.retire_run(tx, row)
                    if not orchestrations.insert_instance(tx, {**params, "execution_id": execution}):
                        raise InstanceExistsError(f"instance {instance.instance_id!r} already exists")
                elif inserted.fetchone() is None:  # a fresh id taken: what a random id never is
                    raise InstanceExistsError(f"instance {instance.instance_id!r} already exists")
                if outbox is not None:
                    PostgresStore._queue_start(tx, outbox, instance, run_id, execution)

        return finish

    @staticmethod
    def _queue_start(tx: Tx, outbox: orchestrations.Outbox, instance: NewInstance, run_id: str, execution: int) -> None:
        """Queue the ``ExecutionStarted`` of a new run."""
        outbox.add(
            instance.instance_id,
            run_id,
            execution,
            *start_row(instance, run_id, execution, tx.now),
            tx.now,
            instance.start_at,
        )

    def rewind(self, rewinds: Sequence[Rewind], *, request_id: str | None = None) -> None:
        """See :meth:`perdure.store.base.Store.rewind`."""
        if not rewinds:
            return

        def body(tx: Tx) -> None:
            if orchestrations.first_request(tx, request_id, "rewind", rewinds[-1].instance_id):
                for one in rewinds:
                    reopen.rewind(tx, one)

        self._write("rewind", body)

    def reset(self, reset: Reset, *, request_id: str | None = None) -> None:
        """See :meth:`perdure.store.base.Store.reset`."""

        def body(tx: Tx) -> None:
            if orchestrations.first_request(tx, request_id, "reset", reset.instance_id):
                reopen.reset(tx, reset)

        self._write("reset", body)

    def enqueue_messages(self, messages: Sequence[Message], *, request_id: str | None = None) -> None:
        """See :meth:`perdure.store.base.Store.enqueue_messages`."""
        encoded = [(m, type(m.event).__name__, dumps_checked(m.event, "a message")) for m in messages]
        if not encoded:
            return

        def body(tx: Tx) -> None:
            if not orchestrations.first_request(tx, request_id, encoded[0][1], messages[0].instance_id):
                return  # applied already: a retry after an unknown outcome
            outbox = orchestrations.Outbox()
            for m, kind, text in encoded:
                outbox.add(m.instance_id, m.run_id, m.execution_id, kind, text, tx.now, m.visible_at)
            outbox.flush(tx)

        self._write("enqueue_messages", body)

    def purge_instances(self, instance_ids: Sequence[str]) -> int:
        """See :meth:`perdure.store.base.Store.purge_instances`."""
        ids = sorted(set(instance_ids))
        if not ids:
            return 0

        def body(tx: Tx) -> int:
            terminal = [r["instance_id"] for r in tx.all(Q.terminal_instances_among, {"ids": ids})]
            orphans = [r["instance_id"] for r in tx.all(Q.orphans_among, {"ids": ids})]
            return _purge(tx, terminal + orphans)

        return int(self._write("purge_instances", body))

    def purge_where(self, query: InstanceQuery) -> int:
        """See :meth:`perdure.store.base.Store.purge_where`."""
        params = _filter_params(query)

        def body(tx: Tx) -> int:
            ids = [r["instance_id"] for r in tx.all(Q.terminal_instances_matching, params)]
            if purges_orphans(query):
                ids += [r["instance_id"] for r in tx.all(Q.orphans_with_prefix, params)]
            return _purge(tx, ids)

        return int(self._write("purge_where", body))

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

        Beyond the contract (as in the SQLite store): an execution whose history is still
        empty gets its ``ExecutionStarted`` first among the returned messages; other messages
        for it wait (without using up tries) until that start message is due.
        """
        if limit < 1:
            return []

        def body(tx: Tx) -> list[OrchestrationWorkItem]:
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

        return list(self._write("lock_orchestrations", body))

    def commit_turns(self, commits: Sequence[TurnCommit]) -> list[Outcome]:
        """See :meth:`perdure.store.base.Store.commit_turns`.

        Payloads are encoded before the transaction: one that is not JSON raises
        :class:`~perdure.errors.SerializationError` for the whole batch, which writes nothing.
        """
        prepared = [prepare_turn(c) for c in commits]
        if not prepared:
            return []
        return list(self._write_optimistically("commit_turns", lambda tx: orchestrations.commit_turns(tx, prepared)))

    def abandon_orchestration(self, instance_id: str, lease_token: str, *, retry_after: float = 0.0) -> None:
        """See :meth:`perdure.store.base.Store.abandon_orchestration`."""
        self._write(
            "abandon_orchestration",
            lambda tx: orchestrations.abandon(tx, instance_id, lease_token, retry_after),
        )

    def renew_orchestration_lease(self, instance_id: str, lease_token: str, lease_seconds: float) -> float:
        """See :meth:`perdure.store.base.Store.renew_orchestration_lease`."""
        return float(
            self._write(
                "renew_orchestration_lease",
                lambda tx: orchestrations.renew(tx, instance_id, lease_token, lease_seconds),
            )
        )

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

        def body(tx: Tx) -> list[ActivityWorkItem]:
            return activities.lock_activities(
                tx,
                owner,
                lease_seconds=lease_seconds,
                limit=limit,
                names=names,
                task_row_ids=task_row_ids,
            )

        return list(self._write("lock_activities", body))

    def complete_activities(self, completions: Sequence[ActivityCompletion]) -> list[Outcome]:
        """See :meth:`perdure.store.base.Store.complete_activities`."""
        prepared = prepare_completions(completions)
        if not prepared:
            return []
        return list(self._write("complete_activities", lambda tx: activities.complete_activities(tx, prepared)))

    # -- a worker round --

    def run_round(self, request: RoundRequest) -> RoundResult:
        """See :meth:`perdure.store.base.Store.run_round`."""
        prepared = rounds.prepare_round(request)

        def body(tx: Tx) -> RoundResult | AfterCommit:
            result = rounds.run_round(tx, _ROUND, self.options, request, prepared)
            # Locking no instances, the round sends nothing after its reads: they go with
            # the COMMIT (one round trip fewer).
            return AfterCommit(result) if request.orchestration_limit == 0 else result()

        return self._write_optimistically("run_round", body, durable=prepared.durable)

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

        # The row goes in with the status its first turn leaves (unless that ends it: the
        # turn's checks refuse an ended instance), so that the turn's write, in this
        # transaction, updates it in place, writing no index entry (HOT: no indexed column
        # changes; instances_by_updated keys on the second, the same for both writes).
        status = turns[0].status if turns and not turns[0].status.is_terminal else OrchestrationStatus.PENDING

        def body(tx: Tx) -> EagerResult | AfterCommit:
            optimistic = orchestrations.commits_optimistically(tx, turns)
            # A fresh id's row goes in as its first turn leaves it: that turn's write then
            # neither checks nor updates it (no other transaction sees the row or its lease).
            started = instance.fresh_id and optimistic and len(turns) == 1 and not turns[0].status.is_terminal
            orchestrations.send_request(tx, request_id, "start", instance.instance_id)
            if started:
                row = new_instance_params(
                    instance.instance_id, new.name, input_text, new.parent, tx.now, new.run_id, 1, new.version, status
                )
                tx.run(Q.insert_started_instance, started_instance(row, turns[0]))
            else:
                inserted = self._send_inserts(tx, [new], {instance.instance_id: input_text}, replace_terminal, status)
                if not instance.fresh_id:
                    inserted(None)  # a run it replaces is retired before the first turn is written
            tx.run(
                Q.upsert_leases,
                {
                    "instance_ids": text_array([instance.instance_id]),
                    "tokens": text_array([item.lease_token]),
                    "owner": owner,
                    "expires_at": tx.now + lease_seconds,
                    "lease_seconds": lease_seconds,
                    "now": tx.now,
                },
            )
            take = rounds.take_scheduled(tx, owner, lease_seconds, tasks)
            outcomes = orchestrations.commit_turns(tx, turns, inserted=instance.fresh_id, started=started)
            if instance.fresh_id and optimistic:
                # Nothing is left to decide before the COMMIT: the answers go with it (one round
                # trip). The insert is not read: had it found the id taken (what a random id
                # never is), the insert itself (a started turn's) or the turn's own checks (its
                # run is not the id's) would have failed the transaction, which then runs again
                # reading everything first.
                return AfterCommit(lambda: EagerResult(outcomes, take()))
            if instance.fresh_id:
                inserted(None)  # read with the tasks: no round trip of its own
            else:
                # Messages queued for the id before it existed: the next turn takes them.
                tx.read_later(
                    Q.any_messages_among,
                    {"ids": [instance.instance_id]},
                    lambda cursor: tx.notify(ORCHESTRATIONS) if cursor.fetchone() else None,
                )
            return EagerResult(outcomes, take())

        return self._write_optimistically("create_and_run", body)  # type: ignore[no-any-return]

    def renew_activity_leases(self, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[bool]:
        """See :meth:`perdure.store.base.Store.renew_activity_leases`."""
        if not leases:
            return []
        return list(
            self._write(
                "renew_activity_leases",
                lambda tx: activities.renew_leases(tx, leases, lease_seconds),
            )
        )

    def abandon_activity(self, task_row_id: int, lease_token: str, *, retry_after: float = 0.0) -> None:
        """See :meth:`perdure.store.base.Store.abandon_activity`."""
        self._write(
            "abandon_activity",
            lambda tx: activities.abandon(tx, task_row_id, lease_token, retry_after),
        )

    # -- workers --

    def heartbeat(self, worker: WorkerRecord) -> None:
        """See :meth:`perdure.store.base.Store.heartbeat`."""
        self._write("heartbeat", lambda tx: tx.run(Q.upsert_worker, worker_params(worker, tx.now)))

    def remove_worker(self, worker_id: str) -> None:
        """See :meth:`perdure.store.base.Store.remove_worker`."""
        self._write("remove_worker", lambda tx: tx.run(Q.delete_worker, {"worker_id": worker_id}))

    def sweep(self, *, workers_before: float, requests_before: float) -> None:
        """See :meth:`perdure.store.base.Store.sweep`."""

        def body(tx: Tx) -> None:
            tx.run(Q.forget_workers, {"before": workers_before})
            tx.run(Q.forget_requests, {"before": requests_before})

        self._write("sweep", body)

    def list_workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """See :meth:`perdure.store.base.Store.list_workers`."""
        since = None if alive_within is None else self.clock() - alive_within
        rows = self._read("list_workers", lambda c: c.execute(Q.list_workers, {"alive_since": since}).fetchall())
        return [worker_from_row(r) for r in rows]

    # -- reads --

    def watch_instance(self, instance_id: str) -> InstanceRecord | None:
        """See :meth:`perdure.store.base.Store.watch_instance`: the mark, then the read (a
        statement of its own, so that it sees a transaction that held the row, ending it,
        as committed), with the COMMIT in one round trip. A role that may only read (no
        UPDATE granted, or read-only transactions, as on a standby) reads the row: its
        waits then see ends in other processes by polling (warned once)."""
        if not self._may_watch:
            return self.get_instance(instance_id)

        def body(tx: Tx) -> AfterCommit:
            tx.run(Q.watch_instance, {"instance_id": instance_id})
            row = tx.run(Q.get_instance, {"instance_id": instance_id})
            return AfterCommit(lambda: None if (found := row.fetchone()) is None else instance_from_row(found))

        try:
            return self._write("watch_instance", body, durable=False)  # type: ignore[no-any-return]
        except StoreError as exc:
            if not isinstance(exc.__cause__, _READ_ONLY):
                raise
            self._may_watch = False
            log.warning(
                "the role on %s may not mark the instances its waits watch (%s): a wait here sees "
                "an instance that ends in another process by polling, not at once",
                self.url,
                str(exc.__cause__).strip(),
            )
            return self.get_instance(instance_id)

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """See :meth:`perdure.store.base.Store.get_instance`."""
        row = self._read(
            "get_instance",
            lambda c: c.execute(Q.get_instance, {"instance_id": instance_id}).fetchone(),
        )
        return None if row is None else instance_from_row(row)

    def get_history(
        self,
        instance_id: str,
        *,
        execution_id: int | None = None,
        after_sequence: int = -1,
        limit: int | None = None,
    ) -> list[HistoryRecord]:
        """See :meth:`perdure.store.base.Store.get_history`."""
        params = {
            "instance_id": instance_id,
            "execution_id": execution_id,
            "after_sequence": after_sequence,
            "limit": None if limit is None else max(0, limit),
        }
        rows = self._read("get_history", lambda c: c.execute(Q.history_page, params).fetchall())
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
        rows = self._read("list_instances", lambda c: c.execute(sql, params).fetchall())
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = encode_cursor(rows[-1][key], rows[-1]["instance_id"]) if more else None
        return Page([instance_from_row(r) for r in rows], cursor)

    def pending_messages(self, instance_id: str) -> list[QueuedMessage]:
        """See :meth:`perdure.store.base.Store.pending_messages`."""
        rows = self._read(
            "pending_messages",
            lambda c: c.execute(Q.messages_of_instance, {"instance_id": instance_id}).fetchall(),
        )
        return [message_from_row(r) for r in rows]

    def activity_tasks(self, instance_id: str) -> list[ActivityWorkItem]:
        """See :meth:`perdure.store.base.Store.activity_tasks`."""
        rows = self._read(
            "activity_tasks",
            lambda c: c.execute(Q.tasks_of_instance, {"instance_id": instance_id}).fetchall(),
        )
        return [task_from_row(r) for r in rows]

    def queue_stats(self) -> QueueStats:
        """See :meth:`perdure.store.base.Store.queue_stats`."""
        now = self.clock()
        row = self._read("queue_stats", lambda c: c.execute(Q.queue_stats, {"now": now}).fetchone())
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
        params = {"instance_id": instance_id, "limit": limit}
        rows = self._read("dead_letters", lambda c: c.execute(Q.dead_letters, params).fetchall())
        return [dead_letter_from_row(r) for r in rows]

    def discarded_messages(self, *, instance_id: str | None = None, limit: int = 100) -> list[DiscardRecord]:
        """See :meth:`perdure.store.base.Store.discarded_messages`."""
        params = {"instance_id": instance_id, "limit": limit}
        rows = self._read("discarded_messages", lambda c: c.execute(Q.discarded_messages, params).fetchall())
        return [discard_from_row(r) for r in rows]

    def next_visible_at(self, *, queue: str | None = None) -> float | None:
        """See :meth:`perdure.store.base.Store.next_visible_at`."""
        times = self._read("next_visible_at", lambda c: due_times(c, Q, queue))
        return min((t for t in times if t is not None), default=None)

    # -- fleet reads (diagnosis) --

    def instance_counts(self) -> list[InstanceCount]:
        """See :meth:`perdure.store.base.Store.instance_counts`."""
        rows = self._read("instance_counts", lambda c: c.execute(Q.instance_counts).fetchall())
        return [count_from_row(r) for r in rows]

    def oldest_instances(
        self,
        *,
        statuses: Collection[OrchestrationStatus],
        offset: int = 0,
        limit: int = 10,
    ) -> list[InstanceSummary]:
        """See :meth:`perdure.store.base.Store.oldest_instances`."""
        params = {
            "statuses": sorted(OrchestrationStatus(s).value for s in statuses),
            "offset": max(0, offset),
            "limit": max(0, limit),
        }
        rows = self._read("oldest_instances", lambda c: c.execute(Q.oldest_instances, params).fetchall())
        return [summary_from_row(r) for r in rows]

    def stalled_instances(self, *, progress_before: float, limit: int = 100) -> tuple[int, list[InstanceSummary]]:
        """See :meth:`perdure.store.base.Store.stalled_instances`."""

        def body(c: Pipeline) -> tuple[int, list[InstanceSummary]]:
            params = {"before": progress_before, "limit": max(0, limit)}
            total = c.execute(Q.count_stalled_instances, params).fetchone()["total"]
            rows = c.execute(Q.stalled_instances, params).fetchall()
            return int(total), [summary_from_row(r) for r in rows]

        result: tuple[int, list[InstanceSummary]] = self._read("stalled_instances", body)
        return result

    def queue_depths(self) -> list[QueueDepth]:
        """See :meth:`perdure.store.base.Store.queue_depths`."""
        now = self.clock()
        rows = self._read("queue_depths", lambda c: c.execute(Q.queue_depths, {"now": now}).fetchall())
        return queue_depths_from_rows(rows, now)


class _AppliedAlready(Exception):
    """A client request that was applied before: its transaction is rolled back."""


_ROUND = rounds.RoundSteps(
    complete_activities=activities.complete_activities,
    lock_orchestrations=orchestrations.lock_orchestrations,
    commit_turns=orchestrations.commit_turns,
    send_lock_activities=activities.send_lock_activities,
    send_due_times=orchestrations.send_due_times,
    send_lock_activities_and_due_times=activities.send_lock_activities_and_due_times,
)


def _purge(tx: Tx, instance_ids: list[str]) -> int:
    """Delete the (locked, terminal) instances and everything recorded about them."""
    if not instance_ids:
        return 0
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
        tx.run(query, {"ids": instance_ids})
    tx.notify(INSTANCES)
    return len(instance_ids)


def _filter_params(query: InstanceQuery) -> dict[str, Any]:
    """The filter parameters shared by ``list_instances`` and ``terminal_instances_matching``."""
    statuses = None
    if query.statuses is not None:
        statuses = sorted(OrchestrationStatus(s).value for s in query.statuses)
    return {
        "statuses": statuses,
        "name": query.name,
        "version": query.version,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "parent_instance_id": query.parent_instance_id,
        "prefix": query.instance_id_prefix or None,
    }
