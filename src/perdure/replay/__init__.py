"""The replay gate: replay stored or exported histories against an app's code, offline,
and report every execution the code would not reproduce.

- :mod:`perdure.replay.histories`: what to check, read through a :class:`perdure.Client`
  (:func:`stored_histories`, :func:`export_history`) or from an export file
  (:class:`ExportedHistory`, the documented ``perdure-history`` JSON format).
- :mod:`perdure.replay.check`: :func:`replay_histories` and :func:`replay_execution`
  replay them and return a :class:`ReplayReport` of :class:`ReplayResult`.

``perdure replay-check`` and ``perdure export`` are the command-line front end;
:func:`perdure.testing.replay` the pytest helper.
"""

from perdure.replay.check import (
    Problem,
    ReplayReport,
    ReplayResult,
    registration_for,
    replay_execution,
    replay_histories,
    replayed_part,
)
from perdure.replay.histories import (
    HISTORY_FORMAT,
    HISTORY_FORMAT_VERSION,
    ExecutionHistory,
    ExportedHistory,
    export_history,
    stored_histories,
)

__all__ = [
    "HISTORY_FORMAT",
    "HISTORY_FORMAT_VERSION",
    "ExecutionHistory",
    "ExportedHistory",
    "Problem",
    "ReplayReport",
    "ReplayResult",
    "export_history",
    "registration_for",
    "replay_execution",
    "replay_histories",
    "replayed_part",
    "stored_histories",
]
