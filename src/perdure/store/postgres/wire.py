"""Pipelined statements over libpq: how the store's transactions and reads talk to the server.

psycopg's ``Connection.execute`` in pipeline mode costs 20–30 µs of CPU per statement (a
cursor, the query's prepared-statement bookkeeping, psycopg's pipeline queue), more than
the server's own work for most of the store's statements, and 80–100 µs per transaction
(``python -m bench.driver_cost``).
A :class:`Pipeline` sends through the connection's libpq handle (``psycopg.pq``) instead:

- each query is converted once to PostgreSQL's ``$n`` form (:class:`Statement`) and prepared
  once per connection, with the server inferring its parameter types;
- parameters are dumped in text format and rows loaded by psycopg's own Transformer (its C
  implementation), so values adapt exactly as through psycopg;
- answers are read in order when first needed (:class:`Answer`); an error is raised as
  the psycopg exception of its SQLSTATE, like ``Connection.execute`` raises it.

Socket waits happen in ``select``/``poll`` with the GIL released, never inside a libpq
call that would block holding it.
"""

from __future__ import annotations

import re
import select
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.errors import error_from_result

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
#: Statuses of an answer that is not an error (an aborted statement's answer is not the
#: error itself: that is the answer of the statement that failed first).
_NOT_ERROR = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.PIPELINE_ABORTED)
#: SQLSTATE of "prepared statement ... does not exist": someone deallocated them.
STATEMENT_MISSING = "26000"


class Statement:
    """A query in PostgreSQL's form: ``%(name)s`` placeholders numbered ``$1``, ``$2`` …
    (one number per name), and the name it is prepared under on every connection (None
    past :attr:`LIMIT` distinct queries: such a query is parsed at every call, so that
    queries built with literals in them cannot fill the server's memory)."""

    __slots__ = ("name", "names", "sql")

    #: How many distinct queries are prepared; the store's own are a few dozen.
    LIMIT = 500
    _compiled: dict[str, Statement] = {}
    _lock = threading.Lock()

    def __init__(self, query: str, number: int | None) -> None:
        numbers: dict[str, int] = {}

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

        self.sql = _PLACEHOLDER.sub(replace, query).encode()
        self.names = tuple(numbers)
        self.name = None if number is None else f"perdure_{number}".encode()

    @classmethod
    def of(cls, query: str) -> Statement:
        """The statement of ``query`` (converted on its first use, then cached)."""
        statement = cls._compiled.get(query)
        if statement is None:
            with cls._lock:
                statement = cls._compiled.get(query)
                if statement is None:
                    if len(cls._compiled) >= cls.LIMIT:
                        return cls(query, None)
                    statement = cls._compiled[query] = cls(query, len(cls._compiled) + 1)
        return statement


# The statements prepared on each connection (a connection's prepared statements live as
# long as its session; a new connection starts with none).
_prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = weakref.WeakKeyDictionary()
# The session settings each connection holds, by key, as far as committed (see
# Pipeline.set_session).
_sessions: weakref.WeakKeyDictionary[psycopg.Connection[Any], dict[str, object]] = weakref.WeakKeyDictionary()


class Answer:
    """The answer to one sent statement, as much of a cursor as the store reads:
    :meth:`fetchone`, :meth:`fetchall`, :attr:`rowcount`. Reading it before the server
    has answered waits for every statement sent so far (one round trip)."""

    __slots__ = ("_pipeline", "_result", "_rows")

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._result: pq.abc.PGresult | None = None
        self._rows: list[dict[str, Any]] | None = None

    def _received(self) -> pq.abc.PGresult:
        if self._result is None:
            self._pipeline.sync()
            assert self._result is not None, "a statement's answer is missing after a sync"
        return self._result

    def fetchall(self) -> list[dict[str, Any]]:
        """Every row (as dicts by column name)."""
        if self._rows is None:
            self._rows = self._pipeline.load_rows(self._received())
        return self._rows

    def fetchone(self) -> dict[str, Any] | None:
        """The first row, or None."""
        rows = self.fetchall()
        return rows[0] if rows else None

    @property
    def rowcount(self) -> int:
        """The number of rows the statement returned or changed."""
        count = self._received().command_tuples
        return -1 if count is None else count


class _Prepared:
    """The answer to a statement's preparation: the name counts as prepared on the
    connection only once the server has said so (a Parse skipped after an error in the
    pipeline, or rolled back with its connection, prepares nothing)."""

    __slots__ = ("_name", "_names")

    def __init__(self, name: bytes, names: set[bytes]) -> None:
        self._name = name
        self._names = names

    def receive(self, result: pq.abc.PGresult) -> None:
        if result.status == pq.ExecStatus.COMMAND_OK:
            self._names.add(self._name)


class Pipeline:
    """One connection in libpq's pipeline mode, for the span of a transaction.

    :meth:`execute` queues a statement and returns its :class:`Answer`; :meth:`sync` sends a
    Sync and reads every answer up to it, raising the first error among them (the server
    skips the rest, and the transaction is then aborted). :meth:`close` leaves pipeline
    mode, reading whatever is still unread. ``prepare=False`` prepares nothing (each
    statement is parsed at every call): behind a transaction-pooling PgBouncer, the next
    transaction may run on another server session."""

    def __init__(self, conn: psycopg.Connection[Any], *, prepare: bool = True) -> None:
        self._conn = conn
        self._prepare = prepare
        self._pgconn = conn.pgconn
        self._transformer = Transformer(conn)
        self._prepared = _prepared.setdefault(conn, set())
        self._session = _sessions.setdefault(conn, {})
        self._setting: dict[str, object] = {}
        self._preparing: set[bytes] = set()
        self._waiting: deque[Answer | _Prepared] = deque()
        self._poll = select.poll()
        self._poll.register(self._pgconn.socket, select.POLLIN)
        self._pgconn.enter_pipeline_mode()
        self._open = True

    def execute(self, query: str, params: Mapping[str, Any] | None = None) -> Answer:
        """Queue ``query`` with ``params`` (by the names of its ``%(name)s`` placeholders)."""
        statement = Statement.of(query)
        pgconn = self._pgconn
        name = statement.name
        values: list[Any] | None = None
        if statement.names:
            assert params is not None, f"no parameters for a query that takes {statement.names}"
            values = self._transformer.dump_sequence(
                [params[n] for n in statement.names], [PyFormat.TEXT] * len(statement.names)
            )
        if name is None or not self._prepare:
            pgconn.send_query_params(statement.sql, values)
        else:
            if name not in self._prepared and name not in self._preparing:
                pgconn.send_prepare(name, statement.sql)
                self._waiting.append(_Prepared(name, self._prepared))
                self._preparing.add(name)
            pgconn.send_query_prepared(name, values)
        answer = Answer(self)
        self._waiting.append(answer)
        return answer

    def set_session(self, key: str, value: object, queries: tuple[str, ...], *, initial: object = None) -> None:
        """Queue ``queries``, which set the session to ``value`` for ``key`` (session-level
        settings: they outlast the transaction), unless the session holds that value
        already (a new session holds ``initial``). The value counts as held once the
        statement's transaction has committed: a setting rolled back with its transaction
        (as PostgreSQL rolls back a ``SET``) is sent again next time."""
        if self._setting.get(key, self._session.get(key, initial)) != value:  # as sent so far
            for query in queries:
                self.execute(query)
            self._setting[key] = value

    def send_ahead(self) -> None:
        """Send every statement queued so far without a Sync and without waiting: the server
        runs them while the caller queues the rest (their answers are read at the next
        :meth:`sync`)."""
        _flush(self._pgconn)

    def sync(self) -> None:
        """Send a Sync and read every answer sent before it; raise the first error."""
        pgconn = self._pgconn
        pgconn.pipeline_sync()
        _flush(pgconn)
        error: psycopg.Error | None = None
        while True:
            result = _next_result(pgconn, self._poll)
            if result is None:
                continue  # the end of one statement's answer
            status = result.status
            if status == pq.ExecStatus.PIPELINE_SYNC:
                break
            item = self._waiting.popleft()
            if isinstance(item, _Prepared):
                item.receive(result)
            else:
                item._result = result
            if error is None and status not in _NOT_ERROR:
                error = self._error(result)
        self._preparing.clear()
        if error is not None:
            self._setting.clear()  # rolled back with the transaction
            raise error
        if self._setting and pgconn.transaction_status == pq.TransactionStatus.IDLE:
            self._session.update(self._setting)  # committed
            self._setting.clear()

    def close(self) -> None:
        """Leave pipeline mode (reading every answer still unread). Idempotent; leaves a
        broken connection as it is, for the pool to drop."""
        if not self._open:
            return
        self._open = False
        if self._pgconn.status != pq.ConnStatus.OK:
            return
        try:
            if self._waiting:
                self.sync()
        except psycopg.Error:
            pass  # the body's own error was raised already, or the transaction rolls back
        finally:
            if self._pgconn.status == pq.ConnStatus.OK:
                self._pgconn.exit_pipeline_mode()

    def load_rows(self, result: pq.abc.PGresult) -> list[dict[str, Any]]:
        """The rows of a received ``result`` as dicts by column name."""
        if result.status != pq.ExecStatus.TUPLES_OK or not result.ntuples:
            return []
        names = [result.fname(i).decode() for i in range(result.nfields)]  # type: ignore[union-attr]
        transformer = self._transformer
        transformer.set_pgresult(result)
        return transformer.load_rows(0, result.ntuples, lambda values: dict(zip(names, values, strict=True)))

    def _error(self, result: pq.abc.PGresult) -> psycopg.Error:
        if self._pgconn.status != pq.ConnStatus.OK:
            message = result.error_message.decode(errors="replace").strip()
            return psycopg.OperationalError(f"the connection to the server was lost: {message}")
        error = error_from_result(result, encoding=self._conn.info.encoding)
        if error.sqlstate == STATEMENT_MISSING:
            # Deallocated behind our back (DISCARD ALL also resets the session's settings):
            # prepare them again, and set the settings again.
            self._prepared.clear()
            self._session.clear()
        return error


def _flush(pgconn: pq.abc.PGconn) -> None:
    """Send everything libpq holds for the server (the connection is non-blocking)."""
    while pgconn.flush():  # 1: part of the output is still unsent
        # Read while waiting to write: the server may be blocked sending us answers.
        writing = select.poll()
        writing.register(pgconn.socket, select.POLLIN | select.POLLOUT)
        if any(event & select.POLLIN for _, event in writing.poll()):
            pgconn.consume_input()


def _next_result(pgconn: pq.abc.PGconn, readable: select.poll) -> pq.abc.PGresult | None:
    """The next result, waiting for it in ``poll`` (GIL released), not inside libpq."""
    while pgconn.is_busy():
        readable.poll()
        pgconn.consume_input()
    return pgconn.get_result()


def simple(conn: psycopg.Connection[Any], sql: bytes) -> None:
    """Run a statement without parameters or rows (``ROLLBACK``) outside psycopg, whose
    own ``execute("ROLLBACK")`` would deallocate every prepared statement of the session."""
    pgconn = conn.pgconn
    pgconn.send_query(sql)
    _flush(pgconn)
    readable = select.poll()
    readable.register(pgconn.socket, select.POLLIN)
    error: pq.abc.PGresult | None = None
    while (result := _next_result(pgconn, readable)) is not None:
        if result.status not in _NOT_ERROR:
            error = result
    if error is not None:
        raise error_from_result(error, encoding=conn.info.encoding)
