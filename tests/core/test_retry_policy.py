"""RetryPolicy: argument checks and the pure delay maths."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perdure.core.failure import Failure
from perdure.core.retry import MAX_RETRY_DELAY, RetryPolicy
from perdure.errors import InvalidInputError


def test_delay_grows_by_backoff_from_the_first_delay():
    policy = RetryPolicy(first_delay=timedelta(seconds=2), backoff=3.0)
    assert [policy.delay_for(n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (2, 6, 18)]


def test_delay_is_capped_by_max_delay_and_never_overflows():
    policy = RetryPolicy(max_attempts=10_000, first_delay=timedelta(seconds=1), max_delay=timedelta(minutes=1))
    assert policy.delay_for(100) == timedelta(minutes=1)
    assert RetryPolicy(backoff=10.0).delay_for(5000) == MAX_RETRY_DELAY


@given(st.integers(1, 2000), st.floats(1.0, 50.0), st.integers(0, 10_000))
def test_delays_never_decrease_and_stay_within_bounds(attempt, backoff, first_ms):
    policy = RetryPolicy(first_delay=timedelta(milliseconds=first_ms), backoff=backoff)
    assert timedelta(0) <= policy.delay_for(attempt) <= policy.delay_for(attempt + 1) <= MAX_RETRY_DELAY


def test_next_delay_stops_at_max_attempts():
    policy = RetryPolicy(max_attempts=2)
    f = Failure("ValueError", "x")
    assert policy.next_delay(f, 1, timedelta(0)) == timedelta(seconds=1)
    assert policy.next_delay(f, 2, timedelta(0)) is None
    assert RetryPolicy(max_attempts=1).next_delay(f, 1, timedelta(0)) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an int"),
        ({"max_attempts": True}, "max_attempts must be an int"),
        ({"first_delay": 1}, "first_delay must be a datetime.timedelta"),
        ({"first_delay": timedelta(seconds=-1)}, "first_delay must be >= 0"),
        ({"backoff": 0.5}, "backoff must be a finite number >= 1.0"),
        ({"backoff": float("inf")}, "backoff must be a finite number"),
        ({"backoff": "2"}, "backoff must be a number"),
        ({"max_delay": timedelta(0)}, "max_delay must be > 0"),
        ({"max_delay": timedelta(milliseconds=1)}, "must not be shorter than first_delay"),
        ({"timeout": timedelta(0)}, "timeout must be > 0"),
        ({"non_retryable": ValueError}, "non_retryable must be a tuple"),
        ({"non_retryable": (42,)}, "non_retryable entries must be exception classes"),
        ({"non_retryable": ("",)}, "non_retryable entries must be exception classes"),
        ({"retry_if": "yes"}, "retry_if must be callable"),
    ],
)
def test_bad_arguments_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        RetryPolicy(**kwargs)


def test_non_retryable_accepts_a_list_and_stores_a_tuple():
    policy = RetryPolicy(non_retryable=[KeyError, "Boom"])
    assert policy.non_retryable == (KeyError, "Boom")
    assert not policy.is_retryable(Failure("KeyError", "k"))
    assert not policy.is_retryable(Failure("pkg.Boom", "b"))
    assert policy.is_retryable(Failure("ValueError", "v"))


def test_bad_policy_passed_to_call_activity_is_rejected():
    from perdure.core.registry import App

    from .builders import Scenario

    app = App()

    @app.orchestration
    async def wrong(ctx, _):
        return await ctx.call_activity("a", retry={"max_attempts": 3})

    t = Scenario(app).start("wrong")
    assert "retry must be a perdure.RetryPolicy" in t.failure.message
