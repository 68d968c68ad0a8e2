"""perdure: durable orchestrations for Python.

Write orchestrations as ``async def`` functions; perdure records every step as an
event-sourced history so they survive crashes, restarts and deploys, resuming by replay.
Embedded on SQLite with zero setup; scales out on PostgreSQL.
"""

from perdure.client import AsyncClient, Client, InstancePage, InstanceState
from perdure.core.context import OrchestrationContext
from perdure.core.failure import Failure
from perdure.core.registry import App
from perdure.core.retry import RetryPolicy
from perdure.core.status import OrchestrationStatus
from perdure.core.tasks import Task
from perdure.diagnosis import Diagnosis, Finding, FleetReport
from perdure.errors import (
    ActivityError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceStateError,
    InvalidInputError,
    InvalidInstanceIdError,
    LeaseLost,
    NonDeterminismError,
    OrchestrationError,
    PerdureError,
    RegistrationError,
    SchemaVersionError,
    SerializationError,
    StoreError,
    StoreUnavailableError,
    SubOrchestrationError,
    TaskTimeoutError,
)
from perdure.instance_filter import InstanceFilter
from perdure.runtime.activity_info import ActivityInfo, activity_info
from perdure.runtime.worker import Worker
from perdure.store import Store, open_store

__version__ = "0.1.0"

__all__ = [
    "ActivityError",
    "ActivityInfo",
    "App",
    "AsyncClient",
    "Client",
    "Diagnosis",
    "Failure",
    "Finding",
    "FleetReport",
    "InstanceExistsError",
    "InstanceFilter",
    "InstanceNotFoundError",
    "InstancePage",
    "InstanceState",
    "InstanceStateError",
    "InvalidInputError",
    "InvalidInstanceIdError",
    "LeaseLost",
    "NonDeterminismError",
    "OrchestrationContext",
    "OrchestrationError",
    "OrchestrationStatus",
    "PerdureError",
    "RegistrationError",
    "RetryPolicy",
    "SchemaVersionError",
    "SerializationError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "SubOrchestrationError",
    "Task",
    "TaskTimeoutError",
    "Worker",
    "__version__",
    "activity_info",
    "open_store",
]
