"""Named SQL queries, loaded from a backend's ``queries.sql``.

Each query in the file starts with a ``-- name: <identifier>`` line; the comment lines that
follow describe it. Every query is a single statement, prepared once whatever the length of
its list parameters (SQLite expands a JSON array with ``json_each``, PostgreSQL takes an
array). A query is kept without its comment lines and each line's indentation: the
statement alone is what the server parses and what its log shows.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from typing import Any

from perdure.errors import InvalidInputError

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries:
    """The queries of one SQL file, as attributes (``Q.get_instance``)."""

    def __init__(self, text: str) -> None:
        parts = _HEADER.split(text)
        self._sql: dict[str, str] = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            lines = [ln.strip() for ln in body.strip().splitlines()]
            sql = "\n".join([ln for ln in lines if ln and not ln.startswith("--")]).rstrip(";").strip()
            if name in self._sql:
                raise ValueError(f"query {name!r} is defined twice")
            self._sql[name] = sql
        # Plain attributes: the hot path reads them thousands of times a second.
        self.__dict__.update(self._sql)

    def __getattr__(self, name: str) -> str:
        raise AttributeError(f"no query named {name!r} in queries.sql")

    def names(self) -> list[str]:
        """Every query name."""
        return list(self._sql)


def load_queries(package: str) -> Queries:
    """The queries of ``package``'s ``queries.sql``."""
    return Queries(resources.files(package).joinpath("queries.sql").read_text(encoding="utf-8"))


def edited(sql: str, old: str, new: str) -> str:
    """``sql`` with the one occurrence of ``old`` replaced by ``new`` (a statement derived
    from another); raises ValueError unless ``old`` occurs exactly once."""
    if sql.count(old) != 1:
        raise ValueError(f"{old!r} occurs {sql.count(old)} times in the query, not once")
    return sql.replace(old, new)


def next_due_queries(queries: Queries, queue: str | None) -> list[str]:
    """The queries behind ``Store.next_visible_at(queue=...)``: the next due message
    (``next_message_at``), the next due task (``next_task_at``), or both for ``None``."""
    if queue not in (None, "orchestrations", "activities"):
        raise InvalidInputError(f"queue must be 'orchestrations', 'activities' or None, got {queue!r}")
    parts = (("orchestrations", queries.next_message_at), ("activities", queries.next_task_at))
    return [sql for kind, sql in parts if queue in (None, kind)]


def due_times(conn: Any, queries: Queries, queue: str | None = None, horizon: float = math.inf) -> list[float | None]:
    """The readings behind ``Store.next_visible_at`` on ``conn`` (a connection of either
    backend, in or out of a transaction): the next due message and/or task, in that order.
    A message held back by a lease that expires after ``horizon`` may be left out (see
    :attr:`perdure.store.base.RoundRequest.due_within`)."""
    # Both sent before either is read: one round trip in a PostgreSQL pipeline.
    cursors = [conn.execute(sql, {"horizon": horizon}) for sql in next_due_queries(queries, queue)]
    return [cursor.fetchone()["t"] for cursor in cursors]
