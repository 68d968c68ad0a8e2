"""Every benchmark workload, at tiny sizes, so the benchmarks keep working. No timing is
asserted here: speed is measured by ``python -m bench``, never by the test suite."""

from __future__ import annotations

import pytest
from bench.__main__ import main as bench_main
from bench.workloads import w1, w2, w3, w4, w5


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'bench.db'}"


@pytest.fixture
def bench_postgres(monkeypatch):
    """The benchmarks' PostgreSQL server: the tests' (``tests/pgserver.py``), not
    necessarily one on 127.0.0.1:5432."""
    from tests import pgserver

    with pgserver.fresh_database() as url:
        monkeypatch.setenv("PERDURE_BENCH_POSTGRES_URL", url)
        yield url


def test_w1_sequences_smoke(sqlite_url):
    assert w1(sqlite_url, orchestrations=5, steps=3)["activities_per_s"] > 0


def test_w1_batch_start_smoke(tmp_path):
    assert w1(f"sqlite:///{tmp_path / 'b.db'}", orchestrations=5, steps=2, batch_start=True)["wall_s"] > 0


def test_w2_fan_out_smoke(sqlite_url):
    assert w2(sqlite_url, n=20)["wall_s"] > 0


def test_w3_latency_smoke(sqlite_url):
    figures = w3(sqlite_url, orchestrations=5)
    assert figures["p95_ms"] >= figures["p50_ms"] > 0


def test_w4_long_sequence_smoke(sqlite_url):
    assert w4(sqlite_url, k=10)["k"] == 10


def test_w3_w4_local_activities_smoke(tmp_path):
    assert w3(f"sqlite:///{tmp_path / 'a.db'}", orchestrations=3, local=True)["p50_ms"] > 0
    assert w4(f"sqlite:///{tmp_path / 'b.db'}", k=10, local=True)["k"] == 10


def test_w3_eager_starts_smoke(tmp_path):
    assert w3(f"sqlite:///{tmp_path / 'e.db'}", orchestrations=3, local=True, eager=True)["p50_ms"] > 0


def test_w3_with_a_large_input_smoke(tmp_path):
    assert w3(f"sqlite:///{tmp_path / 'i.db'}", orchestrations=2, input_kb=64)["p50_ms"] > 0


def test_w4_on_postgres_reports_the_cpu_and_the_wal_of_a_step(bench_postgres, sqlite_url):
    figures = w4(bench_postgres, k=10)
    # A step writes its turn's events, its next task and its commit: hundreds of bytes.
    assert figures["wal_bytes_per_activity"] > 100
    assert figures["cpu_process_s_ms_per_activity"] > 0
    assert "wal_bytes_per_activity" not in w4(sqlite_url, k=10)  # SQLite: no server WAL


def test_w5_worker_processes_on_postgres_smoke(bench_postgres):
    assert w5(bench_postgres, processes=1, orchestrations=3, steps=2)["processes"] == 1


def test_runner_prints_a_table_and_writes_json(tmp_path, capsys, monkeypatch):
    import bench.__main__ as runner

    monkeypatch.setattr(runner, "PLANS", {**runner.PLANS, "W2": [{"n": 10}]})
    out = tmp_path / "results.json"
    assert bench_main(["W2", "--runs", "1", "--json", str(out)]) == 0
    assert "W2" in capsys.readouterr().out
    assert '"workload": "W2"' in out.read_text()


def test_idle_worker_sampler_runs():
    from bench.idle import main as idle

    assert idle(0.2) >= 0


def test_pg_round_profile_counts_statements_and_round_trips(capsys, bench_postgres):
    from bench.pg_round_profile import main as profile_main

    assert profile_main(["--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "round_trips" in out and "statements" in out and "BEGIN" in out
    assert profile_main(["--w3", "2", "--profile", "3"]) == 0
    assert "per orchestration" in capsys.readouterr().out


def test_sqlite_step_profile_times_statements_and_counts_wal_pages(capsys):
    from bench.sqlite_step_profile import main as profile_main

    assert profile_main(["--k", "5", "--k-pages", "5"]) == 0
    out = capsys.readouterr().out
    assert "COMMIT" in out and "dispatch" in out
    # Every step writes its history and its instance row in its commit.
    table = out.split("WAL frames per commit", 1)[1].splitlines()[1:]
    pages = dict(reversed(line.split()) for line in table if line.startswith("   "))
    assert float(pages["history"]) >= 1 and float(pages["instances"]) >= 1


def test_driver_cost_compares_psycopg_perdure_and_libpq(capsys, bench_postgres):
    from bench.driver_cost import main as driver_main

    assert driver_main(["--transactions", "3", "--statements", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split()[0] for row in rows[2:]] == ["psycopg", "perdure", "libpq"]
    # Per transaction and wall time; the per-statement figure is a difference of two
    # timings, which three transactions on a busy machine can make negative.
    assert all(float(row.split()[1]) > 0 and float(row.split()[3]) > 0 for row in rows[2:])


def test_step_timeline_splits_a_step_between_the_threads(capsys):
    from bench.step_timeline import main as timeline_main

    assert timeline_main(["--k", "5"]) == 0
    out = capsys.readouterr().out
    parts = {line.strip().split("  ")[0] for line in out.splitlines() if line.startswith("  ")}
    assert parts == {"round", "to the activity", "activity", "to the next round"}


def test_fresh_store_times_each_orchestration_on_one_store(capsys):
    from bench.fresh_store import main as fresh_main

    assert fresh_main(["--orchestrations", "3", "--k", "4"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  orchestration")]
    assert [line.split(":")[0].strip() for line in lines] == [f"orchestration {n}" for n in (1, 2, 3)]
    assert all(float(line.split(":")[1].split()[0]) > 0 for line in lines)


def test_threads_reports_the_cpu_of_the_threads_that_ran(capsys):
    from bench.threads import main as threads_main

    assert threads_main(["--orchestrations", "20"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[3:]}
    # The caller and the activity thread that ran the starts and the activities.
    assert {"MainThread", "perdure-activity_0", "all"} <= set(rows)
    # CPU comes in clock ticks (10 ms); switches are counted exactly: the caller blocks at
    # least once per start → result, waiting for its result.
    assert float(rows["MainThread"][2]) >= 1


def test_start_timeline_splits_a_start_to_result_on_its_path(capsys):
    from bench.start_timeline import PARTS
    from bench.start_timeline import main as timeline_main

    assert timeline_main(["--orchestrations", "5"]) == 0
    out = capsys.readouterr().out
    assert "W3: 5 of 5 orchestrations timed" in out
    parts = {line.strip().rsplit(" ", 1)[0].strip() for line in out.splitlines() if line.startswith("    ")}
    assert parts == set(PARTS)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_crowded_compares_an_empty_store_with_a_crowded_one(kind, request, capsys):
    from bench.crowded import main as crowded_main

    if kind == "postgres":
        request.getfixturevalue("bench_postgres")
    assert crowded_main(["--store", kind, "--rows", "50", "--pairs", "1", "--k", "3"]) == 0
    summary = capsys.readouterr().out.split("W4 ms per step", 1)[1].splitlines()[1:]
    rows = [line.split() for line in summary]
    assert [(row[0], row[1]) for row in rows] == [("0", "rows"), ("50", "rows")] and rows[0][-1] == "1.00"


def test_crowded_times_a_start_to_result_too(capsys):
    from bench.crowded import main as crowded_main

    assert crowded_main(["--workload", "W3", "--rows", "50", "--pairs", "1", "--k", "3"]) == 0
    assert "W3 p50 ms on sqlite" in capsys.readouterr().out


def test_bystanders_reports_the_cpu_an_instance_end_costs_idle_processes(capsys, bench_postgres):
    from bench.bystanders import main as bystanders_main

    assert bystanders_main(["--processes", "1", "--seconds", "0.5"]) == 0
    header, figures = capsys.readouterr().out.splitlines()[-2:]
    assert "1 bystanders" in header and int(header.split(", ")[-1].split()[0]) > 0
    assert figures.startswith("per instance ended, per bystander: process ")
