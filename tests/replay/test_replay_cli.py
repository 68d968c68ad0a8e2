"""``perdure replay-check`` and ``perdure export`` through the real entry point, on both
stores: the exit code gates a deploy, every affected instance is named with its position,
exported files are checked without the store, and the store is left byte for byte as it
was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import perdure
from tests.cli.helpers import ROOT, environment
from tests.cli.helpers import perdure as run

COMPATIBLE = "tests.replay.apps:compatible"
BREAKING = "tests.replay.apps:breaking"

BREAKING_REPORT = {
    "order-1 (order_saga, execution 1, RUNNING) would not replay: nondeterminism at history index 2",
    "order-2 (order_saga, execution 1, RUNNING) would not replay: nondeterminism at history index 2",
    "    recorded: ActivityScheduled 'charge' (task 1)",
    "    now:      ActivityScheduled 'reserve' (task 1)",
    "refund-3 (refund, execution 1, RUNNING) would not replay: nondeterminism at history index 5",
    "    recorded: TimerCreated (task 2)",
    "    now:      ActivityScheduled 'notify' (task 2)",
    "gift-5 (gift, execution 1, RUNNING) would not replay: not registered: the app registers no orchestration "
    "named 'gift' (it registers: loyalty, order_saga, refund)",
}


def check(*args: str, code: int = 0):
    return run("replay-check", *args, code=code, cwd=ROOT)


def test_a_compatible_change_exits_0(fleet_url):
    assert check("--app", COMPATIBLE, "--store", fleet_url).out == "all 5 executions replay\n"
    ran = check("--app", COMPATIBLE, "--store", fleet_url, "--include-terminal", "10")
    assert ran.out == "all 6 executions replay\n"


def test_a_breaking_change_exits_1_and_names_every_affected_instance_with_its_position(fleet_url):
    lines = check("--app", BREAKING, "--store", fleet_url, code=1).out.splitlines()
    assert set(lines[:-1]) == BREAKING_REPORT
    assert len(lines[:-1]) == 4 + 2 * 3  # four instances, three with recorded/now lines
    assert lines[-1] == "4 of 5 executions would not replay (nondeterminism, not registered)"
    assert "loyalty-4" not in "\n".join(lines)


def test_the_json_report_has_the_position_and_both_sides_as_fields(fleet_url):
    report = json.loads(check("--app", BREAKING, "--store", fleet_url, "--include-terminal", "1", "--json", code=1).out)
    assert (report["ok"], report["executions"], report["instances"], report["problems"]) == (False, 6, 6, 5)
    failing = {r["instance_id"]: r for r in report["results"] if not r["ok"]}
    assert sorted(failing) == ["gift-5", "order-1", "order-2", "order-6", "refund-3"]
    refund = failing["refund-3"]
    assert {
        k: refund[k] for k in ("name", "execution_id", "status", "problem", "position", "recorded", "produced")
    } == {
        "name": "refund",
        "execution_id": 1,
        "status": "RUNNING",
        "problem": "nondeterminism",
        "position": 5,
        "recorded": "TimerCreated (task 2)",
        "produced": "ActivityScheduled 'notify' (task 2)",
    }
    assert refund["message"].startswith("nondeterministic orchestration 'refund' (instance 'refund-3', execution 1)")
    assert failing["order-6"]["status"] == "COMPLETED" and failing["order-6"]["note"].startswith("it has ended")
    assert failing["gift-5"]["problem"] == "not_registered" and failing["gift-5"]["position"] is None
    loyalty = next(r for r in report["results"] if r["instance_id"] == "loyalty-4")
    assert loyalty["ok"] and loyalty["execution_id"] == 3 and loyalty["source"] == "store"


def test_exported_files_are_checked_without_the_store(fleet_url, tmp_path):
    files = []
    for iid in ("order-1", "order-2", "refund-3", "loyalty-4", "gift-5"):
        path = tmp_path / f"{iid}.json"
        path.write_text(run("export", iid, "--store", fleet_url).out, encoding="utf-8")
        files.append(str(path))
    assert json.loads(Path(files[0]).read_text(encoding="utf-8"))["format"] == "perdure-history"
    nowhere = environment(PERDURE_STORE=f"sqlite:///{tmp_path / 'no-such.db'}")
    ok = run("replay-check", "--app", COMPATIBLE, *files, env=nowhere, cwd=ROOT)
    assert ok.out == "all 5 executions replay\n"
    lines = run("replay-check", "--app", BREAKING, *files, code=1, env=nowhere, cwd=ROOT).out.splitlines()
    expected = {
        line.replace(", RUNNING)", f", RUNNING, from {tmp_path / line.split()[0]}.json)") for line in BREAKING_REPORT
    }
    assert set(lines[:-1]) == expected
    assert lines[-1] == "4 of 5 executions would not replay (nondeterminism, not registered)"
    assert not (tmp_path / "no-such.db").exists()
    loyalty = tmp_path / "loyalty-all.json"
    loyalty.write_text(run("export", "loyalty-4", "--all-executions", "--store", fleet_url).out, encoding="utf-8")
    assert run("replay-check", "--app", COMPATIBLE, str(loyalty), cwd=ROOT).out == "all 3 executions replay\n"


def test_the_checks_and_exports_leave_the_store_unchanged(fleet_url):
    before = fingerprint(fleet_url)
    check("--app", COMPATIBLE, "--store", fleet_url, "--include-terminal", "5")
    check("--app", BREAKING, "--store", fleet_url, "--include-terminal", "5", "--json", code=1)
    check("--app", BREAKING, "--store", fleet_url, "--status", "RUNNING,COMPLETED", "--name", "order_saga", code=1)
    run("export", "order-1", "--store", fleet_url)
    run("export", "loyalty-4", "--all-executions", "--store", fleet_url)
    assert fingerprint(fleet_url) == before
    store = perdure.open_store(fleet_url)  # the fingerprint sees a write
    perdure.Client(store).raise_event("gift-5", "Wrapped")
    store.close()
    assert fingerprint(fleet_url) != before


def test_bad_input_is_one_line_with_the_exit_code_of_its_kind(tmp_path):
    store = f"sqlite:///{tmp_path / 'shop.db'}"
    missing = check("--app", COMPATIBLE, str(tmp_path / "gone.json"), code=2)
    assert missing.err == f"error: no such file: '{tmp_path / 'gone.json'}'\n"
    notes = tmp_path / "notes.json"
    notes.write_text('{"hello": 1}', encoding="utf-8")
    mixed = check("--app", COMPATIBLE, str(notes), "--name", "order_saga", code=2)
    assert mixed.err.startswith("error: FILEs are checked instead of the store")
    wrong = check("--app", COMPATIBLE, str(notes), code=1)
    assert (
        wrong.err
        == f'error: {notes}: not a perdure history export (no "format": "perdure-history"); write one with perdure export ID\n'
    )
    assert "no perdure store at" in check("--app", COMPATIBLE, "--store", store, code=1).err
    assert not (tmp_path / "shop.db").exists()  # a read-only command creates nothing
    assert "Missing option '--app'" in check("--store", store, code=2).err
    run("init", "--store", store)
    empty = check("--app", COMPATIBLE, "--store", store, "--prefix", "x-")
    assert (empty.out, empty.err) == ("", "no instances to check (id prefix 'x-')\n")
    assert run("export", "nope", "--store", store, code=2).err == "error: no instance with id 'nope'\n"


def fingerprint(url: str) -> object:
    """The store's content: an SQLite database's files and the main file's bytes; a
    checksum of every table (and sequence) of a PostgreSQL database."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = sorted(p.name for p in path.parent.glob(path.name + "*"))
        return files, hashlib.sha256(path.read_bytes()).hexdigest()
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        sums = {}
        for table in sorted(tables):
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t"
            )
            sums[table] = conn.execute(query.format(sql.Identifier(table))).fetchone()
        sequences = conn.execute(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall()
    assert sums["instances"][0] == 6 and sums["history"][0] > 0
    return sums, sequences
