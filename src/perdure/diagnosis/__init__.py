"""Diagnosis: "why is this orchestration not finishing?", answered from the store.

The incident playbook for stuck orchestrations (``seeds/002``), built in. Read-only
analysis over the :class:`~perdure.store.base.Store` interface and the core types; it
never imports the runtime.

- :func:`diagnose` examines one instance and returns a :class:`Diagnosis`: ranked
  :class:`Finding` objects (``code``, ``summary``, ``evidence``, ``mitigation``), the
  verdict first.
- :func:`diagnose_all` returns the :class:`FleetReport`: counts, the age distribution of
  running instances, workers and queues, and the instances without progress grouped by
  verdict, summed up as the playbook's signal table.
- :class:`Thresholds` holds every limit (history size, backlog age, slow activity, far
  timer, no-progress time, worker liveness).

``perdure.Client.diagnose`` / ``diagnose_all`` and ``perdure diagnose [IID] [--json]`` are
the usual entry points.
"""

from perdure.diagnosis.fleet import diagnose_all
from perdure.diagnosis.instance import Diagnoser, diagnose
from perdure.diagnosis.live import normalized_event_name
from perdure.diagnosis.model import (
    LIVE_RANK,
    NOT_STUCK,
    RANK,
    TERMINAL_RANK,
    Code,
    Diagnosis,
    Finding,
    FleetReport,
    Signal,
    StalledInstance,
    Thresholds,
)
from perdure.diagnosis.render import render_diagnosis, render_fleet

__all__ = [
    "LIVE_RANK",
    "NOT_STUCK",
    "RANK",
    "TERMINAL_RANK",
    "Code",
    "Diagnoser",
    "Diagnosis",
    "Finding",
    "FleetReport",
    "Signal",
    "StalledInstance",
    "Thresholds",
    "diagnose",
    "diagnose_all",
    "normalized_event_name",
    "render_diagnosis",
    "render_fleet",
]
