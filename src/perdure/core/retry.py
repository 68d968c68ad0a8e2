"""Retry policies for activities and sub-orchestrations: validation and pure delay maths.

The waiting itself is done with durable timers by :class:`perdure.core.tasks.RetryableTask`;
this module only decides *whether* and *how long*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

from perdure.core.failure import Failure
from perdure.core.records import frozen_record
from perdure.errors import InvalidInputError

# Longest delay a policy ever produces, so exponential growth stays a valid timedelta.
MAX_RETRY_DELAY = timedelta(days=3650)


def qualified_name(kind: type[BaseException]) -> str:
    """The name :meth:`Failure.from_exception` records for exceptions of class ``kind``."""
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


@frozen_record
class RetryPolicy:
    """How to retry a failed activity or sub-orchestration.

    - ``max_attempts``: total attempts, the first one included (1 means never retry).
    - ``first_delay``: the wait before the second attempt; each further wait is multiplied
      by ``backoff`` and capped at ``max_delay``.
    - ``timeout``: give up once the next attempt would start later than this after the first
      one was scheduled (orchestration time, so it is deterministic).
    - ``non_retryable``: exception classes or type names that are never retried. A failure
      matches an entry by the qualified name it records (``"myapp.errors.CardDeclined"``)
      or by the bare class name (``"CardDeclined"``); subclasses do not match, since a
      failure is data and no longer knows its class hierarchy. Failures marked
      ``non_retryable`` are never retried either.
    - ``retry_if``: a predicate on the :class:`Failure`; retry only when it returns true.
    """

    max_attempts: int = 3
    first_delay: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_delay: timedelta | None = None
    timeout: timedelta | None = None
    non_retryable: tuple[type[BaseException] | str, ...] = ()
    retry_if: Callable[[Failure], bool] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidInputError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise InvalidInputError(f"max_attempts must be at least 1, got {self.max_attempts}")
        _check_delay("first_delay", self.first_delay, allow_zero=True)
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, (int, float)):
            raise InvalidInputError(f"backoff must be a number, got {self.backoff!r}")
        if not math.isfinite(self.backoff) or self.backoff < 1.0:
            raise InvalidInputError(f"backoff must be a finite number >= 1.0, got {self.backoff!r}")
        if self.max_delay is not None:
            _check_delay("max_delay", self.max_delay, allow_zero=False)
            if self.max_delay < self.first_delay:
                raise InvalidInputError(
                    f"max_delay ({self.max_delay}) must not be shorter than first_delay ({self.first_delay})"
                )
        if self.timeout is not None:
            _check_delay("timeout", self.timeout, allow_zero=False)
        if isinstance(self.non_retryable, (str, type)):
            raise InvalidInputError("non_retryable must be a tuple of exception classes or type names")
        entries = tuple(self.non_retryable)
        for entry in entries:
            is_class = isinstance(entry, type) and issubclass(entry, BaseException)
            if not is_class and not (isinstance(entry, str) and entry):
                raise InvalidInputError(f"non_retryable entries must be exception classes or type names, got {entry!r}")
        object.__setattr__(self, "non_retryable", entries)
        if self.retry_if is not None and not callable(self.retry_if):
            raise InvalidInputError(f"retry_if must be callable, got {self.retry_if!r}")

    def delay_for(self, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based) before the next one:
        ``first_delay * backoff ** (attempt - 1)``, capped at ``max_delay``."""
        if attempt < 1:
            raise InvalidInputError(f"attempt counts from 1, got {attempt}")
        cap = self.max_delay if self.max_delay is not None else MAX_RETRY_DELAY
        try:
            seconds = self.first_delay.total_seconds() * self.backoff ** (attempt - 1)
        except OverflowError:
            return cap
        return cap if seconds >= cap.total_seconds() else timedelta(seconds=seconds)

    def is_retryable(self, failure: Failure) -> bool:
        """False if ``failure`` is marked non-retryable, matches ``non_retryable`` or is
        rejected by ``retry_if``; attempts and timeout are not considered here."""
        if failure.non_retryable:
            return False
        bare = failure.type.rsplit(".", 1)[-1]
        for entry in self.non_retryable:
            if isinstance(entry, str):
                if failure.type == entry or bare == entry:
                    return False
            elif failure.type == qualified_name(entry) or bare == entry.__name__:
                return False
        return self.retry_if is None or bool(self.retry_if(failure))

    def next_delay(self, failure: Failure, attempt: int, elapsed: timedelta) -> timedelta | None:
        """The wait before retrying after attempt ``attempt`` failed with ``failure``,
        ``elapsed`` after the first attempt was scheduled; ``None`` means give up."""
        if attempt >= self.max_attempts or not self.is_retryable(failure):
            return None
        delay = self.delay_for(attempt)
        if self.timeout is not None and elapsed + delay > self.timeout:
            return None
        return delay


def _check_delay(name: str, value: object, *, allow_zero: bool) -> None:
    if not isinstance(value, timedelta):
        raise InvalidInputError(f"{name} must be a datetime.timedelta, got {value!r}")
    if value < timedelta(0) or (not allow_zero and value == timedelta(0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{name} must be {bound}, got {value}")
