"""PostgreSQL: the store's statements as the server receives them."""

from __future__ import annotations

import itertools
import re

import psycopg
import pytest

from perdure.store.postgres.activities import LOCK_ACTIVITIES_AND_DUE_TIMES
from perdure.store.postgres.orchestrations import DUE_TIMES, GROUP_WRITES, OPTIONAL_WRITES, group_write
from perdure.store.postgres.queries import Q
from perdure.store.postgres.wire import Statement

STATEMENTS = {name: getattr(Q, name) for name in Q.names()} | {
    **{f"GROUP_WRITES[checked={c}, one_turn={o}]": sql for (c, o), sql in GROUP_WRITES.items()},
    "LOCK_ACTIVITIES_AND_DUE_TIMES": LOCK_ACTIVITIES_AND_DUE_TIMES,
    "DUE_TIMES": DUE_TIMES,
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_each_statement_converts_to_numbered_parameters(name: str) -> None:
    """Every ``%(name)s`` becomes ``$n`` (one number per name, 1 to n) and no other ``%``
    form is left: a typo such as ``%(name)`` or ``%s`` would otherwise reach the server
    as text and fail only when the statement first runs."""
    statement = Statement(STATEMENTS[name], None)
    sql = statement.sql.decode()
    assert "%(" not in sql and not re.search(r"%[sb]\b", sql), name
    numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert numbers == set(range(1, len(statement.names) + 1)), name


def test_queries_keep_no_indentation_or_comments() -> None:
    """The loader drops what the server does not need to parse or to log."""
    for name, sql in STATEMENTS.items():
        for line in sql.splitlines():
            assert line == line.strip() and line, f"{name}: {line!r}"
            assert not line.startswith("--"), f"{name}: {line!r}"


def test_a_group_of_one_turn_is_written_as_any_group_but_for_the_turns_own_parts() -> None:
    """``write_one_turn`` has the parts of ``write_plain_turns``; those that write no turn's
    own rows (the tasks, the messages, the handed-over tasks' deletion, the answer) are the
    same text."""

    def parts(sql: str) -> dict[str, str]:
        ctes = re.split(r"(?m)^(?=\), \w+ AS )", sql)
        return {cte.split(maxsplit=2)[1]: cte for cte in ctes}

    one, any_number = parts(Q.write_one_turn), parts(Q.write_plain_turns)
    assert list(one) == [name for name in any_number if name != "turn"]
    for name in ("tasks", "messages", "handed"):
        assert one[name] == any_number[name], name


def test_a_group_write_leaves_out_the_parts_it_has_nothing_for_and_the_server_takes_every_variant() -> None:
    """Each variant of the group write (checked or not, of one turn or any number, with any
    of the optional parts) is a statement the server parses, holding exactly the parts it
    was given; without ``tasks`` it answers the one row of NULLs a write whose tasks are
    none taken answers, the checks read with it."""
    from tests import pgserver

    variants = {
        (check, one_turn, parts, False): group_write(check, frozenset(parts), one_turn=one_turn)
        for check in (False, True)
        for one_turn in (False, True)
        for n in range(len(OPTIONAL_WRITES) + 1)
        for parts in itertools.combinations(OPTIONAL_WRITES, n)
    }
    # The first turn of a run inserted as it leaves it: neither checked nor updated, nor its
    # lease (inserted with it) extended.
    variants |= {
        (True, True, parts, True): group_write(True, frozenset(parts), one_turn=True, started=True)
        for n in range(len(OPTIONAL_WRITES) + 1)
        for parts in itertools.combinations(OPTIONAL_WRITES, n)
    }
    with pgserver.fresh_database() as url, psycopg.connect(url, autocommit=True) as conn:
        for number, ((check, one_turn, parts, started), sql) in enumerate(variants.items()):
            written = set(re.findall(r"(?m)^(?:\), |WITH )(\w+) AS ", sql))
            if started:
                assert not written & {"refused", "instance", "extended"}, parts
                assert written == {"events", *parts} - {"extended"}, parts
                if "tasks" not in parts:
                    assert sql.splitlines()[-1] == "SELECT NULL::bigint AS task_row_id"
            else:
                assert written & set(OPTIONAL_WRITES) == set(parts), (check, one_turn, parts)
                if "tasks" not in parts:
                    assert sql.splitlines()[-1].startswith(
                        "SELECT NULL::bigint AS task_row_id FROM (SELECT count(refusal)"
                    )
            statement = Statement(sql, None)
            conn.execute(f"PREPARE variant_{number} AS {statement.sql.decode()}".encode())
