"""PostgreSQL connections: a psycopg pool, write transactions, and retries of transient faults.

Every store operation borrows a pooled connection (autocommit mode) and talks to the
server through its libpq pipeline (:mod:`perdure.store.postgres.wire`). A write runs in one
READ COMMITTED transaction (:meth:`Database.write`, :class:`Tx`); a read's statements sent
together run as one implicit transaction, on one snapshot (:meth:`Database.read`).

Transient faults (the connection broke, the server is restarting, a deadlock was broken)
are retried with exponential backoff when nothing can have been committed: the failure
happened before COMMIT was sent, or the server reported an error (which rolled the
transaction back). A connection lost *during* COMMIT leaves the outcome unknown; that is
raised as :class:`~perdure.errors.StoreUnavailableError` and not retried here. Retrying it
at a higher level is safe: every write made under a lease is fenced by its token, a lock or
renewal is idempotent in effect (at worst a lease is held until it expires), and a
duplicated message is discarded at delivery (invariant 7).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from perdure.core.records import frozen_record
from perdure.errors import StoreError, StoreUnavailableError
from perdure.store.common.encode import StoreOptions
from perdure.store.common.scheduled import ScheduledTake
from perdure.store.notify import INSTANCES
from perdure.store.postgres.wire import STATEMENT_MISSING, Answer, Pipeline, simple

log = logging.getLogger("perdure.store.postgres")

T = TypeVar("T")


@frozen_record
class AfterCommit:
    """A write body's result to read once its transaction has committed: the statements it
    reads go with the COMMIT, in one round trip. Only for a body that sends nothing after
    them."""

    read: Callable[[], Any]


# SQLSTATEs after which the transaction is known to be rolled back and a retry may succeed.
_TRANSIENT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57P01",  # admin_shutdown (server stopping)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (server starting)
    }
)


class ChecksRefused(StoreError):
    """An optimistic transaction (:attr:`Tx.optimistic`) failed: a turn it committed failed
    a check, or a row it wrote without reading first was taken. Nothing was written; run it
    again without optimism."""


def _refused(exc: psycopg.Error) -> bool:
    """Whether ``exc`` is the refusal of an optimistic commit (``write_plain_turns``)."""
    return exc.sqlstate == "22P02" and "perdure: commit refused" in (exc.diag.message_primary or "")


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: a lost or refused connection, a pool that could not
    hand out a connection in time, a transaction PostgreSQL aborted to break a deadlock, the
    store's prepared statements deallocated behind its back (prepared again on the retry)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.Error) and exc.sqlstate == STATEMENT_MISSING:
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _TRANSIENT_STATES


def outcome_unknown(exc: psycopg.OperationalError) -> bool:
    """Whether a fault raised while committing leaves the outcome unknown: the connection
    broke, or the server was shutting down, after COMMIT may have been carried out. An
    error the server reported for a statement (one sent before the COMMIT, or the COMMIT
    itself) means it rolled the transaction back."""
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


# What a failed connection attempt says when trying again may succeed: the server is not
# (yet) reachable or not accepting connections right now. Anything else the server or libpq
# answered (no such database or role, bad password, bad option, SSL refused) is permanent.
_TRANSIENT_CONNECT = (
    "connection refused",
    "timeout expired",
    "timed out",
    "no route to host",
    "connection reset",
    "temporary failure in name resolution",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "remaining connection slots are reserved",
)
_PROBE_INTERVAL = 0.25


# A worker's transactions run their statements with the plans made once for any parameters.
# PostgreSQL plans a prepared statement anew at each call for its parameters while that
# plan's estimate beats the generic one's, which it does for a round's statements once the
# queues hold rows due later (a time parameter then selects none of them): planning them
# costs more than running them. Their generic plans look rows up by key (see
# write_plain_turns in queries.sql). Statements with optional filters (list_instances) need
# plans made for their parameters: the other transactions and the reads run with the
# server's settings. Those plans look keys up with plain index scans, never bitmap scans: a
# bitmap heap scan asks the file system for its table's size each time it starts, and for
# the few rows a worker's statement reads it costs the server more to set up than to run
# (5% of a round's server time).
# A session keeps the plans of the last transaction that committed on it (a session-level
# setting, sent only when it changes: a worker's connections run one transaction after
# another with it, sending nothing). Behind a transaction-pooling PgBouncer (statements not
# prepared), the next transaction may run on another session: there it is set for each
# transaction alone.
_GENERIC_PLANS = "SELECT set_config('plan_cache_mode', 'force_generic_plan', {local}), set_config('enable_bitmapscan', 'off', {local})"
GENERIC_SESSION = (_GENERIC_PLANS.format(local="false"),)
GENERIC_TRANSACTION = _GENERIC_PLANS.format(local="true")
#: Back to the server's settings (those a session starts with). Two statements: reading
#: them from ``pg_settings`` instead would cost the server 0.35 ms (it lists every setting).
SERVER_SESSION = ("RESET plan_cache_mode", "RESET enable_bitmapscan")

# The random_page_cost perdure's sessions plan with, at most (the server's, if lower).
RANDOM_PAGE_COST = 1.1


def plan_for_a_hot_working_set(conn: psycopg.Connection[Any]) -> None:
    """Plan this session's statements for data in memory: ``random_page_cost`` at most
    :data:`RANDOM_PAGE_COST` (PostgreSQL's default, 4, prices a disk seek). perdure's
    statements look a few keys up in tables that its workers keep in memory (queues,
    leases, the instances in flight); at the default the planner would rather read a table
    of a few thousand rows whole, at every round, and the prepared statements keep that
    plan."""
    conn.execute(
        "SELECT set_config('random_page_cost', LEAST(current_setting('random_page_cost')::float8, %s)::text, false)",
        (RANDOM_PAGE_COST,),
    )


def probe_connection(conninfo: str, display: str, timeout: float) -> None:
    """Connect once before the pool opens, so a connection that cannot work fails at once
    with the server's reason in one line (:class:`StoreUnavailableError`), and one that may
    work soon (server down or starting) is tried again for up to ``timeout`` seconds
    instead of filling the log with the pool's retries."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        remaining = deadline - time.monotonic()
        try:
            psycopg.connect(conninfo, connect_timeout=max(1, round(remaining))).close()
            return
        except psycopg.Error as exc:
            reason = " ".join(str(exc).removeprefix("connection failed: ").split())
            if not any(text in reason.lower() for text in _TRANSIENT_CONNECT):
                raise StoreUnavailableError(f"cannot connect to PostgreSQL at {display}: {reason}") from exc
            if time.monotonic() + _PROBE_INTERVAL >= deadline:
                raise StoreUnavailableError(
                    f"cannot connect to PostgreSQL at {display} within {timeout:g} s: {reason}"
                ) from exc
            if not told:
                log.info("PostgreSQL at %s is not reachable yet (%s); trying for up to %g s", display, reason, timeout)
                told = True
            time.sleep(_PROBE_INTERVAL)


def text_array(values: Iterable[str] | None) -> str | None:
    """A ``text[]`` literal of ``values`` (None stays None), for a parameter the statement
    casts (``%(ids)s::text[]``): psycopg adapts a str at once, and a list only after looking
    at its items, which costs more than the statement's work on the hot path."""
    if values is None:
        return None
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def bigint_array(values: Iterable[int] | None) -> str | None:
    """A ``bigint[]`` literal of ``values`` (None stays None); see :func:`text_array`."""
    if values is None:
        return None
    return "{" + ",".join([str(int(v)) for v in values]) + "}"


@dataclass(slots=True)
class Tx:
    """One write transaction: its connection's pipeline (:class:`~.wire.Pipeline`), its
    single reading of the clock (every timestamp written by the transaction uses it), the
    store's options, and the notifier topics to signal once it has committed.

    A round trip to the server costs as much as a small statement's work, so statements
    whose result is not needed at once are only sent (:meth:`run`, :meth:`read_later`): the
    server runs them in order, and the next statement whose result is read (:meth:`one`,
    :meth:`all`, :meth:`count`) waits for them too. An error of a sent statement surfaces
    at that next read, or at the COMMIT; either way the whole transaction is rolled back."""

    pipeline: Pipeline
    now: float
    options: StoreOptions = field(default_factory=StoreOptions)
    topics: set[str] = field(default_factory=set)
    #: The NOTIFY payload of the store's own transactions (its listener skips them); None
    #: when the store sends no NOTIFY.
    sender: str | None = None
    #: Topics whose NOTIFY the transaction has sent itself (a round's, only if its queue
    #: holds work due now): not sent again before the COMMIT.
    notified: set[str] = field(default_factory=set)
    #: Counts the times the transaction changed the orchestration queues after the round
    #: sent its reading of the due times (which is then read again).
    queues_changed: int = 0
    #: Commit turns without reading their checks first: the statement that writes them
    #: checks them, and fails the transaction with :class:`ChecksRefused` if one fails.
    optimistic: bool = False
    #: The tasks the transaction's turns schedule that it writes locked for its worker
    #: (a round's :attr:`~perdure.store.base.RoundRequest.take_scheduled`), or None.
    scheduled: ScheduledTake | None = None
    #: The instances its turns end (:meth:`instance_ended`).
    ended: list[str] = field(default_factory=list)
    #: ``INSTANCES`` is signalled to every process that follows it (a purge, a reopen: not
    #: only ends, which only the processes that watch the instance hear of).
    instances_for_all: bool = False
    _later: list[tuple[Answer, Callable[[Answer], None]]] = field(default_factory=list)
    _after: list[tuple[Answer, Callable[[Answer], None]]] = field(default_factory=list)

    def notify(self, *topics: str) -> None:
        """Signal ``topics`` on commit (never before: a woken waiter must see the rows)."""
        self.topics.update(topics)
        if INSTANCES in topics:
            self.instances_for_all = True

    def instance_ended(self, instance_id: str) -> None:
        """A turn of this transaction ends ``instance_id``: signal ``INSTANCES`` on commit,
        and let the store hand its row to a waiter (:class:`~perdure.store.notify.EndedRows`)."""
        self.ended.append(instance_id)
        self.topics.add(INSTANCES)

    def one(self, query: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The first row of ``query``, or None."""
        return self.pipeline.execute(query, params).fetchone()

    def all(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of ``query``."""
        return self.pipeline.execute(query, params).fetchall()

    def run(self, query: str, params: dict[str, Any] | None = None) -> Answer:
        """Send ``query`` without waiting for its result; read it from the answer later."""
        return self.pipeline.execute(query, params)

    def count(self, query: str, params: dict[str, Any] | None = None) -> int:
        """Execute ``query``; return the number of rows it changed."""
        return self.pipeline.execute(query, params).rowcount

    def read_later(self, query: str, params: dict[str, Any] | None, use: Callable[[Answer], None]) -> None:
        """Send ``query`` now and hand its answer to ``use`` at :meth:`settle`: a read whose
        answer is needed only before the commit costs no round trip of its own."""
        self._later.append((self.pipeline.execute(query, params), use))

    def read_after_commit(self, query: str, params: dict[str, Any] | None, use: Callable[[Answer], None]) -> None:
        """Send ``query`` now and hand its answer to ``use`` once the transaction has
        committed (:meth:`committed`): a read that decides only what to signal in this
        process keeps the COMMIT from waiting for it."""
        self._after.append((self.pipeline.execute(query, params), use))

    def committed(self) -> None:
        """Hand the reads sent with :meth:`read_after_commit` to their users (after the
        COMMIT's answer was read)."""
        for answer, use in self._after:
            use(answer)
        self._after.clear()

    def settle(self) -> None:
        """Hand the reads sent with :meth:`read_later` to their users (who may send more)."""
        while self._later:
            answer, use = self._later.pop(0)
            use(answer)

    def flush(self) -> None:
        """Wait for every statement sent so far, raising the first error among them."""
        self.pipeline.sync()

    def send_ahead(self) -> None:
        """Have the server start on the statements queued so far while this process builds
        the rest of the transaction (:meth:`Pipeline.send_ahead`)."""
        self.pipeline.send_ahead()


def _end_transaction(conn: psycopg.Connection[Any]) -> None:
    """Roll back what a failed write left open (a transaction that failed before its COMMIT,
    or whose statement failed); a broken connection is left to the pool, which drops it."""
    if conn.closed or conn.pgconn.transaction_status in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN):
        return
    try:
        simple(conn, b"ROLLBACK")
    except psycopg.Error:  # the pool checks the connection when it comes back
        log.debug("rollback failed", exc_info=True)


@frozen_record
class RetryPolicy:
    """How transient faults are retried: ``attempts`` tries in all, sleeping ``backoff``
    seconds after the first failure, doubling up to ``backoff_cap``."""

    attempts: int = 6
    backoff: float = 0.05
    backoff_cap: float = 2.0

    def delays(self) -> Iterable[float]:
        """The sleeps between tries."""
        delay = self.backoff
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(self.backoff_cap, delay * 2)


class Database:
    """The connection pool of one PostgreSQL database, with retrying transactions."""

    def __init__(
        self,
        conninfo: str,
        *,
        display: str,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        prepare_threshold: int | None = 0,
        application_name: str = "perdure",
    ) -> None:
        self.display = display
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        #: Whether statements are prepared on the server (not behind a transaction-pooling
        #: PgBouncer: ``prepare_threshold=None``).
        self.prepare = prepare_threshold is not None
        self._closed = False
        self._close_lock = threading.Lock()
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": prepare_threshold,
            "application_name": application_name,
        }
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            # Behind a transaction-pooling PgBouncer a session setting would reach whichever
            # session runs the next transaction; there statements are planned at every call,
            # for their actual parameters.
            configure=plan_for_a_hot_working_set if self.prepare else None,
            timeout=timeout,
            open=False,
            name="perdure",
        )
        try:
            probe_connection(conninfo, display, timeout)
            self.pool.open(wait=True, timeout=timeout)
        except PoolTimeout as exc:
            self.pool.close(timeout=0)
            raise StoreUnavailableError(f"cannot connect to PostgreSQL at {display} within {timeout:g} s") from exc
        except BaseException:
            self.pool.close(timeout=0)
            raise

    def check_open(self) -> None:
        """Raise :class:`StoreUnavailableError` once closed."""
        if self._closed:
            raise StoreUnavailableError(f"the store on {self.display} is closed")

    def write(
        self,
        method: str,
        body: Callable[[Tx], T],
        *,
        clock: Callable[[], float],
        before_commit: Callable[[Tx], None],
        options: StoreOptions | None = None,
        durable: bool = True,
        generic_plans: bool = False,
        sender: str | None = None,
    ) -> tuple[T, set[str]]:
        """Run ``body`` in one transaction and commit it; return its result and the topics to
        signal. ``before_commit`` runs last inside the transaction (notifications, the fault
        hook). Transient faults before COMMIT are retried (the whole body runs again).
        ``sender``: the NOTIFY payload of the store (:attr:`Tx.sender`). A body may return
        :class:`AfterCommit`.
        ``durable=False`` commits without waiting for the WAL to reach the disk
        (``synchronous_commit = off`` for this transaction: it stays atomic and ordered, and
        any later durable commit makes it durable too).
        ``generic_plans``: the transaction's prepared statements run with their generic plans
        (``plan_cache_mode``), never with plans made for their parameters at each call (else
        with the server's settings): see :data:`GENERIC_SESSION`."""

        def attempt() -> tuple[T, set[str]]:
            committing = False
            with self._pipeline() as pipeline:
                try:
                    # BEGIN and COMMIT are pipelined like the body's statements: the only
                    # Sync is the one after the COMMIT.
                    tx = Tx(pipeline, clock(), options or StoreOptions(), sender=sender)
                    tx.run("BEGIN")
                    self._plan(pipeline, generic=generic_plans)
                    if not durable:
                        tx.run("SET LOCAL synchronous_commit TO OFF")
                    result = body(tx)
                    tx.settle()
                    before_commit(tx)
                    committing = True  # statements still unread go with the COMMIT
                    tx.run("COMMIT")
                    tx.flush()
                    if isinstance(result, AfterCommit):
                        # The Sync after the COMMIT read every answer: the answers hold them.
                        result = result.read()
                    tx.committed()
                    return result, tx.topics
                except psycopg.DataError as exc:
                    if _refused(exc):
                        raise ChecksRefused(f"{method}: a turn committed optimistically failed its checks") from exc
                    raise
                except psycopg.errors.UniqueViolation as exc:
                    if tx.optimistic:  # a row it did not look for first: a fresh id's
                        raise ChecksRefused(f"{method}: a row written optimistically was taken: {exc}") from exc
                    raise
                except psycopg.OperationalError as exc:
                    if committing and outcome_unknown(exc):
                        raise StoreUnavailableError(
                            f"{method}: the connection to {self.display} failed during COMMIT, so the "
                            f"outcome is unknown: {exc}"
                        ) from exc
                    raise

        return self._retrying(method, attempt)

    def read(self, method: str, body: Callable[[Pipeline], T]) -> T:
        """Run the read-only ``body`` on a pooled connection's pipeline, retrying transient
        faults. Each answer read waits for the statements sent before it (one round trip
        for all of them); with no BEGIN, each such batch runs as one implicit transaction."""

        def attempt() -> T:
            with self._pipeline() as pipeline:
                self._plan(pipeline, generic=False)
                return body(pipeline)

        return self._retrying(method, attempt)

    def _plan(self, pipeline: Pipeline, *, generic: bool) -> None:
        """Have the statements sent next on ``pipeline`` run with their generic plans, or
        with the server's settings (see :data:`GENERIC_SESSION`)."""
        if not self.prepare:
            if generic:
                pipeline.execute(GENERIC_TRANSACTION)
        else:
            pipeline.set_session(
                "generic plans", generic, GENERIC_SESSION if generic else SERVER_SESSION, initial=False
            )

    @contextmanager
    def _pipeline(self) -> Iterator[Pipeline]:
        """A pooled connection's pipeline; on exit, pipeline mode is left and a transaction
        a failure left open is rolled back, before the connection goes back to the pool."""
        with self.pool.connection() as conn:
            pipeline = Pipeline(conn, prepare=self.prepare)
            try:
                yield pipeline
            finally:
                pipeline.close()
                _end_transaction(conn)

    def session(self, method: str, body: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """Run ``body`` on a pooled psycopg connection (schema checks and migrations),
        retrying transient faults."""

        def attempt() -> T:
            with self.pool.connection() as conn:
                return body(conn)

        return self._retrying(method, attempt)

    def _retrying(self, method: str, attempt: Callable[[], T]) -> T:
        delays = iter(self.retry.delays())
        while True:
            self.check_open()
            try:
                return attempt()
            except StoreError:
                raise
            except PoolClosed as exc:
                raise StoreUnavailableError(f"the store on {self.display} is closed") from exc
            except (psycopg.Error, PoolTimeout) as exc:
                if not is_transient(exc):
                    raise StoreError(f"{method} failed: {exc}") from exc
                delay = next(delays, None)
                if delay is None or self._closed:
                    raise StoreUnavailableError(
                        f"{method}: PostgreSQL at {self.display} is unavailable: {exc}"
                    ) from exc
                log.warning("%s: transient PostgreSQL fault, retrying in %.2f s: %s", method, delay, exc)
                if isinstance(exc, psycopg.OperationalError) and exc.sqlstate not in ("40001", "40P01"):
                    self._drop_stale_connections()
                time.sleep(delay)

    def _drop_stale_connections(self) -> None:
        """After a lost connection the idle ones are probably dead too (server restart):
        check them now rather than failing on each in turn."""
        try:
            self.pool.check()
        except Exception:  # the pool reports; the retry itself will tell
            log.debug("pool check failed", exc_info=True)

    def close(self) -> None:
        """Close every connection. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.pool.close(timeout=5.0)
