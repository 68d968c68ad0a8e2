"""Instance ids: validation of user ids and generation of child ids (invariant 4)."""

from __future__ import annotations

from perdure.errors import InvalidInstanceIdError

MAX_INSTANCE_ID_LENGTH = 256
CHILD_MARKER = "::sub::"
CHILD_PREFIX = "sub::"


def validate_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` if a user may choose it, else raise :class:`InvalidInstanceIdError`.

    Rules: a non-empty string of at most 256 characters without control characters, not
    containing the reserved child marker ``::sub::`` and not starting with ``sub::`` (those
    shapes belong to ids perdure generates for sub-orchestrations, seeds/001).
    """
    if not isinstance(instance_id, str):
        raise InvalidInstanceIdError(f"instance id must be a string, got {type(instance_id).__name__}")
    if not instance_id:
        raise InvalidInstanceIdError("instance id must not be empty")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceIdError(
            f"instance id is {len(instance_id)} characters long; the limit is {MAX_INSTANCE_ID_LENGTH}"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in instance_id):
        raise InvalidInstanceIdError(f"instance id {instance_id!r} contains a control character")
    if CHILD_MARKER in instance_id or instance_id.startswith(CHILD_PREFIX):
        raise InvalidInstanceIdError(
            f"instance id {instance_id!r} uses the reserved sub-orchestration marker "
            f"({CHILD_MARKER!r} or a leading {CHILD_PREFIX!r}); choose another id"
        )
    return instance_id


def child_instance_id(parent_id: str, run_id: str | None, execution_id: int, task_id: int) -> str:
    """The id generated for a sub-orchestration started without an explicit id.

    ``{parent}::sub::{run}.{execution}.{task}``, where ``run`` is the first 8 characters of
    the parent's run token: no two executions of one run, and no two runs of one parent id
    (a restart after a purge, a ``replace_terminal`` start), generate the same id, so a
    child left over from an earlier run is never mistaken for a new run's child
    (invariants 4 and 9). Runs recorded before runs had tokens (``run_id`` None) keep the
    ids they generated then: ``{parent}::sub::{task}`` in the first execution and
    ``{parent}::sub::{execution}_{task}`` after a continue-as-new.
    """
    if run_id is not None:
        return f"{parent_id}{CHILD_MARKER}{run_id[:8]}.{execution_id}.{task_id}"
    if execution_id <= 1:
        return f"{parent_id}{CHILD_MARKER}{task_id}"
    return f"{parent_id}{CHILD_MARKER}{execution_id}_{task_id}"
