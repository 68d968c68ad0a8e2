"""The deterministic core: history, commands, the orchestration context and the replay
executor. Pure: no I/O, no clock, no threads, no asyncio."""

from perdure.core.context import OrchestrationContext
from perdure.core.executor import OrchestrationExecutor, execute
from perdure.core.retry import RetryPolicy
from perdure.core.tasks import Task

__all__ = ["OrchestrationContext", "OrchestrationExecutor", "RetryPolicy", "Task", "execute"]
