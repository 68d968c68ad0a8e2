"""PostgreSQL: the store's statements as the driver sees them."""

from __future__ import annotations

import re

import pytest
from psycopg import _queries as psycopg_queries

from perdure.store.postgres.orchestrations import WRITE_CHECKED_TURNS, WRITE_PLAIN_TURNS
from perdure.store.postgres.queries import Q

STATEMENTS = {name: getattr(Q, name) for name in Q.names()} | {
    "WRITE_PLAIN_TURNS": WRITE_PLAIN_TURNS,
    "WRITE_CHECKED_TURNS": WRITE_CHECKED_TURNS,
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_psycopg_converts_each_statement_once(name: str) -> None:
    """psycopg parses a statement's placeholders once and caches the result only for a
    statement of at most ``MAX_CACHED_STATEMENT_LENGTH`` characters and
    ``MAX_CACHED_STATEMENT_PARAMS`` parameters; a longer one is parsed at every call (a
    regular expression over its whole text), which cost the round writing W4's turns a
    tenth of its CPU."""
    sql = STATEMENTS[name]
    assert len(sql) <= psycopg_queries.MAX_CACHED_STATEMENT_LENGTH, f"{name} is {len(sql)} characters"
    params = set(re.findall(r"%\((\w+)\)s", sql))
    assert len(params) <= psycopg_queries.MAX_CACHED_STATEMENT_PARAMS


def test_queries_keep_no_indentation_or_comments() -> None:
    """The loader drops what the server does not need (the limit above counts it)."""
    for name, sql in STATEMENTS.items():
        for line in sql.splitlines():
            assert line == line.strip() and line, f"{name}: {line!r}"
            assert not line.startswith("--"), f"{name}: {line!r}"
