"""Every exception perdure raises, in one tree.

::

    PerdureError
    ├── OrchestrationError            raised *inside* an orchestrator for a failed task
    │   ├── ActivityError             an activity failed (retries exhausted or not retryable)
    │   ├── SubOrchestrationError     a sub-orchestration failed, was terminated or could not start
    │   └── TaskTimeoutError          a wait with a deadline passed it
    ├── NonDeterminismError           replay did not reproduce the recorded commands
    ├── InvalidInputError (ValueError)     bad input caught before anything is stored
    │   ├── InvalidInstanceIdError
    │   ├── SerializationError        a value is not JSON-serialisable / too large
    │   └── RegistrationError         duplicate or unknown orchestration / activity name
    ├── InstanceNotFoundError (LookupError)
    ├── InstanceExistsError           a start reused the id of a non-terminal instance
    ├── InstanceStateError            an operation the instance's status does not allow
    └── StoreError                    the store failed or refused
        ├── LeaseLost                 a write under a lease whose token no longer holds
        ├── SchemaVersionError        the database schema is newer than this perdure
        └── StoreUnavailableError     the store cannot be reached or opened

``failure`` on the orchestration errors is a :class:`perdure.core.failure.Failure`: the
original error's type, message, traceback text and, for children, the cause chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perdure.core.failure import Failure


class PerdureError(Exception):
    """Base of every error perdure raises."""


class OrchestrationError(PerdureError):
    """A task awaited by an orchestrator failed; ``failure`` holds the details as data."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure

    @property
    def error_type(self) -> str | None:
        """The type name of the original error, e.g. ``"ValueError"``."""
        return self.failure.type if self.failure else None

    @property
    def error_message(self) -> str | None:
        """The original error's message."""
        return self.failure.message if self.failure else None

    @property
    def traceback_text(self) -> str | None:
        """The original error's formatted traceback, if one was captured."""
        return self.failure.traceback if self.failure else None


class ActivityError(OrchestrationError):
    """An activity failed and its retry policy (if any) gave up."""


class SubOrchestrationError(OrchestrationError):
    """A sub-orchestration failed, was terminated, or could not be started."""


class TaskTimeoutError(OrchestrationError):
    """A wait with a timeout (for example ``wait_for_event``) reached its deadline."""


class NonDeterminismError(PerdureError):
    """Replaying the history did not reproduce what the code does now.

    The message names the history position, what the history recorded, what the code did,
    and the remedy (a patch or a new version, then a rewind). Raised by the
    replay executor, the same facts are fields too (``None`` where not known): the
    ``instance_id``, the ``orchestration`` name, the ``execution_id``, the history
    ``position`` (index in the execution's history), what the history ``recorded`` there
    and what the code ``produced`` now (short descriptions, as in the message).
    """

    def __init__(
        self,
        message: str,
        *,
        instance_id: str | None = None,
        orchestration: str | None = None,
        execution_id: int | None = None,
        position: int | None = None,
        recorded: str | None = None,
        produced: str | None = None,
    ) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.orchestration = orchestration
        self.execution_id = execution_id
        self.position = position
        self.recorded = recorded
        self.produced = produced


class InvalidInputError(PerdureError, ValueError):
    """Input rejected before anything was stored."""


class InvalidInstanceIdError(InvalidInputError):
    """An instance id is empty, too long, has control characters or uses the reserved marker."""


class SerializationError(InvalidInputError):
    """A value is not JSON-serialisable, or is larger than the configured limit."""


class RegistrationError(InvalidInputError):
    """An orchestration or activity name is registered twice, or is not registered."""


class InstanceNotFoundError(PerdureError, LookupError):
    """No instance has the given id."""


class InstanceExistsError(PerdureError):
    """An instance with this id exists and is not terminal (or replacing was not asked for)."""


class InstanceStateError(PerdureError):
    """The operation is not allowed in the instance's current status (e.g. purge a running one)."""


class StoreError(PerdureError):
    """The store failed or refused an operation."""


class LeaseLost(StoreError):
    """A write was made under a lease that no longer holds: expired, taken over, or released.

    Nothing of the refused write was stored.
    """


class SchemaVersionError(StoreError):
    """The database was created by a newer perdure; upgrade perdure to open it."""


class StoreUnavailableError(StoreError):
    """The store cannot be opened or reached."""


def describe(value: Any, limit: int = 80) -> str:
    """A short ``repr`` for error messages, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
