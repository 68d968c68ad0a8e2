"""The benchmark workloads (W1–W5): an app and one function per workload.

Each workload function takes a store URL and sizes, runs in the current process (one
worker in-process unless worker processes are given) and returns a dict of figures.
``observe`` (W1–W4) installs observers on the in-process worker: ``"off"`` (none),
``"metrics"`` (:class:`perdure.observability.PrometheusMetrics`) or ``"all"`` (metrics and
:class:`perdure.observability.OpenTelemetryTracing` with the SDK's batch processor and an
exporter that drops the spans): what ``bench.observe_cost`` compares.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import perdure
from bench.cpu import CpuClock
from bench.wal import WalMeter

app = perdure.App()


class Measured:
    """What a workload's measured part costs besides its time: the CPU of every process
    (:class:`~bench.cpu.CpuClock`) and, on PostgreSQL, the WAL written
    (:class:`~bench.wal.WalMeter`)."""

    def __init__(self, url: str) -> None:
        self.cpu, self.wal = CpuClock(url), WalMeter(url)
        self.seconds: dict[str, float] = {}
        self.wal_bytes: float | None = None

    def start(self) -> None:
        """Take the starting readings."""
        self.wal.start()
        self.cpu.start()

    def stop(self) -> None:
        """Take the final readings."""
        self.seconds = self.cpu.stop()
        self.wal_bytes = self.wal.stop()

    def per_activity(self, activities: int) -> dict[str, float]:
        """``cpu_process_s_ms_per_activity``, ``cpu_server_s_ms_per_activity`` and (on
        PostgreSQL) ``wal_bytes_per_activity``; none for no activities."""
        if not activities:
            return {}
        figures = {f"{key}_ms_per_activity": 1000 * seconds / activities for key, seconds in self.seconds.items()}
        if self.wal_bytes is not None:
            figures["wal_bytes_per_activity"] = self.wal_bytes / activities
        return figures


@app.activity
def inc(x: int) -> int:
    """The unit of work: add one."""
    return x + 1


@app.orchestration
async def chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    """``n`` activities in sequence."""
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc, x)
    return x


@app.activity(name="inc_local", local=True)
def inc_local(x: int) -> int:
    """``inc`` as a local activity: run inside the turn that schedules it."""
    return x + 1


@app.orchestration
async def local_chain(ctx: perdure.OrchestrationContext, n: int) -> int:
    """``n`` local activities in sequence."""
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc_local, x)
    return x


def _sequence(local: bool):
    """The orchestration of sequential steps: ordinary or local activities."""
    return local_chain if local else chain


@app.orchestration
async def one_step_with(ctx: perdure.OrchestrationContext, order: dict) -> int:
    """One activity, for an ``order`` input of any size (W3 with ``input_kb``)."""
    return await ctx.call_activity(inc, len(order["lines"]))


def order_of(kb: int) -> dict:
    """An order input of about ``kb`` KiB of JSON: lines of a sku, a quantity and a price."""
    return {"lines": [{"sku": f"sku-{i:06d}", "qty": i % 7, "price": i * 1.25} for i in range(kb * 1024 // 48)]}


@app.orchestration
async def fan(ctx: perdure.OrchestrationContext, n: int) -> int:
    """``n`` activities in parallel, summed."""
    values = await ctx.when_all([ctx.call_activity(inc, i) for i in range(n)])
    return sum(values)


ROOT = Path(__file__).resolve().parents[1]


def _worker_processes(url: str, count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perdure.cli",
                "--store",
                url,
                "worker",
                "--app",
                "bench.workloads:app",
                "--poll-interval",
                "0.05",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def observed(observe: str) -> dict[str, Any]:
    """The ``Worker`` keyword arguments of ``observe``: none when off (so the workloads also
    run on a perdure without observers, for ``bench.ab``)."""
    return {} if observe == "off" else {"observers": observers(observe)}


def observers(observe: str) -> list[Any]:
    """The worker observers of ``observe`` (``"off"``, ``"metrics"`` or ``"all"``)."""
    if observe == "off":
        return []
    from prometheus_client import CollectorRegistry

    from perdure.observability import OpenTelemetryTracing, PrometheusMetrics

    installed: list[Any] = [PrometheusMetrics(CollectorRegistry())]
    if observe == "metrics":
        return installed
    if observe != "all":
        raise ValueError(f"observe must be off, metrics or all, got {observe!r}")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    return [*installed, OpenTelemetryTracing(provider)]


def _run_many(
    url: str,
    orchestrations: int,
    steps: int,
    processes: int,
    batch_start: bool = False,
    local: bool = False,
    observe: str = "off",
) -> dict[str, Any]:
    store = perdure.open_store(url)
    client = perdure.Client(store)
    with ExitStack() as stack:
        procs: list[subprocess.Popen] = []
        if processes:
            procs = _worker_processes(url, processes)
            stack.callback(lambda: [p.terminate() for p in procs] and [p.wait() for p in procs])
            time.sleep(1.5)  # let the worker processes start and register
        else:
            stack.enter_context(perdure.Worker(app, store, **observed(observe)))
        orchestration = _sequence(local)
        measured = Measured(url)
        measured.start()
        started = time.perf_counter()
        if batch_start:
            ids = client.start_many(orchestration, [steps] * orchestrations)
        else:
            ids = [client.start(orchestration, steps) for _ in range(orchestrations)]
        for iid in ids:
            state = client.wait(iid, timeout=600)
            assert state.output == steps, state
        wall = time.perf_counter() - started
        measured.stop()
    store.close()
    activities = orchestrations * steps
    return {
        "wall_s": wall,
        "orchestrations_per_s": orchestrations / wall,
        "activities_per_s": activities / wall,
        **measured.per_activity(activities),
    }


def w1(
    url: str,
    orchestrations: int = 200,
    steps: int = 10,
    batch_start: bool = False,
    local: bool = False,
    observe: str = "off",
) -> dict[str, Any]:
    """W1: ``orchestrations`` started at once (one ``start`` call each, or one ``start_many``),
    each ``steps`` activities (local ones if ``local``) in sequence."""
    return _run_many(url, orchestrations, steps, processes=0, batch_start=batch_start, local=local, observe=observe)


def w2(url: str, n: int = 1000, observe: str = "off") -> dict[str, Any]:
    """W2: one orchestration fanning out ``n`` activities with when_all."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    with perdure.Worker(app, store, **observed(observe)):
        started = time.perf_counter()
        state = client.wait(client.start(fan, n), timeout=600)
        wall = time.perf_counter() - started
    store.close()
    assert state.output == n * (n + 1) // 2, state
    return {"wall_s": wall, "activities_per_s": n / wall}


#: W3 measures after this many seconds of the same start → result (bench/dbos/workloads.py
#: waits as long): the first tenth of a second after an idle moment runs slower (this VM's
#: cores speed up under load), and it would be a third of perdure's hundred runs.
W3_WARM_UP_S = 0.5


def start_to_result(
    client: perdure.Client, orchestration: Callable[..., Any], value: Any, *, eager: bool, separate: bool
) -> perdure.InstanceState:
    """One W3 start → result: ``client.run``, or with ``separate`` ``client.start`` then
    ``client.wait``."""
    if separate:
        return client.wait(client.start(orchestration, value, eager=eager), timeout=60)
    return client.run(orchestration, value, eager=eager, timeout=60)


def warm_up(one: Callable[[], Any]) -> None:
    """Run ``one`` (a start → result) for :data:`W3_WARM_UP_S` seconds (at least once)."""
    until = time.perf_counter() + W3_WARM_UP_S
    one()
    while time.perf_counter() < until:
        one()


def w3(
    url: str,
    orchestrations: int = 100,
    local: bool = False,
    eager: bool = False,
    observe: str = "off",
    input_kb: int = 0,
    separate: bool = False,
) -> dict[str, Any]:
    """W3: orchestrations one after another, one activity each (a local one if ``local``);
    start-to-result latency (with eager starts if ``eager``), and the CPU (and WAL) of each
    start → result (:class:`Measured`). Each is ``client.run`` (start, and wait for the
    end), or with ``separate``, ``client.start`` then ``client.wait``. With ``input_kb``, an
    ordinary activity and an input of that many KiB of JSON (:func:`order_of`)."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    latencies = []
    orchestration, value = (one_step_with, order_of(input_kb)) if input_kb else (_sequence(local), 1)
    expected = len(value["lines"]) + 1 if input_kb else 1

    one = functools.partial(start_to_result, client, orchestration, value, eager=eager, separate=separate)
    with perdure.Worker(app, store, **observed(observe)):
        warm_up(one)
        measured = Measured(url)
        measured.start()
        for _ in range(orchestrations):
            started = time.perf_counter()
            state = one()
            latencies.append(time.perf_counter() - started)
            assert state.output == expected
        measured.stop()
    store.close()
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        **measured.per_activity(orchestrations),
    }


def w4(url: str, k: int = 100, local: bool = False, observe: str = "off") -> dict[str, Any]:
    """W4: one orchestration with ``k`` sequential activities (local ones if ``local``); time
    per activity (after a warm-up orchestration, as in W3, so that one-off start-up costs
    are not spread over k)."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    orchestration = _sequence(local)
    with perdure.Worker(app, store, **observed(observe)):
        client.wait(client.start(orchestration, 1), timeout=60)  # warm-up
        measured = Measured(url)
        measured.start()
        started = time.perf_counter()
        state = client.wait(client.start(orchestration, k), timeout=600)
        wall = time.perf_counter() - started
        measured.stop()
    store.close()
    assert state.output == k
    return {
        "k": k,
        "wall_s": wall,
        "ms_per_activity": 1000 * wall / k,
        **measured.per_activity(k),
    }


def w5(url: str, processes: int = 1, orchestrations: int = 200, steps: int = 10) -> dict[str, Any]:
    """W5: W1 with ``processes`` worker processes (PostgreSQL), started with one
    ``start_many``: 200 ``start`` calls one after another would take the benchmark process
    about as long as the workers take for the whole run, and no number of workers speeds
    them up."""
    return {"processes": processes, **_run_many(url, orchestrations, steps, processes=processes, batch_start=True)}


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5}
