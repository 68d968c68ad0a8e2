"""PostgreSQL: a worker's rounds look rows up by their keys, and walk indexes no further than
they must, in fresh tables and in tables of a few thousand rows, as the planner plans them
(a prepared statement keeps the plan its first calls made).

The rows are the rest of a fleet's: finished instances, and running instances that another
worker holds, each with a message and a task due later. The plans are those the
server's ``auto_explain`` reports of the statements as they ran, with the planner's own
settings (``bench.plans`` asks instead whether an index *can* serve a statement)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from bench.crowded import crowd
from bench.plans import explain_every_statement
from bench.workloads import app, chain
from psycopg import sql

import perdure
from perdure.store.base import InstanceQuery
from perdure.store.postgres.connection import GENERIC_SESSION
from perdure.store.postgres.queries import Q
from perdure.store.postgres.wire import Statement
from tests import pgserver

TABLES = ("instances", "history", "orchestration_leases", "orchestration_messages", "activity_tasks")


#: The crowds of test_a_round_looks_its_keys_up...: rows, and rows when last analyzed.
CROWDS = {
    "fresh": (0, None),
    "analyzed-at-15-grown-to-250": (250, 15),
    "500-rows": (500, None),
    "2000-rows": (2000, None),
}


@pytest.fixture(params=list(CROWDS))
def crowded_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database crowded by the rest of a fleet (``bench.crowded``: that many
    finished instances, and as many running ones that another worker holds, each with a
    message and a task due later), analyzed, whose sessions report every plan as it ran.
    With none, a fresh database (never analyzed: the planner guesses its tables' sizes);
    and one analyzed while it held a few dozen rows, grown to hundreds since (a generic
    plan made then takes the tables for small)."""
    rows, analyzed = CROWDS[request.param]
    with pgserver.fresh_database() as url:
        if rows:
            crowd("postgres", url, rows, analyzed=analyzed)
        explain_every_statement(url, {"auto_explain.log_analyze": "on", "auto_explain.log_timing": "off"})
        yield url


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The plans the server reports to the store's connections opened from now on."""
    reported: list[dict] = []
    connect = psycopg.Connection.connect

    def connect_listening(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.add_notice_handler(
            lambda diag: (
                reported.append(json.loads(diag.message_primary.split("plan:", 1)[1]))
                if "plan:" in (diag.message_primary or "")
                else None
            )
        )
        return conn

    monkeypatch.setattr(psycopg.Connection, "connect", connect_listening)
    return reported


def nodes(plan: dict) -> Iterator[dict]:
    """The nodes of ``plan``, depth first."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def whole_table_reads(plan: dict) -> set[str]:
    """The tables of perdure's that ``plan`` reads whole."""
    return {
        n["Relation Name"] for n in nodes(plan) if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in TABLES
    }


def rows_read(plan: dict) -> int:
    """The most rows of a table of perdure's that one node of ``plan`` read, as it ran
    (those it returned and those it passed over, in all its loops)."""
    return max(
        (
            (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
            for n in nodes(plan)
            if n.get("Relation Name") in TABLES
        ),
        default=0,
    )


def test_a_round_looks_its_keys_up_among_none_or_thousands_of_other_rows(crowded_url: str, plans: list[dict]) -> None:
    store = perdure.open_store(crowded_url)
    client = perdure.Client(store)
    try:
        with perdure.Worker(app, store) as worker:
            assert client.wait(client.start(chain, 1), timeout=30).output == 1
            # The worker is idle now: this start is handed to it (Store.create_and_run).
            assert client.wait(client.start(chain, 8), timeout=30).output == 8
            handed = worker.stats()["handed_starts"]
            assert handed >= 1
    finally:
        store.close()
    # A worker's statements: the turns' writes (checks included, and the next task written
    # taken), once for each of the 11 turns or more, and the locks of their instances (not
    # of a handed start's: the instance is that transaction's own insert, and its first
    # turn's write holds no checks); and, in the rounds that look at the queues, the lock of
    # the next tasks with the due times, and the due times alone; and the NOTIFY of the
    # rounds that end the instances.
    pattern = re.compile(
        r"\s*(WITH turn AS|WITH refused AS|WITH events AS|SELECT instance_id FROM instances|WITH picked AS"
        r"|WITH due AS|SELECT pg_notify)"
    )
    # A group of one turn's write (write_one_turn); the first turn of a started instance's.
    kinds = {"WITH refused AS": "WITH turn AS", "WITH events AS": "WITH turn AS"}
    matched = [(kinds.get(m.group(1), m.group(1)), p) for p in plans if (m := pattern.match(p["Query Text"]))]
    rounds = [p for _, p in matched]
    sent = Counter(kind for kind, _ in matched)
    assert sent["WITH turn AS"] >= 11, sent
    assert sent["SELECT instance_id FROM instances"] >= sent["WITH turn AS"] - handed, sent
    assert sent["WITH picked AS"] >= 1, sent
    assert sent["SELECT pg_notify"] >= 2, sent  # the two instances' ends
    reads = {(p["Query Text"][:40], table) for p in rounds for table in whole_table_reads(p["Plan"])}
    assert not reads
    # They look keys up with plain index scans: a bitmap heap scan costs more to start than
    # the few rows cost to read (connection.GENERIC_SESSION).
    bitmaps = {p["Query Text"][:40] for p in rounds for n in nodes(p["Plan"]) if n["Node Type"] == "Bitmap Heap Scan"}
    assert not bitmaps
    # Nor do they walk an index past the rows of others: the leases that other workers
    # hold, their messages and tasks (a node that did would read hundreds).
    read: dict[str, int] = {}
    for p in rounds:
        read[p["Query Text"][:40]] = max(read.get(p["Query Text"][:40], 0), rows_read(p["Plan"]))
    assert max(read.values()) < 50, read


def test_a_list_by_last_update_reads_its_rows_from_the_newest_second(plans: list[dict]) -> None:
    # instances_by_updated keys on the second of the last update (so that a turn that keeps
    # its instance's status updates the row in place): a page comes from the newest seconds
    # through that index, each second's rows sorted as they are read, never all rows sorted.
    with pgserver.fresh_database() as url:
        crowd("postgres", url, 2000)
        explain_every_statement(url, {"auto_explain.log_analyze": "on", "auto_explain.log_timing": "off"})
        store = perdure.open_store(url)
        try:
            first = store.list_instances(InstanceQuery(sort="updated", limit=50))
            second = store.list_instances(InstanceQuery(sort="updated", limit=50, cursor=first.next_cursor))
        finally:
            store.close()
    newest = [r.last_updated_at for r in first.items + second.items]
    assert len(newest) == 100 and newest == sorted(newest, reverse=True)
    listed = [p for p in plans if "ORDER BY last_updated" in p["Query Text"]]
    assert len(listed) == 2
    for plan in listed:
        scans = [n for n in nodes(plan["Plan"]) if n.get("Relation Name") == "instances"]
        assert [n.get("Index Name") for n in scans] == ["instances_by_updated"], scans
        assert not [n for n in nodes(plan["Plan"]) if n["Node Type"] == "Sort"]
        assert rows_read(plan["Plan"]) < 500


#: A worker's statements that take a list of instance ids: the crowd (``bench.crowded``,
#: analyzed at 15) they are run on, and their parameters (ids of the crowd's running
#: instances, each with a message due later, or of none).
BY_LIST_OF_IDS = {
    "notify_ends": (
        230,
        {"sender": "s", "channels": "{}", "instances": "perdure_instances", "ended": "{held-5,held-7}"},
    ),
    "due_messages_among": (1000, {"ids": "{held-5,held-7}", "now": 0.0, "channel": None, "sender": "s"}),
    "any_messages_among": (1000, {"ids": "{nobody}"}),
}


@pytest.mark.parametrize("name", list(BY_LIST_OF_IDS))
def test_a_workers_statement_of_a_list_of_ids_looks_each_up_by_key_in_a_store_analyzed_small(name: str) -> None:
    # A worker's statements run with generic plans. For "instance_id = ANY(list)" such a
    # plan guesses ten ids; in a table of hundreds of rows whose statistics were taken
    # while it held a few dozen (a young store, or one kept small by retention), it reads
    # the whole table at each call rather than look ten keys up. Each id is looked up by
    # key instead (LATERAL, LIMIT 1). (In a table of a few pages, a key's lookup may still
    # read it whole: those few rows cost less than the index.)
    rows, values = BY_LIST_OF_IDS[name]
    with pgserver.fresh_database() as url:
        crowd("postgres", url, rows, analyzed=15)
        statement = Statement.of(getattr(Q, name))
        with psycopg.connect(url, autocommit=True) as conn:
            for setting in GENERIC_SESSION:
                conn.execute(setting)
            conn.execute(b"PREPARE worker_statement AS " + statement.sql)
            arguments = sql.SQL(", ").join(sql.Literal(values[n]) for n in statement.names)
            [[explained]] = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE worker_statement({})").format(arguments)
            ).fetchone()
    plan = explained["Plan"]
    assert not whole_table_reads(plan), json.dumps(plan)
    assert rows_read(plan) <= 2, json.dumps(plan)


def test_a_turns_write_carries_only_the_checks_its_turns_need(plans: list[dict]) -> None:
    # The first turn consumes the queued start; each later one applies its activity's
    # outcome handed over in the round and consumes no message; only the last ends the
    # instance. Each optimistic write checks the instance and the lease, and only what its
    # turns need besides: the consumed message still queued (the first); the handed-over
    # task still held, and no message due before its outcome (the later ones); no parent
    # to report to and no queued task left (the last).
    with pgserver.fresh_database() as url:
        explain_every_statement(url, {"auto_explain.log_analyze": "on", "auto_explain.log_timing": "off"})
        store = perdure.open_store(url)
        client = perdure.Client(store)
        try:
            instance_id = client.start(chain, 4)
            with perdure.Worker(app, store):
                assert client.wait(instance_id, timeout=30).output == 4
        finally:
            store.close()
    writes = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith(("WITH turn AS", "WITH refused AS"))]
    checks = [next(n for n in nodes(plan) if n.get("Subplan Name") == "CTE refused") for plan in writes]
    reads = [Counter(n["Relation Name"] for n in nodes(check) if "Relation Name" in n) for check in checks]
    first = {"instances": 1, "orchestration_leases": 1, "orchestration_messages": 1}
    step = {**first, "activity_tasks": 1}
    last = {**step, "instances": 2, "activity_tasks": 2}
    assert reads == [first, step, step, step, last]
