"""The ``perdure`` command: a thin shell over :class:`perdure.Client` and the worker.

Errors are one line on stderr and an exit code, never a traceback (see
:mod:`perdure.cli.base` for the codes). Commands: :mod:`~perdure.cli.instances` (start,
result, status, history, raise, list), :mod:`~perdure.cli.control` (terminate, suspend,
resume, purge, one by one or ``--query``), :mod:`~perdure.cli.running` (worker, init,
demo, diagnose), :mod:`~perdure.cli.replay` (replay-check, export: the replay gate),
:mod:`~perdure.cli.web` (web: the HTTP API and dashboard).
"""

from perdure.cli import control, instances, replay, running, web
from perdure.cli.apps import load_app
from perdure.cli.main import cli, main

__all__ = ["cli", "control", "instances", "load_app", "main", "replay", "running", "web"]
