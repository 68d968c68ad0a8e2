"""The lifecycle status of an orchestration instance."""

from __future__ import annotations

from enum import StrEnum


class OrchestrationStatus(StrEnum):
    """Where an instance is in its life. The last three are terminal: nothing changes after."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETED, FAILED and TERMINATED."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
)
