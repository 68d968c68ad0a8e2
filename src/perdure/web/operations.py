"""The operations on one instance that the API and the dashboard both offer: one table, so
a new operation of the client (rewind, restart) is one line here, and becomes
``POST /api/v1/instances/{id}/<name>`` and a button with its confirmation."""

from __future__ import annotations

from collections.abc import Callable

from perdure.client import Client, InstanceState
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus as S


@frozen_record
class Operation:
    """``run(client, instance_id, reason)`` does it; ``offered(state)`` says whether the
    dashboard shows its button; ``confirm`` is the question asked first (``{id}`` is the
    instance id); ``danger`` styles it as destructive."""

    name: str
    label: str
    run: Callable[[Client, str, str | None], None]
    offered: Callable[[InstanceState], bool]
    confirm: str
    danger: bool = False


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "suspend",
            "Suspend",
            lambda c, iid, reason: c.suspend(iid, reason),
            lambda s: s.status in (S.PENDING, S.RUNNING),
            "Suspend {id}? Messages that arrive are kept and applied when it is resumed.",
        ),
        Operation(
            "resume",
            "Resume",
            lambda c, iid, reason: c.resume(iid, reason),
            lambda s: s.status is S.SUSPENDED,
            "Resume {id}? Messages kept while it was suspended are applied in arrival order.",
        ),
        Operation(
            "terminate",
            "Terminate",
            lambda c, iid, reason: c.terminate(iid, reason),
            lambda s: not s.is_terminal,
            "Terminate {id} and its unfinished sub-orchestrations? This cannot be undone.",
            danger=True,
        ),
        Operation(
            "rewind",
            "Rewind",
            lambda c, iid, reason: c.rewind(iid, reason),
            lambda s: s.status is S.FAILED,
            "Rewind {id}? The turn that failed is undone and the failed work runs again on the code the "
            "workers run now; everything before it is kept.",
        ),
        Operation(
            "restart",
            "Restart",
            lambda c, iid, reason: c.restart(iid) and None,
            lambda s: s.is_terminal,
            "Restart {id}? A new run starts with the input of its latest execution; the old run's history stays.",
        ),
    )
}
