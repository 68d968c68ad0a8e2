"""The side-by-side runner's own parts (``python -m bench.vs_dbos``): its command line, the
ratios and medians it reports, its reading of ``/proc`` and the perdure side of a run. DBOS
itself is not needed here: it lives in ``bench/dbos/.venv``, outside the test suite."""

from __future__ import annotations

import os

import psycopg
import pytest
from bench.vs_dbos import (
    CASES,
    DBOS,
    BackendCpu,
    cpu_seconds_from_stat,
    is_backend_of,
    pair_order,
    parse_args,
    report,
    run_perdure,
    summary,
    times_dbos,
)

from tests import pgserver


def test_parse_args_defaults_to_every_workload_on_postgres():
    args = parse_args([])
    assert (args.workloads, args.store, args.pairs) == (["W1", "W3", "W4"], "postgres", 5)


def test_parse_args_takes_workloads_in_any_case():
    args = parse_args(["w4", "W3", "--store", "sqlite", "--pairs", "2", "--dbos-sqlite-wal"])
    assert (args.workloads, args.store, args.pairs, args.dbos_sqlite_wal) == (["W4", "W3"], "sqlite", 2, True)
    assert parse_args([]).dbos_sqlite_wal is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["W2"], "unknown workload 'W2'"), (["--pairs", "0"], "--pairs must be at least 1, got 0")],
)
def test_parse_args_refuses_what_it_cannot_run(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_times_dbos_is_above_one_when_perdure_is_faster():
    assert times_dbos(2000.0, 400.0, "activities_per_s") == 5.0  # a throughput: higher is better
    assert times_dbos(2.0, 5.0, "p50_ms") == 2.5  # a latency: lower is better
    assert times_dbos(4.0, 2.0, "ms_per_activity") == 0.5


def test_summary_is_median_min_max():
    assert summary([3.0, 1.0, 2.0, 10.0]) == (2.5, 1.0, 10.0)


def test_pairs_alternate_which_engine_runs_first():
    assert pair_order(0, ["ordinary", "local"]) == [DBOS, "ordinary", "local"]
    assert pair_order(1, ["ordinary", "local"]) == ["ordinary", "local", DBOS]


def test_cpu_seconds_from_stat_reads_utime_and_stime_after_the_command_name():
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", *["0"] * 10, str(3 * ticks), str(ticks), *["0"] * 30]
    assert cpu_seconds_from_stat(f"4242 (odd (name) x) {' '.join(fields)}") == 4.0


def test_is_backend_of_matches_the_database_in_the_process_title():
    title = "postgres: 15/main: postgres perdure_bench_1a 127.0.0.1(60110) idle\0\0\0"
    assert is_backend_of(title, "perdure_bench_1a")
    assert not is_backend_of(title, "perdure_bench_1")
    assert not is_backend_of("postgres: 15/main: walwriter ", "perdure_bench_1a")
    assert not is_backend_of("python -m perdure_bench_1a", "perdure_bench_1a")


def test_backend_cpu_counts_the_backends_of_one_database():
    with pgserver.fresh_database() as url, pgserver.fresh_database() as other, pgserver.fresh_database() as quiet:
        # the probe's last sample (on leaving it) sees the backend before it exits
        with psycopg.connect(url) as conn, BackendCpu(url.rsplit("/", 1)[1]) as probe:
            conn.execute("SELECT count(*) FROM generate_series(1, 2000000)").fetchone()
        # A database no session has used: a closed session's backend may take a moment to
        # exit, and a probe counts the whole life of every backend it sees.
        with psycopg.connect(other) as conn, BackendCpu(quiet.rsplit("/", 1)[1]) as idle:
            conn.execute("SELECT count(*) FROM generate_series(1, 2000000)").fetchone()
    assert probe.seconds > 0.05
    assert idle.seconds == 0


def _runs(key: str, values: list[float], cpu: tuple[float, float] | None = None) -> list[dict]:
    runs = [{key: v} for v in values]
    for run in runs if cpu else []:
        run.update(cpu_s=cpu[0], server_cpu_s=cpu[1], setup_cpu_s=0.2, setup_server_cpu_s=0.1)
    return runs


def test_report_gives_medians_ranges_and_per_pair_ratios():
    w4 = CASES["W4"][0]
    results = {
        w4.label: {
            "ordinary activities": _runs("ms_per_activity", [1.0, 2.0, 4.0]),
            "local activities": _runs("ms_per_activity", [0.1, 0.1, 0.1]),
            DBOS: _runs("ms_per_activity", [4.0, 4.0, 6.0]),
        }
    }
    table = report("sqlite", results, [{"sqlite_commit_wal_ms": 0.2, "sqlite_commit_delete_ms": 0.5}])
    ordinary = next(line for line in table.splitlines() if "perdure ordinary" in line)
    assert "| 2 [1–4] | 4 [4–6] | **2 [1.5–4]** |" in ordinary  # ratios 4/1, 4/2, 6/4
    assert "ms per step (lower is better)" in ordinary
    assert "**40 [40–60]**" in next(line for line in table.splitlines() if "perdure local" in line)
    assert "| SQLite insert + commit, WAL, `synchronous=FULL` (perdure's mode) | 0.2 [0.2–0.2] |" in table
    assert "CPU per activity" not in table


def test_report_gives_cpu_per_activity_without_the_setup():
    w1 = CASES["W1"][1]  # 200 x 10 = 2,000 activities
    results = {
        w1.label: {
            "ordinary activities": _runs("activities_per_s", [2000.0], cpu=(1.2, 0.5)),
            "local activities": _runs("activities_per_s", [4000.0], cpu=(0.6, 0.3)),
            DBOS: _runs("activities_per_s", [400.0], cpu=(6.2, 2.1)),
        }
    }
    table = report("postgres", results, [])
    ordinary_cpu = [line for line in table.splitlines() if "perdure ordinary" in line][1]
    # (1.2 - 0.2) / 2000 s = 0.5 ms in the process, (0.5 - 0.1) / 2000 s = 0.2 ms in the server
    assert "| 0.5 + 0.2 = 0.7 [0.7–0.7] | 3 + 1 = 4 [4–4] | **5.71 [5.71–5.71]** |" in ordinary_cpu
    assert "| activities/s (higher is better) | 2,000 [2,000–2,000] | 400 [400–400] | **5 [5–5]** |" in table


def test_report_gives_the_cpu_per_step_of_w4_and_per_start_to_result_of_w3_as_measured():
    w4, w3 = CASES["W4"][0], CASES["W3"][0]

    def measured(figures: dict[str, float], process: float, server: float) -> list[dict]:
        return [{**figures, "cpu_process_s_ms_per_activity": process, "cpu_server_s_ms_per_activity": server}]

    results = {
        w4.label: {
            **{side: measured({"ms_per_activity": 1.0}, 0.5, 0.25) for side in w4.perdure},
            DBOS: measured({"ms_per_activity": 3.0}, 3.0, 0.5),
        },
        w3.label: {
            **{side: measured({"p50_ms": 2.0, "p95_ms": 3.0}, 1.5, 1.0) for side in w3.perdure},
            DBOS: measured({"p50_ms": 8.0, "p95_ms": 9.0}, 6.0, 2.0),
        },
    }
    lines = report("postgres", results, []).splitlines()
    cpu = [line for line in lines if line.startswith("| W") and " + " in line]
    assert (
        f"| {w4.label}, perdure ordinary activities | 0.5 + 0.25 = 0.75 [0.75–0.75] | 3 + 0.5 = 3.5 [3.5–3.5] "
        "| **4.67 [4.67–4.67]** |" in cpu
    )
    assert (
        f"| {w3.label}, perdure ordinary activities | 1.5 + 1 = 2.5 [2.5–2.5] | 6 + 2 = 8 [8–8] "
        "| **3.2 [3.2–3.2]** |" in cpu
    )
    assert len(cpu) == len(w4.perdure) + len(w3.perdure)


def test_run_perdure_runs_the_bench_workload_in_a_fresh_process(tmp_path):
    figures = run_perdure("W4", f"sqlite:///{tmp_path / 'w4.db'}", {"k": 3})
    assert figures["k"] == 3
    assert figures["cpu_s"] > 0
    assert figures["cpu_process_s_ms_per_activity"] > 0


def test_perdures_w3_gives_the_cpu_of_each_start_to_result(tmp_path):
    figures = run_perdure("W3", f"sqlite:///{tmp_path / 'w3.db'}", {"orchestrations": 3})
    assert figures["cpu_process_s_ms_per_activity"] > 0
    assert figures["cpu_server_s_ms_per_activity"] == 0  # SQLite: no server


def test_report_gives_w3_p50_and_p95():
    w3 = CASES["W3"][0]
    runs = {side: [{"p50_ms": 2.0, "p95_ms": 4.0}] for side in w3.perdure}
    table = report("postgres", {w3.label: {**runs, DBOS: [{"p50_ms": 5.0, "p95_ms": 6.0}]}}, [])
    assert "| ms, p50 (lower is better) | 2 [2–2] | 5 [5–5] | **2.5 [2.5–2.5]** |" in table
    assert "| ms, p95 (lower is better) | 4 [4–4] | 6 [6–6] | **1.5 [1.5–1.5]** |" in table
    # DBOS runs a workflow in the process that starts it; so does perdure's eager start.
    assert "perdure ordinary activities, eager start | ms, p50" in table
