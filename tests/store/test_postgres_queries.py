"""PostgreSQL: the store's statements as the server receives them."""

from __future__ import annotations

import re

import pytest

from perdure.store.postgres.activities import LOCK_ACTIVITIES_AND_DUE_TIMES
from perdure.store.postgres.orchestrations import DUE_TIMES, GROUP_WRITES
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
