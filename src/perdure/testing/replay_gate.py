"""The replay gate as a test assertion: :func:`replay` checks that your code still
reproduces exported histories (``perdure export ID > h.json``), inside pytest or any test
runner."""

from __future__ import annotations

from os import PathLike
from typing import Any

from perdure.core.registry import App
from perdure.errors import InvalidInputError
from perdure.replay import ExecutionHistory, ExportedHistory, ReplayReport, replay_histories

History = str | PathLike[str] | dict[str, Any] | ExportedHistory | ExecutionHistory


class ReplayMismatch(AssertionError):
    """The code would not reproduce a history. The message is the report of
    ``perdure replay-check``; :attr:`report` holds every result."""

    def __init__(self, report: ReplayReport) -> None:
        super().__init__(report.text())
        self.report = report


def replay(app: App, *histories: History) -> ReplayReport:
    """Replay each history against ``app``'s code, offline (only the orchestration code
    runs; no activity is called). A history is the path of an export file, its parsed JSON
    (a dict), an :class:`~perdure.replay.ExportedHistory` or one
    :class:`~perdure.replay.ExecutionHistory`. Returns the
    :class:`~perdure.replay.ReplayReport` when every one replays; raises
    :class:`ReplayMismatch` (an ``AssertionError``) with the report otherwise, and
    :class:`~perdure.errors.InvalidInputError` for something that is not a history."""
    if not isinstance(app, App):
        raise InvalidInputError(f"replay needs a perdure.App first, got {type(app).__name__}")
    if not histories:
        raise InvalidInputError("replay needs at least one history: replay(app, 'h.json')")
    report = replay_histories(app, [e for h in histories for e in _executions(h)])
    if not report.ok:
        raise ReplayMismatch(report)
    return report


def _executions(history: History) -> tuple[ExecutionHistory, ...]:
    if isinstance(history, ExecutionHistory):
        return (history,)
    if isinstance(history, ExportedHistory):
        return history.executions
    if isinstance(history, dict):
        return ExportedHistory.from_dict(history).executions
    if isinstance(history, (str, PathLike)):
        return ExportedHistory.load(history).executions
    raise InvalidInputError(
        f"a history is a file path, an export dict, an ExportedHistory or an ExecutionHistory, "
        f"not {type(history).__name__}"
    )
