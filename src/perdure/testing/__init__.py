"""Testing helpers shipped with perdure.

- :class:`Environment`, :class:`RunResult` (``perdure.testing.environment``): unit-test
  your orchestrations on an in-memory store with virtual time and replaceable activities;
  the ``perdure_env`` pytest fixture (``perdure.testing.pytest_plugin``) gives you one.
- :class:`FakeClock`, :class:`FailAt`, :class:`InjectedFault` (``perdure.testing.faults``):
  control time and inject crashes into a store's transactions.
- :class:`FaultyStore`, :class:`Fault` (``perdure.testing.faulty_store``): a store wrapper
  that raises, delays, kills the process or runs a callback at every write point (before
  the transaction, inside it, after the commit); ``python -m perdure.testing.fault_worker``
  runs a worker on it in a subprocess.
- :class:`StepWorker`, :func:`drain` (``perdure.testing.stepper``): real workers driven one
  step at a time, without threads, to force interleavings.
- :func:`assert_invariants`, :func:`violations` (``perdure.testing.invariants``): check a
  store's state against perdure's invariants.
- :func:`replay`, :class:`ReplayMismatch` (``perdure.testing.replay_gate``): assert that
  your code still replays exported histories (the replay gate in a test).
- ``perdure.testing.conformance``: the suite every store implementation must pass (needs
  pytest); import its tests into a test module that provides a ``store`` fixture.
"""

from perdure.testing.environment import Environment, RunResult
from perdure.testing.faults import FailAt, FakeClock, InjectedFault
from perdure.testing.faulty_store import Fault, FaultyStore, WriteCall, write_points
from perdure.testing.invariants import assert_invariants, violations
from perdure.testing.replay_gate import ReplayMismatch, replay
from perdure.testing.stepper import StepWorker, drain

__all__ = [
    "Environment",
    "FailAt",
    "FakeClock",
    "Fault",
    "FaultyStore",
    "InjectedFault",
    "ReplayMismatch",
    "RunResult",
    "StepWorker",
    "WriteCall",
    "assert_invariants",
    "drain",
    "replay",
    "violations",
    "write_points",
]
