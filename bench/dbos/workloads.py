"""perdure's benchmark workloads W1, W3 and W4 written for DBOS Transact (Python).

Runs in its own virtual environment (``bench/dbos/setup.sh``), never in perdure's: it
imports nothing from perdure. One run per process, as perdure's runs are:

    bench/dbos/.venv/bin/python bench/dbos/workloads.py W4 postgresql://postgres@127.0.0.1:5432/db '{"k": 200}'

prints the run's figures as one JSON line, with the keys perdure's workloads use, and
``cpu_s``: the CPU time of this process (all its threads) during the workload function.
W3 and W4 also give the CPU of their measured part per step (this process and the server
backends of its database, as perdure's W3 and W4 measure theirs: ``bench/cpu.py``, which
imports nothing from perdure).

The shapes, with DBOS's documented API and its default settings:

- a workflow (``@DBOS.workflow``) of ``n`` sequential steps (``@DBOS.step``), each adding
  one; DBOS checkpoints a step's output in the system database when the step returns;
- W1: ``workflows`` workflows of ``steps`` steps, started with one ``DBOS.start_workflow``
  each (run in this process), or, with ``batch_start``, enqueued on a queue in ONE
  transaction (``DBOSClient.enqueue_in_transaction``, DBOS's way of starting many
  workflows at once) and run by this process's queue worker; activities per second;
- W3: one workflow of one step after another, ``DBOS.start_workflow(...).get_result()``;
  start-to-result latency, p50 and p95, after half a second of the same (warm-up);
- W4: one workflow of ``k`` sequential steps after a warm-up workflow; ms per step.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSClient, DBOSConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: for bench.cpu
from bench.cpu import CpuClock

QUEUE = "bench"
QUEUE_POLLING_INTERVAL_S = 0.05
"""How often the queue worker looks for enqueued workflows (DBOS's default is 1 s, which
would add up to a second to a batch that takes a few)."""
RESULT_POLLING_INTERVAL_S = 0.05
"""How often a handle of an enqueued workflow polls for its result (DBOS's default: 1 s)."""


@DBOS.step()
def inc(x: int) -> int:
    """The unit of work: add one."""
    return x + 1


@DBOS.workflow()
def chain(n: int) -> int:
    """``n`` steps in sequence."""
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


def _launch(url: str) -> None:
    config: DBOSConfig = {"name": "perdure-bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()


def _engine_url(url: str) -> str:
    """The SQLAlchemy URL of the system database, with the psycopg 3 driver DBOS uses."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def w1(url: str, workflows: int = 200, steps: int = 10, batch_start: bool = False) -> dict[str, Any]:
    """W1: ``workflows`` workflows of ``steps`` sequential steps, started one
    ``start_workflow`` each or enqueued in one transaction (``batch_start``)."""
    _launch(url)
    if batch_start:
        DBOS.register_queue(QUEUE, polling_interval_sec=QUEUE_POLLING_INTERVAL_S)
        engine = sa.create_engine(_engine_url(url))
        client = DBOSClient(system_database_engine=engine)
        options = {"queue_name": QUEUE, "workflow_name": chain.__qualname__}
        warm_up = client.enqueue(options, 1)  # the queue worker is running once this is done
        assert warm_up.get_result(polling_interval_sec=RESULT_POLLING_INTERVAL_S) == 1
        started = time.perf_counter()
        with engine.begin() as conn:
            handles = [client.enqueue_in_transaction(conn, options, steps) for _ in range(workflows)]
        for handle in handles:
            assert handle.get_result(polling_interval_sec=RESULT_POLLING_INTERVAL_S) == steps
        wall = time.perf_counter() - started
        client.destroy()
    else:
        started = time.perf_counter()
        handles = [DBOS.start_workflow(chain, steps) for _ in range(workflows)]
        for handle in handles:
            assert handle.get_result() == steps
        wall = time.perf_counter() - started
    DBOS.destroy()
    activities = workflows * steps
    return {"wall_s": wall, "orchestrations_per_s": workflows / wall, "activities_per_s": activities / wall}


#: W3 measures after this many seconds of the same start → result, as perdure's W3 does
#: (bench/workloads.py).
W3_WARM_UP_S = 0.5


def w3(url: str, orchestrations: int = 100) -> dict[str, Any]:
    """W3: workflows of one step one after another; start-to-result latency."""
    _launch(url)
    until = time.perf_counter() + W3_WARM_UP_S
    assert DBOS.start_workflow(chain, 1).get_result() == 1  # warm-up
    while time.perf_counter() < until:
        assert DBOS.start_workflow(chain, 1).get_result() == 1
    latencies = []
    clock = CpuClock(url)
    clock.start()
    for _ in range(orchestrations):
        started = time.perf_counter()
        assert DBOS.start_workflow(chain, 1).get_result() == 1
        latencies.append(time.perf_counter() - started)
    cpu = clock.stop()
    DBOS.destroy()
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        **{f"{key}_ms_per_activity": 1000 * seconds / orchestrations for key, seconds in cpu.items()},
    }


def w4(url: str, k: int = 200) -> dict[str, Any]:
    """W4: one workflow of ``k`` sequential steps; time per step."""
    _launch(url)
    assert DBOS.start_workflow(chain, 1).get_result() == 1  # warm-up
    clock = CpuClock(url)
    clock.start()
    started = time.perf_counter()
    assert DBOS.start_workflow(chain, k).get_result() == k
    wall = time.perf_counter() - started
    cpu = clock.stop()
    DBOS.destroy()
    return {
        "k": k,
        "wall_s": wall,
        "ms_per_activity": 1000 * wall / k,
        **{f"{key}_ms_per_activity": 1000 * seconds / k for key, seconds in cpu.items()},
    }


WORKLOADS = {"W1": w1, "W3": w3, "W4": w4}


def main(argv: list[str]) -> int:
    """``workloads.py NAME URL [JSON params]``: run one workload, print its figures."""
    if len(argv) not in (2, 3) or argv[0] not in WORKLOADS:
        raise SystemExit(f"usage: workloads.py {{{','.join(WORKLOADS)}}} SYSTEM_DATABASE_URL ['{{params}}']")
    params = json.loads(argv[2]) if len(argv) == 3 else {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    figures = WORKLOADS[argv[0]](argv[1], **params)
    after = resource.getrusage(resource.RUSAGE_SELF)
    figures["cpu_s"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
