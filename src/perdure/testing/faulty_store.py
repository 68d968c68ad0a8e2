"""A store wrapper that injects faults at every write point of the Store interface.

Each write method of :class:`~perdure.store.base.Store` has three *write points*:

- ``"<method>:before"``: before the call reaches the store (nothing written yet);
- ``"<method>:inside"``: inside its transaction, just before COMMIT (through the store's
  ``fault_hook``; a fault there rolls the transaction back);
- ``"<method>:after"``: after the commit, before the caller sees the result (everything
  written, the caller does not know).

At a point a :class:`Fault` can raise :class:`~perdure.testing.faults.InjectedFault`, delay,
kill the process with ``SIGKILL`` (a crash: no ``finally`` block, no rollback, no flush),
or call any function (for example one that waits on a ``threading.Event``, to hold a
thread at that point while a test arranges an interleaving).

Faults can also be given as text (``"commit_turns:after@3=kill"``: at the third time that
point is reached, kill the process), so a worker subprocess can be configured from its
command line or the ``PERDURE_FAULTS`` environment variable (see
:mod:`perdure.testing.fault_worker`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from perdure.store.base import OrchestrationWorkItem, Store, TurnCommit
from perdure.testing.faults import InjectedFault

#: Every method of the Store interface that writes.
WRITE_METHODS: tuple[str, ...] = (
    "create_instance",
    "create_instances",  # its transaction reports the "create_instance:inside" point
    "enqueue_messages",
    "purge_instances",
    "purge_where",
    "rewind",
    "reset",
    "lock_orchestrations",
    "commit_turns",
    "run_round",
    "create_and_run",
    "abandon_orchestration",
    "renew_orchestration_lease",
    "lock_activities",
    "complete_activities",
    "renew_activity_leases",
    "abandon_activity",
    "heartbeat",
    "remove_worker",
    "sweep",
)
PHASES: tuple[str, ...] = ("before", "inside", "after")
ACTIONS: tuple[str, ...] = ("raise", "kill", "delay")
ENV_VAR = "PERDURE_FAULTS"


def write_points(methods: Iterable[str] = WRITE_METHODS) -> list[str]:
    """Every ``"<method>:<phase>"`` point of ``methods``."""
    return [f"{m}:{p}" for m in methods for p in PHASES]


@dataclass
class WriteCall:
    """The write call a point belongs to, for :attr:`Fault.when`: the method, its
    arguments, and for ``run_round`` (its request's) and ``create_and_run`` (its
    callback's, known from the ``inside`` point on) the turn commits."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    commits: list[TurnCommit] = field(default_factory=list)

    def arg(self, index: int, name: str) -> Any:
        """The argument passed at position ``index`` or as ``name``."""
        return self.args[index] if len(self.args) > index else self.kwargs.get(name)


@dataclass(frozen=True)
class Fault:
    """What to do at one write point.

    ``action`` is ``"raise"`` (:class:`InjectedFault`), ``"kill"`` (``SIGKILL`` this
    process), ``"delay"`` (sleep ``seconds``) or a callable taking the point. The fault
    fires at the ``nth`` time the point is reached (1 = the first) and the ``times - 1``
    following ones (``times=None``: every time from the ``nth`` on). With ``when``, only
    the arrivals whose :class:`WriteCall` it accepts count (for example "a round that
    carries activity completions").
    """

    point: str
    action: str | Callable[[str], None] = "raise"
    nth: int = 1
    times: int | None = 1
    seconds: float = 0.0
    when: Callable[[WriteCall], bool] | None = None

    def __post_init__(self) -> None:
        method, _, phase = self.point.partition(":")
        if method not in WRITE_METHODS or phase not in PHASES:
            raise ValueError(
                f"unknown write point {self.point!r}; expected <method>:<phase> with a method "
                f"of {', '.join(WRITE_METHODS)} and a phase of {', '.join(PHASES)}"
            )
        if isinstance(self.action, str) and self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {ACTIONS}")
        if self.nth < 1 or (self.times is not None and self.times < 1):
            raise ValueError(f"nth and times must be at least 1 in {self!r}")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Read ``"<method>:<phase>[@nth][*times][=action[:seconds]]"``, for example
        ``"commit_turns:after@3=kill"``, ``"lock_activities:inside*2"`` (raise the first two
        times) or ``"complete_activities:before=delay:0.5"``. ``*0`` means every time."""
        text, _, action = spec.strip().partition("=")
        seconds = 0.0
        if action.startswith("delay:"):
            action, seconds = "delay", float(action.split(":", 1)[1])
        times: int | None = 1
        if "*" in text:
            text, count = text.split("*", 1)
            times = int(count) or None
        nth = 1
        if "@" in text:
            text, at = text.split("@", 1)
            nth = int(at)
        return cls(text, action or "raise", nth, times, seconds)

    def applies(self, hit: int) -> bool:
        """Whether the ``hit``-th arrival at the point triggers this fault."""
        return hit >= self.nth and (self.times is None or hit < self.nth + self.times)


class FaultyStore:
    """Wraps ``inner`` (any :class:`~perdure.store.base.Store`) and runs ``faults`` at its
    write points. Everything else (reads, ``url``, ``clock``, ``notifier``) is the inner
    store's.

    ``hits`` counts every arrival at every write point (faulty or not) and ``fired`` lists
    the points where a fault fired, in order; a fault-free ``FaultyStore`` is a probe for
    which points a workload reaches and how often. ``on_point`` (if given) is called at every
    point before the faults are looked at.
    """

    def __init__(
        self,
        inner: Store,
        faults: Iterable[Fault | str] = (),
        *,
        on_point: Callable[[str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.faults = [f if isinstance(f, Fault) else Fault.parse(f) for f in faults]
        self.on_point = on_point
        self.hits: Counter[str] = Counter()
        self.fired: list[str] = []
        self._lock = threading.Lock()
        self._matched: Counter[int] = Counter()
        self._calls = threading.local()
        self._chained = getattr(inner, "fault_hook", None)
        inner.fault_hook = self._inside  # type: ignore[misc]

    @classmethod
    def from_env(cls, inner: Store, extra: Iterable[Fault | str] = (), variable: str = ENV_VAR) -> FaultyStore:
        """A wrapper with the faults listed (comma-separated specs) in ``$variable``, then
        ``extra``."""
        specs = [s for s in os.environ.get(variable, "").split(",") if s.strip()]
        return cls(inner, [*specs, *extra])

    def __getattr__(self, name: str) -> Any:
        if name in WRITE_METHODS:
            return self._wrap(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r}, {[f.point for f in self.faults]})"

    # -- the points --

    def point(self, point: str) -> None:
        """Arrive at ``point``: count it and run the faults that apply."""
        call = getattr(self._calls, "current", None)
        with self._lock:
            self.hits[point] += 1
            due = []
            for index, fault in enumerate(self.faults):
                if fault.point != point:
                    continue
                if fault.when is None:
                    hit = self.hits[point]
                elif call is not None and fault.when(call):
                    self._matched[index] += 1
                    hit = self._matched[index]
                else:
                    continue
                if fault.applies(hit):
                    due.append(fault)
            if due:
                self.fired.append(point)
        if self.on_point is not None:
            self.on_point(point)
        for fault in due:
            _run(fault, point)

    def _inside(self, point: str) -> None:
        if self._chained is not None:
            self._chained(point)
        self.point(point)

    def _wrap(self, method: str) -> Callable[..., Any]:
        target = getattr(self.inner, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            current = WriteCall(method, args, kwargs)
            if method == "run_round":
                current.commits = list(current.arg(0, "request").commits)
            elif method == "create_and_run":
                kwargs = {**kwargs, "run_turns": _recording(kwargs["run_turns"], current)}
            self._calls.current = current
            try:
                self.point(f"{method}:before")
                result = target(*args, **kwargs)
                self.point(f"{method}:after")
            finally:
                self._calls.current = None
            return result

        call.__name__ = method
        call.__doc__ = f"The inner store's ``{method}`` with fault points around it."
        return call


def _recording(
    run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]], call: WriteCall
) -> Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]]:
    def run(items: list[OrchestrationWorkItem]) -> Sequence[TurnCommit]:
        commits = run_turns(items)
        call.commits = list(commits)
        return commits

    return run


def _run(fault: Fault, point: str) -> None:
    action = fault.action
    if callable(action):
        action(point)
    elif action == "raise":
        raise InjectedFault(f"fault injected at {point}")
    elif action == "delay":
        time.sleep(fault.seconds)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # pragma: no cover - the signal is not deliverable only if ignored
