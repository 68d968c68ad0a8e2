"""Handed starts: plain starts run by an idle worker of the caller's process.

A plain ``Client.start`` in a process whose running worker serves the orchestration on the
same store object, while one of that worker's dispatch loops waits for work, hands the
start to that worker and waits. A round of the worker's, on one of its activity threads
(else on the waiting loop, which is then woken), creates the instance and runs its first
turn (with the local activities it chains, within ``local_activity_budget``) committed in
one transaction, as an eager start does (:meth:`perdure.store.base.Store.create_and_run`),
and starts the activity tasks that turn scheduled: the first on that same thread.
``start`` returns once that transaction committed, or raises what it raised. The start
costs one transaction where a queued start costs two (the start, then a worker's round),
and no orchestration code runs in the caller's thread (unlike ``eager=True``).
``Client.run`` does not wait for that transaction: its caller sleeps until the instance
ends, and is woken by the start only if it ended without running (it failed, or it was
given back: :data:`UNRUN_STARTS`).

At most one start per waiting loop is handed over at a time: a latency gain for a worker
with nothing to do. A busy worker takes new instances in batches with its rounds, and
starts made meanwhile are queued as usual, for whichever worker of the fleet is free. A
start the worker did not run (it stopped first) is made as a queued start by the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from perdure.store.base import NewInstance

#: The notifier topic signalled when a start handed over ends without running: it failed,
#: or it was given back. A caller that does not wait on :attr:`HandedStart.done` (``Client.run``
#: waits for the instance's end) also waits on this topic.
UNRUN_STARTS = "perdure.unrun-starts"


@dataclass(slots=True)
class HandedStart:
    """One start handed to a dispatch loop, and what became of it. ``unrun`` signals a
    notifier topic (:data:`UNRUN_STARTS`) if it ends without running."""

    instance: NewInstance
    replace_terminal: bool
    request_id: str | None
    unrun: Callable[[str], None] | None = None
    #: Set once the loop ran the start (``ran``), failed it (``error``) or gave it back.
    done: threading.Event = field(default_factory=threading.Event)
    ran: bool = False
    error: Exception | None = None

    def run(self, start: Callable[[HandedStart], None]) -> None:
        """Run the start with ``start`` on this thread and tell the caller."""
        try:
            start(self)
            self.ran = True
        except Exception as exc:  # the caller raises it
            self.error = exc
        finally:
            self._end()

    def give_back(self) -> None:
        """Tell the caller the start was not run (it then queues it)."""
        self._end()

    def _end(self) -> None:
        self.done.set()
        if not self.ran and self.unrun is not None:
            self.unrun(UNRUN_STARTS)

    def result(self) -> bool:
        """Wait for the loop; whether it ran the start (raises what the start raised)."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.ran


class HandedStarts:
    """The starts handed to a worker's dispatch loops, until one of them takes them.
    Thread-safe."""

    def __init__(self) -> None:
        self._starts: list[HandedStart] = []
        self._waiting = 0  # dispatch loops waiting for work
        self._running = 0  # starts taken and not finished
        self._lock = threading.Lock()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a dispatch loop's wait for work: starts may be handed over meanwhile."""
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    @property
    def waiting_loops(self) -> int:
        """How many dispatch loops wait for work now."""
        return self._waiting

    def offer(self, start: HandedStart) -> bool:
        """Hand ``start`` over if a dispatch loop waits for work and has not been handed one
        yet (nor is one it was handed still running: the loop waits while an activity
        thread runs it); False (nothing done) otherwise."""
        with self._lock:
            if len(self._starts) + self._running >= self._waiting:
                return False
            self._starts.append(start)
            return True

    @contextmanager
    def taken(self) -> Iterator[list[HandedStart]]:
        """Every start handed over so far, for a round to run or give back in the block; they
        count as handed until it ends."""
        with self._lock:
            starts, self._starts = self._starts, []
            self._running += len(starts)
        try:
            yield starts
        finally:
            with self._lock:
                self._running -= len(starts)
