"""A harness that plays a schedule: workers, leases, clock, crashes and duplicates, one
step at a time, checking the invariants after every step.

A schedule is a list of steps ``(op, worker, arg)``; :func:`play` runs it on a store with
a :class:`~perdure.testing.FakeClock`, then drains the store with fault-free workers and
checks the final state. Every step is legal whatever came before (a step with nothing to
act on does nothing), so any list of integers is a schedule.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import perdure
from perdure.core.history import ActivityCompleted, ExecutionStarted, SubOrchestrationCompleted, TimerFired
from perdure.core.status import OrchestrationStatus
from perdure.errors import LeaseLost
from perdure.store.base import Message
from perdure.testing import FakeClock, StepWorker, drain
from perdure.testing.invariants import (
    all_instances,
    history_violations,
    settled_violations,
    waiting_violations,
)

LEASE = 4.0
WORKERS = 2
#: The step kinds, some listed twice so that schedules dwell on the racy ones (a lock held
#: across other steps, a late completion).
OPS = (
    "lock_turns",
    "run_turns",
    "lock_tasks",
    "run_task",
    "complete",
    "advance",
    "lock_turns",
    "lock_tasks",
    "complete",
    "advance",
    "turns",
    "round",
    "round",
    "crash",
    "duplicate",
    "raise_go",
    "terminate",
    "suspend_or_resume",
    "abandon",
    "stall",
    "stall",
    "reuse",
    "ticker",
)
ADVANCES = (0.5, 2.0, LEASE + 1.0, LEASE + 1.0)
#: Steps that write nothing to the store (a run in memory, the clock, forgetting): the
#: state checked after every other step cannot change with them.
WRITE_NOTHING = frozenset({"run_task", "advance", "crash"})

app = perdure.App()


@app.activity
def double(x: int) -> int:
    return 2 * x


@app.activity
def flaky(x: int) -> int:
    if perdure.activity_info().attempt == 1:
        raise RuntimeError("first attempt fails")
    return x + 100


@app.orchestration
async def doubler(ctx: perdure.OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, x)


@app.orchestration
async def mixed(ctx: perdure.OrchestrationContext, n: int) -> list[Any]:
    first = await ctx.call_activity(double, n)
    fan = await ctx.when_all([ctx.call_activity(double, first + i) for i in range(2)])
    # A race whose loser reports after the instance may have ended (discarded then).
    await ctx.when_any([ctx.call_activity(double, 0), ctx.create_timer(timedelta(seconds=5))])
    return [first, fan]


@app.orchestration
async def doomed(ctx: perdure.OrchestrationContext, _: None) -> None:
    """Terminated by the schedule, possibly while its activity runs."""
    await ctx.when_all([ctx.call_activity(double, 3), ctx.wait_for_event("never")])


@app.orchestration
async def event_then_child(ctx: perdure.OrchestrationContext, _: None) -> list[Any]:
    go = await ctx.wait_for_event("go")
    return [go, await ctx.call_sub_orchestration(doubler, 21)]


@app.orchestration
async def renewing(ctx: perdure.OrchestrationContext, state: dict) -> int:
    if state["round"] == 0:
        total = await ctx.call_activity(double, 5)
        ctx.continue_as_new({"round": 1, "total": total})
    retried = await ctx.call_activity(
        flaky, state["total"], retry=perdure.RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=2))
    )
    return retried


@app.orchestration
async def ticking(ctx: perdure.OrchestrationContext, n: int) -> None:
    """An eternal loop: a continue-as-new every second, stopped only by a terminate (one that
    arrives in the batch that continues as new included)."""
    await ctx.create_timer(timedelta(seconds=1))
    ctx.continue_as_new(n + 1)


@app.orchestration
async def again(ctx: perdure.OrchestrationContext, n: int) -> list[Any]:
    """Run under one id again and again (purge + start, replace_terminal): its child may
    outlive the run that started it, and its result must never reach a later run."""
    first = await ctx.call_activity(double, n)
    child = ctx.call_sub_orchestration(doubler, n)
    winner = await ctx.when_any([child, ctx.create_timer(timedelta(seconds=3))])
    return [first, winner.result if winner is child else None]


COMPLETED, TERMINATED = OrchestrationStatus.COMPLETED, OrchestrationStatus.TERMINATED
EXPECTED = {
    "mixed": (COMPLETED, [2, [4, 6]]),
    "evented": (COMPLETED, ["go!", 42]),
    "renewing": (COMPLETED, 110),
    "doomed": (TERMINATED, None),
    "ticker": (TERMINATED, None),
}


def expected(record: Any, again_n: int) -> list[tuple[OrchestrationStatus, Any]]:
    """The final states ``record`` may legitimately end in: the fixed ones, the latest run
    of ``again`` (input ``again_n``), and children (their parent's result, or terminated by
    their parent's cascade)."""
    iid = record.instance_id
    if iid in EXPECTED:
        return [EXPECTED[iid]]
    if iid == "again":
        return [(COMPLETED, [2 * again_n, 2 * again_n]), (COMPLETED, [2 * again_n, None])]
    if iid.startswith("evented::sub::"):
        return [(COMPLETED, 42)]
    if iid.startswith("again::sub::"):  # a child of any run: its own input's double
        return [(TERMINATED, None), *((COMPLETED, 2 * n) for n in range(1, again_n + 1))]
    return []


@dataclass
class Run:
    """One schedule being played."""

    store: perdure.Store
    clock: FakeClock
    workers: list[StepWorker] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    frozen: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    suspended: bool = False
    again_n: int = 1

    @classmethod
    def start(cls, store: perdure.Store, clock: FakeClock) -> Run:
        """Start the workload on ``store``."""
        run = cls(store, clock)
        run.workers = [StepWorker(app, store, f"w{i}", lease_seconds=LEASE) for i in range(WORKERS)]
        client = perdure.Client(store)
        client.start(mixed, 1, instance_id="mixed")
        client.start(event_then_child, None, instance_id="evented")
        client.start(renewing, {"round": 0}, instance_id="renewing")
        client.start(doomed, None, instance_id="doomed")
        client.start(ticking, 0, instance_id="ticker")
        client.start(again, 1, instance_id="again")
        return run

    def step(self, op: int, w: int, arg: int) -> None:
        """Play one step."""
        name = OPS[op % len(OPS)]
        worker = self.workers[w % len(self.workers)]
        self.log.append(f"{name}(w{w % len(self.workers)}, {arg})")
        match name:
            case "lock_turns":
                worker.lock_turns(limit=1 + arg % 3)
            case "run_turns":
                worker.run_turns()
            case "turns":
                worker.turns()
            case "round":
                worker.round()
            case "lock_tasks":
                worker.lock_tasks(limit=1 + arg % 2)
            case "run_task":
                worker.run_task(arg)
            case "complete":
                worker.complete()
            case "advance":
                self.clock.advance(ADVANCES[arg % len(ADVANCES)])
            case "crash":
                worker.crash()
            case "duplicate":
                self._duplicate(arg)
            case "raise_go":
                self._send("evented", "raise_event", "go", "go!")
            case "terminate":
                self._send("doomed", "terminate", "by the schedule")
            case "suspend_or_resume":
                self.suspended = not self.suspended
                self._send("evented", "suspend" if self.suspended else "resume")
            case "stall":
                # The worker takes work, runs its activities, then stalls past its leases.
                worker.lock_turns(limit=1 + arg % 3)
                worker.lock_tasks(limit=1 + arg % 2)
                while worker.run_task():
                    pass
                self.clock.advance(LEASE + 1.0)
            case "reuse":
                self._reuse(arg)
            case "ticker":
                verb = ("terminate", "suspend", "resume")[arg % 3]
                self._send("ticker", verb)
            case "abandon":
                held, worker.held_turns = worker.held_turns, []
                for item in held:
                    with contextlib.suppress(LeaseLost):  # taken over meanwhile
                        self.store.abandon_orchestration(
                            item.instance.instance_id, item.lease_token, retry_after=2.0 * (arg % 2)
                        )

    def _reuse(self, arg: int) -> None:
        """Give ``again`` a new run once its run ended (a purge and a start, or a start
        with ``replace_terminal``), or end its live run with a terminate."""
        record = self.store.get_instance("again")
        client = perdure.Client(self.store)
        if record is not None and not record.status.is_terminal:
            client.terminate("again", "to run it again")
            return
        self.again_n += 1
        if record is not None and arg % 2:
            client.purge("again")
        client.start(again, self.again_n, instance_id="again", replace_terminal=True)

    def _send(self, instance_id: str, verb: str, *args: Any) -> None:
        """A client call to a live instance (nothing once it ended)."""
        record = self.store.get_instance(instance_id)
        if record is not None and not record.status.is_terminal:
            getattr(perdure.Client(self.store), verb)(instance_id, *args)

    def _duplicate(self, arg: int) -> None:
        """Deliver again a completion that is already in some history (at-least-once)."""
        found = []
        for record in all_instances(self.store):
            for execution in range(1, record.execution_id + 1):  # ended executions too
                history = [r.event for r in self.store.get_history(record.instance_id, execution_id=execution)]
                run = next((e.run_id for e in history if isinstance(e, ExecutionStarted)), None)
                for event in history:
                    if isinstance(event, (ActivityCompleted, TimerFired, SubOrchestrationCompleted)):
                        found.append(Message(record.instance_id, event, execution_id=execution, run_id=run))
        if found:
            self.store.enqueue_messages([found[arg % len(found)]])

    def check_step(self) -> list[str]:
        """Invariants that hold after every step: nothing waits unseen (3, 8), and a
        terminal instance never changes again (5)."""
        out = []
        for record in all_instances(self.store):
            out += waiting_violations(self.store, record)
            run = (record.instance_id, record.run_id)  # a new run of the id is not a change
            key = (record.status, record.output, record.execution_id, record.history_event_count)
            if run in self.frozen and self.frozen[run] != key:
                out.append(f"{record.instance_id!r} changed after it ended: {key}")
            if record.status.is_terminal:
                self.frozen.setdefault(run, key)
        return out

    def finish(self) -> list[str]:
        """Drain with the same workers (crashed first: what they held is lost) and check
        the final state."""
        for worker in self.workers:
            worker.crash()
        if not any(line.startswith("raise_go") for line in self.log):
            self._send("evented", "raise_event", "go", "go!")
        if self.suspended:
            self._send("evented", "resume")
        self._send("doomed", "terminate", "at the end")
        self._send("ticker", "terminate", "at the end")
        drain(self.workers, self.clock, max_rounds=400)
        again_state = self.store.get_instance("again")
        if again_state is not None and again_state.status is TERMINATED:
            self._reuse(0)  # its last run was ended by the schedule: one more, to completion
            drain(self.workers, self.clock, max_rounds=400)
        out = self.check_step()
        for record in all_instances(self.store):
            out += history_violations(self.store, record)
            out += settled_violations(self.store, record)
            if (record.status, record.output) not in expected(record, self.again_n):
                out.append(f"{record.instance_id!r} ended {record.status.value} with {record.output!r}")
        if not {r.instance_id for r in all_instances(self.store)} >= {*EXPECTED, "again"}:
            out.append("instances are missing")
        for worker in self.workers:
            errors = worker.stats().get("turns_engine_error")
            if errors:
                out.append(f"{worker.worker_id}: {errors} turns failed inside the engine")
        return out


def play(store: perdure.Store, clock: FakeClock, steps: list[tuple[int, int, int]]) -> Run:
    """Play ``steps`` on ``store`` and check after every step and at the end; raise
    ``AssertionError`` with the steps played so far on the first violation."""
    run = Run.start(store, clock)
    for op, w, arg in steps:
        run.step(op, w, arg)
        if OPS[op % len(OPS)] in WRITE_NOTHING:
            continue
        problems = run.check_step()
        if problems:
            raise AssertionError(_report(run, problems))
    problems = run.finish()
    if problems:
        raise AssertionError(_report(run, problems))
    return run


def _report(run: Run, problems: list[str]) -> str:
    return "invariants violated:\n  " + "\n  ".join(problems) + "\nafter steps:\n  " + "\n  ".join(run.log)
