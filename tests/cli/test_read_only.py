"""Commands that read or change instances never create or migrate a store; ``init``,
``start`` and ``worker`` do."""

from __future__ import annotations

import sqlite3

import pytest

from .helpers import ROOT, Background
from .helpers import perdure as run

READERS = [
    ["status", "x"],
    ["result", "x"],
    ["list"],
    ["history", "x"],
    ["diagnose"],
    ["diagnose", "x"],
    ["raise", "x", "go"],
    ["terminate", "x"],
    ["suspend", "x"],
    ["resume", "x"],
    ["purge", "x"],
    ["purge", "--query", "--yes"],
]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_missing_sqlite_file_is_one_error_line_and_is_not_created(tmp_path, command):
    path = tmp_path / "typo.db"
    ran = run(*command, "--store", f"sqlite:///{path}", code=1)
    assert ran.err == (
        f"error: no perdure store at '{path}': the file does not exist; create it with `perdure init` "
        f"(or start a worker on it)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READERS[:4], ids=" ".join)
def test_a_database_without_perdure_is_refused_and_left_untouched(tmp_path, command):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    before = path.read_bytes()
    ran = run(*command, "--store", f"sqlite:///{path}", code=1)
    assert "is not a perdure store (it has no perdure schema)" in ran.err
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    assert "is not a perdure store: file is not a database" in run("list", "--store", f"sqlite:///{path}", code=1).err
    assert path.read_text(encoding="utf-8") == "hello"


def test_init_start_and_worker_create_the_store(tmp_path):
    for name, command in (
        ("a.db", ["init"]),
        ("b.db", ["start", "quick", "1"]),
    ):
        url = f"sqlite:///{tmp_path / name}"
        run(*command, "--store", url)
        run("list", "--store", url)
    assert "perdure store ready at sqlite:///" in run("init", "--store", f"sqlite:///{tmp_path / 'a.db'}").out
    url = f"sqlite:///{tmp_path / 'c.db'}"
    worker = Background("worker", "--app", "tests.cli.cli_app:app", "--store", url, cwd=ROOT)
    worker.wait_for_log(" serves ")
    assert worker.stop().code == 0
    run("list", "--store", url)


def test_postgres_database_without_the_schema_is_refused_and_left_empty():
    from tests import pgserver

    with pgserver.database_factory().database(migrated=False) as url:
        ran = run("list", "--store", url, code=1)
        assert "is not a perdure store (it has no perdure schema)" in ran.err
        assert len(ran.error_lines) == 1
        run("init", "--store", url)
        run("list", "--store", url)
