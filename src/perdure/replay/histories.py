"""The histories the replay gate checks: read from a store through the client, or from an
exported file.

The export format (``perdure export ID > h.json``) is one JSON object per instance::

    {
      "format": "perdure-history",
      "version": 1,
      "instance_id": "order-7",
      "name": "order_saga",
      "run_id": "9f1c...",
      "status": "RUNNING",
      "executions": [
        {"execution_id": 1, "events": [{"v": 1, "kind": "TurnStarted", "timestamp": 1.5}, ...]}
      ]
    }

``events`` are in the stored event encoding (:func:`perdure.core.history.encode_event`),
oldest first. ``version`` is this format's version: a reader refuses a newer one, and a
newer perdure keeps reading version 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from perdure.client import Client, InstancePage, InstanceState
from perdure.core.history import EventDecodeError, HistoryEvent, decode_event, encode_event
from perdure.core.records import frozen_record
from perdure.core.status import TERMINAL_STATUSES, OrchestrationStatus
from perdure.errors import InstanceNotFoundError, InvalidInputError
from perdure.instance_filter import InstanceFilter

HISTORY_FORMAT = "perdure-history"
HISTORY_FORMAT_VERSION = 1

LIVE_STATUSES = frozenset(OrchestrationStatus) - TERMINAL_STATUSES
_PAGE = 500


@frozen_record
class ExecutionHistory:
    """One execution's history, to replay: whose it is, its events (oldest first) and where
    it was read (``source``: ``"store"`` or a file name). ``error`` says why the events
    could not be decoded (then ``events`` is empty)."""

    instance_id: str
    name: str
    execution_id: int
    events: tuple[HistoryEvent, ...]
    run_id: str = ""
    status: OrchestrationStatus | None = None
    source: str = "store"
    error: str | None = None


@frozen_record
class ExportedHistory:
    """An instance's histories in the export format: :meth:`to_dict` is the JSON document
    ``perdure export`` writes, :meth:`from_dict` reads one back (``source`` names it in
    errors and reports)."""

    instance_id: str
    name: str
    run_id: str
    status: OrchestrationStatus | None
    executions: tuple[ExecutionHistory, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (format ``perdure-history``, version 1)."""
        return {
            "format": HISTORY_FORMAT,
            "version": HISTORY_FORMAT_VERSION,
            "instance_id": self.instance_id,
            "name": self.name,
            "run_id": self.run_id,
            "status": None if self.status is None else self.status.value,
            "executions": [
                {"execution_id": e.execution_id, "events": [encode_event(event) for event in e.events]}
                for e in self.executions
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ExportedHistory:
        """Read an export document. A document that is not one (another format, a newer
        version, a missing field) raises :class:`~perdure.errors.InvalidInputError` naming
        ``source``; events that cannot be decoded are kept as that execution's ``error``."""

        def bad(what: str) -> InvalidInputError:
            return InvalidInputError(f"{source}: {what}")

        if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
            raise bad(
                f'not a perdure history export (no "format": "{HISTORY_FORMAT}"); write one with perdure export ID'
            )
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise bad(f"the format version must be a positive integer, got {version!r}")
        if version > HISTORY_FORMAT_VERSION:
            raise bad(
                f"written in format version {version}, newer than the version {HISTORY_FORMAT_VERSION} "
                f"this perdure reads; upgrade perdure"
            )
        instance_id, name, run_id = (data.get(key, "") for key in ("instance_id", "name", "run_id"))
        for key, value in (("instance_id", instance_id), ("name", name)):
            if not isinstance(value, str) or not value:
                raise bad(f"{key} must be a non-empty string, got {value!r}")
        if not isinstance(run_id, str):
            raise bad(f"run_id must be a string, got {run_id!r}")
        status = _status(data.get("status"), bad)
        executions = data.get("executions")
        if not isinstance(executions, list) or not executions:
            raise bad("executions must be a non-empty list")
        read = []
        for position, execution in enumerate(executions):
            number = execution.get("execution_id") if isinstance(execution, dict) else None
            events = execution.get("events") if isinstance(execution, dict) else None
            if isinstance(number, bool) or not isinstance(number, int) or number < 1 or not isinstance(events, list):
                raise bad(
                    f"executions[{position}] must be an object with an execution_id (1, 2, ...) and a list of events"
                )
            decoded, error = _decode(events, number)
            read.append(ExecutionHistory(instance_id, name, number, decoded, run_id, status, source, error))
        return cls(instance_id, name, run_id, status, tuple(read))

    @classmethod
    def load(cls, path: str | PathLike[str]) -> ExportedHistory:
        """Read an export file (its name is the ``source``)."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source!r}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source)


def export_history(client: Client, instance_id: str, *, all_executions: bool = False) -> ExportedHistory:
    """The instance's current execution's history (with ``all_executions``, every execution
    still stored, oldest first), read through ``client``. Raises
    :class:`~perdure.errors.InstanceNotFoundError` for an unknown id."""
    state = client.get(instance_id)
    if state is None:
        raise InstanceNotFoundError(f"no instance with id {instance_id!r}")
    numbers = range(1, state.execution_id + 1) if all_executions else [state.execution_id]
    executions = []
    for number in numbers:
        events = tuple(client.history(instance_id, execution_id=number))
        if events or number == state.execution_id:  # earlier ones may have been trimmed by retention
            executions.append(ExecutionHistory(instance_id, state.name, number, events, state.run_id, state.status))
    return ExportedHistory(instance_id, state.name, state.run_id, state.status, tuple(executions))


def stored_histories(
    client: Client, filter: InstanceFilter | None = None, *, include_terminal: int = 0
) -> Iterator[ExecutionHistory]:
    """The current executions to check, read through ``client``: those of every instance
    matching ``filter`` (without a status in it: the live ones, PENDING, RUNNING or
    SUSPENDED), then, with ``include_terminal`` N, the N most recently updated terminal
    instances of each orchestration name that match the filter's other fields."""
    if isinstance(include_terminal, bool) or not isinstance(include_terminal, int) or include_terminal < 0:
        raise InvalidInputError(f"include_terminal must be an integer >= 0, got {include_terminal!r}")
    found = filter or InstanceFilter()
    seen: set[str] = set()
    cursor = None
    while True:
        page = _list(client, found, found.statuses or LIVE_STATUSES, limit=_PAGE, cursor=cursor)
        for state in page.items:
            seen.add(state.instance_id)
            yield from _current(client, state)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    if not include_terminal:
        return
    names = sorted({c.name for c in client.instance_counts() if c.status.is_terminal and found.name in (None, c.name)})
    for name in names:
        page = _list(client, found, TERMINAL_STATUSES, name=name, limit=include_terminal, sort="updated")
        for state in page.items:
            if state.instance_id not in seen:
                yield from _current(client, state)


def _list(
    client: Client,
    found: InstanceFilter,
    statuses: frozenset[OrchestrationStatus],
    *,
    name: str | None = None,
    limit: int,
    cursor: str | None = None,
    sort: str = "created",
) -> InstancePage:
    return client.list(
        status=sorted(statuses),
        name=name or found.name,
        prefix=found.prefix,
        created_after=found.created_after,
        created_before=found.created_before,
        limit=limit,
        cursor=cursor,
        sort=sort,
    )


def _current(client: Client, state: InstanceState) -> Iterator[ExecutionHistory]:
    """The current execution's history of the listed instance (as listed: a later execution
    started meanwhile is not this one); nothing if it was purged since."""
    iid = state.instance_id

    def history(events: tuple[HistoryEvent, ...], error: str | None = None) -> ExecutionHistory:
        return ExecutionHistory(iid, state.name, state.execution_id, events, state.run_id, state.status, error=error)

    try:
        yield history(tuple(client.history(iid, execution_id=state.execution_id)))
    except EventDecodeError as exc:
        yield history((), str(exc))
    except (InstanceNotFoundError, InvalidInputError):
        return  # purged (or purged and started again) since it was listed


def _decode(events: list[Any], execution_id: int) -> tuple[tuple[HistoryEvent, ...], str | None]:
    decoded = []
    for index, data in enumerate(events):
        try:
            if not isinstance(data, dict):
                raise EventDecodeError(f"not a JSON object: {str(data)[:200]}")
            decoded.append(decode_event(data))
        except EventDecodeError as exc:
            return (), f"history event {index} of execution {execution_id} cannot be decoded: {exc}"
    return tuple(decoded), None


def _status(value: Any, bad: Any) -> OrchestrationStatus | None:
    if value is None:
        return None
    try:
        return OrchestrationStatus(value)
    except ValueError:
        raise bad(f"unknown status {value!r}") from None
