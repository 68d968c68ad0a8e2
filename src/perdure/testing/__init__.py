"""Testing helpers shipped with perdure.

- :class:`FakeClock`, :class:`FailAt`, :class:`InjectedFault` (``perdure.testing.faults``):
  control time and inject crashes into a store's transactions.
- ``perdure.testing.conformance``: the suite every store implementation must pass (needs
  pytest); import its tests into a test module that provides a ``store`` fixture.
"""

from perdure.testing.faults import FailAt, FakeClock, InjectedFault

__all__ = ["FailAt", "FakeClock", "InjectedFault"]
