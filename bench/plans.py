"""The query plans of the statements a W1 run sends, and which of them read a whole table.

Used by ``python -m bench.scale --plans FILE``. The statements are captured from the store's
own connections while a small W1 runs in this process: on SQLite by a trace callback (the
statement with its parameters filled in), then each distinct statement is planned with
``EXPLAIN QUERY PLAN``; on PostgreSQL by the server's ``auto_explain`` module, whose plans of
the statements as they ran come back as notices. PostgreSQL rightly reads a small queue table
whole rather than through its index, so there the plans are made with ``enable_seqscan=off``:
a whole-table read left in such a plan is one that no index can serve.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.workloads import w1

TABLES = (
    "instances",
    "history",
    "orchestration_messages",
    "orchestration_leases",
    "activity_tasks",
    "dead_letters",
    "discarded_messages",
    "workers",
    "client_requests",
)
# SQLite names a table by its alias in a plan ("SCAN i"): any plain SCAN of a table (not of
# json_each, the schema, a constant row or a subquery) without an index is a whole-table read.
_SQLITE_SCAN = re.compile(r"\bSCAN (?!json_each\b|sqlite_master\b|CONSTANT ROW|\()(\w+)(?! USING)")
_POSTGRES_SCAN = re.compile(rf"Seq Scan on ({'|'.join(TABLES)})\b")
_LITERALS = re.compile(r"'(?:[^']|'')*'|-?\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)


def shape(sql: str) -> str:
    """A statement with its literal values replaced by ``?``: one entry per statement shape."""
    return " ".join(_LITERALS.sub("?", sql).split())


@contextmanager
def patched(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """Replace ``owner.name`` by ``wrap(original)`` for the duration of the block."""
    original = getattr(owner, name)
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def sqlite_plans(url: str) -> dict[str, str]:
    """Statement shape -> its plan, for the statements of a small W1 on the SQLite store at ``url``."""
    statements: dict[str, str] = {}

    def traced(connect: Callable[..., sqlite3.Connection]) -> Callable[..., sqlite3.Connection]:
        def connect_traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(lambda sql: statements.setdefault(shape(sql), sql))
            return conn

        return connect_traced

    with patched(sqlite3, "connect", traced):
        w1(url, orchestrations=40, steps=3)
        w1(url, orchestrations=40, steps=3, batch_start=True)
    plans: dict[str, str] = {}
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        for key, sql in sorted(statements.items()):
            if not re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", sql, re.IGNORECASE):
                continue
            try:
                rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            except sqlite3.Error as exc:  # e.g. a statement on a temporary table of its transaction
                plans[key] = f"(not planned: {exc})"
                continue
            plans[key] = "\n".join(row[-1] for row in rows)
    return plans


def explain_every_statement(url: str, settings: dict[str, str]) -> None:
    """Have every new session of the PostgreSQL database at ``url`` report the plan of each
    statement it runs, as a JSON notice (the server's ``auto_explain``), with ``settings``
    besides."""
    import psycopg

    explain = {
        "session_preload_libraries": "auto_explain",
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_level": "notice",
        "auto_explain.log_format": "json",
    }
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        for setting, value in {**explain, **settings}.items():
            conn.execute(f"ALTER DATABASE \"{database}\" SET {setting} = '{value}'")


def postgres_plans(url: str) -> dict[str, str]:
    """Statement shape -> its plan as it ran, for a small W1 on the PostgreSQL store at ``url``."""
    import psycopg

    # A Seq Scan left in a plan means no index can serve it.
    explain_every_statement(url, {"enable_seqscan": "off"})
    notices: list[str] = []

    def listened(connect: Callable[..., Any]) -> Callable[..., Any]:
        def connect_listened(*args: Any, **kwargs: Any) -> Any:
            conn = connect(*args, **kwargs)
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            return conn

        return classmethod(lambda cls, *a, **k: connect_listened(*a, **k))

    with patched(psycopg.Connection, "connect", lambda original: listened(original)):
        w1(url, orchestrations=40, steps=3)
        w1(url, orchestrations=40, steps=3, batch_start=True)
    plans: dict[str, str] = {}
    for notice in notices:
        if "plan:" not in notice:
            continue
        explained = json.loads(notice.split("plan:", 1)[1])
        plans.setdefault(shape(explained["Query Text"]), "\n".join(_plan_lines(explained["Plan"])))
    return plans


def _plan_lines(node: dict[str, Any], depth: int = 0) -> Iterator[str]:
    """A JSON plan as indented lines: node type, relation and index."""
    line = node["Node Type"]
    if "Relation Name" in node:
        line += f" on {node['Relation Name']}"
    if "Index Name" in node:
        line += f" using {node['Index Name']}"
    yield "  " * depth + line
    for child in node.get("Plans", ()):
        yield from _plan_lines(child, depth + 1)


def write_plans(kind: str, url: str, path: Path) -> list[str]:
    """Write every captured statement and its plan to ``path``; return the statements whose
    plan reads a whole table of perdure's."""
    plans = sqlite_plans(url) if kind == "sqlite" else postgres_plans(url)
    scan = _SQLITE_SCAN if kind == "sqlite" else _POSTGRES_SCAN
    full = [sql for sql, plan in plans.items() if scan.search(plan)]
    lines = [f"# {len(plans)} statement shapes of W1 on {kind}; {len(full)} read a whole table of perdure's", ""]
    for sql, plan in plans.items():
        lines += [f"-- {'WHOLE TABLE' if sql in full else 'indexed'}", sql, plan, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return full
