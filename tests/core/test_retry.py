"""Durable retries of activities and sub-orchestrations."""

from __future__ import annotations

from datetime import timedelta

from perdure.core.commands import CreateTimer, ScheduleActivity, StartSubOrchestration
from perdure.core.failure import Failure
from perdure.core.history import ActivityFailed, ActivityScheduled, TimerCreated
from perdure.core.registry import App
from perdure.core.retry import RetryPolicy
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import AwaitedActivity, AwaitedTimer
from perdure.errors import ActivityError, SubOrchestrationError

from .builders import (
    Scenario,
    activity_completed,
    activity_failed,
    child_completed,
    child_failed,
    of_type,
    timer_fired,
)


class CardDeclined(Exception):
    pass


POLICIES = {
    "default": RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=1), backoff=2.0),
    "by_class": RetryPolicy(max_attempts=5, non_retryable=(CardDeclined,)),
    "by_name": RetryPolicy(max_attempts=5, non_retryable=("CardDeclined",)),
    "retry_if": RetryPolicy(max_attempts=5, retry_if=lambda f: "transient" in f.message),
    "timeout": RetryPolicy(
        max_attempts=10,
        first_delay=timedelta(seconds=10),
        backoff=1.0,
        timeout=timedelta(seconds=25),
    ),
    "capped": RetryPolicy(
        max_attempts=4,
        first_delay=timedelta(seconds=10),
        backoff=10.0,
        max_delay=timedelta(seconds=30),
    ),
}

app = App()


@app.orchestration
async def charge(ctx, policy):
    try:
        return await ctx.call_activity("charge", {"id": 1}, retry=POLICIES[policy])
    except ActivityError as err:
        return {"error": str(err), "type": err.error_type, "message": err.error_message}


@app.orchestration
async def ship(ctx, _):
    try:
        return await ctx.call_sub_orchestration("ship", 1, retry=POLICIES["default"])
    except SubOrchestrationError as err:
        return {"error": str(err)}


@app.orchestration
async def buggy_retry_if(ctx, _):
    policy = RetryPolicy(retry_if=lambda f: 1 / 0)
    try:
        await ctx.call_activity("charge", retry=policy)
    except ZeroDivisionError:
        return "retry_if raised"


def test_retry_succeeds_after_failures_using_durable_timers():
    s = Scenario(app)
    s.start("charge", "default", at=100.0)
    t = s.turn(101.0, activity_failed(1, "ConnectionError", "down"))
    assert t.commands == (CreateTimer(task_id=2, fire_at=102.0),)
    assert t.waiting_on.timers == (AwaitedTimer(2, 102.0, "retry"),)
    assert t.waiting_on.activities == ()
    t = s.turn(102.0, timer_fired(2))
    assert t.commands == (ScheduleActivity(task_id=3, name="charge", input={"id": 1}, attempt=2),)
    assert t.waiting_on.activities == (AwaitedActivity(3, "charge", 2, 102.0),)
    t = s.turn(103.0, activity_failed(3, "ConnectionError", "down"))
    assert t.commands == (CreateTimer(task_id=4, fire_at=105.0),)  # backoff doubles the delay
    s.turn(105.0, timer_fired(4))
    t = s.turn(106.0, activity_completed(5, "ok"))
    assert t.output == "ok"
    assert [e.attempt for e in of_type(s.history, ActivityScheduled)] == [1, 2, 3]
    assert len(of_type(s.history, ActivityFailed)) == 2
    assert len(of_type(s.history, TimerCreated)) == 2


def _fail_until_exhausted(s: Scenario, error_type: str = "ConnectionError", message: str = "down"):
    t = s.turn(101.0, activity_failed(1, error_type, message))
    task = 1
    at = 101.0
    while t.status is OrchestrationStatus.RUNNING:
        timer = t.commands[0].task_id
        at += 100
        s.turn(at, timer_fired(timer))
        task = timer + 1
        t = s.turn(at + 1, activity_failed(task, error_type, f"{message} {task}"))
    return t


def test_retries_exhausted_raise_activity_error_with_the_last_failure():
    s = Scenario(app)
    s.start("charge", "default")
    t = _fail_until_exhausted(s)
    assert t.output == {
        "error": "activity 'charge' failed after 3 attempts: ConnectionError: down 5",
        "type": "ConnectionError",
        "message": "down 5",
    }
    assert len(of_type(s.history, ActivityScheduled)) == 3


def test_non_retryable_error_class_is_not_retried():
    s = Scenario(app)
    s.start("charge", "by_class")
    t = s.turn(101.0, activity_failed(1, f"{__name__}.CardDeclined", "no funds"))
    assert t.output["error"] == (
        f"activity 'charge' failed after 1 attempt ({__name__}.CardDeclined is not retryable): "
        f"{__name__}.CardDeclined: no funds"
    )
    assert t.commands[-1].__class__.__name__ == "CompleteOrchestration"


def test_non_retryable_by_bare_type_name():
    s = Scenario(app)
    s.start("charge", "by_name")
    t = s.turn(101.0, activity_failed(1, "payments.errors.CardDeclined", "no funds"))
    assert "not retryable" in t.output["error"]


def test_failure_marked_non_retryable_is_not_retried():
    s = Scenario(app)
    s.start("charge", "default")
    t = s.turn(101.0, activity_failed(1, "ValueError", "bad", non_retryable=True))
    assert t.status is OrchestrationStatus.COMPLETED
    assert "after 1 attempt" in t.output["error"]


def test_retry_if_decides():
    s = Scenario(app)
    s.start("charge", "retry_if")
    t = s.turn(101.0, activity_failed(1, "IOError", "transient glitch"))
    assert isinstance(t.commands[0], CreateTimer)
    s.turn(102.0, timer_fired(2))
    t = s.turn(103.0, activity_failed(3, "IOError", "permanent"))
    assert t.output["error"].startswith("activity 'charge' failed after 2 attempts (IOError is not retryable)")


def test_retry_if_that_raises_surfaces_in_the_orchestrator():
    s = Scenario(app)
    s.start("buggy_retry_if")
    assert s.turn(101.0, activity_failed(1)).output == "retry_if raised"


def test_retry_timeout_gives_up_when_the_next_attempt_would_start_too_late():
    s = Scenario(app)
    s.start("charge", "timeout", at=0.0)
    t = s.turn(1.0, activity_failed(1))
    assert t.commands == (CreateTimer(task_id=2, fire_at=11.0),)
    s.turn(11.0, timer_fired(2))
    t = s.turn(20.0, activity_failed(3))  # 20 + 10 > 0 + 25
    assert t.output["error"].startswith("activity 'charge' failed after 2 attempts (retry timeout of 0:00:25 reached)")


def test_max_delay_caps_the_backoff():
    s = Scenario(app)
    s.start("charge", "capped", at=0.0)
    fire_ats = []
    t = s.turn(1.0, activity_failed(1))
    for n in range(3):
        fire_ats.append(t.commands[0].fire_at - (1.0 + 100 * n))
        s.turn(50.0 + 100 * n, timer_fired(t.commands[0].task_id))
        t = s.turn(1.0 + 100 * (n + 1), activity_failed(t.commands[0].task_id + 1))
    assert fire_ats == [10.0, 30.0, 30.0]
    assert "after 4 attempts" in t.output["error"]


def test_sub_orchestration_retry_uses_a_new_child_id_per_attempt():
    s = Scenario(app)
    t = s.start("ship")
    assert t.commands == (
        StartSubOrchestration(task_id=1, name="ship", instance_id="order-1::sub::1", input=1, version=1),
    )
    s.turn(101.0, child_failed(1))
    t = s.turn(102.0, timer_fired(2))
    assert t.commands == (
        StartSubOrchestration(task_id=3, name="ship", instance_id="order-1::sub::3", input=1, version=1),
    )
    assert s.turn(103.0, child_completed(3, "ok")).output == "ok"


def test_sub_orchestration_retries_exhausted_raise_sub_orchestration_error():
    s = Scenario(app)
    s.start("ship")
    s.turn(101.0, child_failed(1))
    s.turn(102.0, timer_fired(2))
    s.turn(103.0, child_failed(3))
    s.turn(105.0, timer_fired(4))
    t = s.turn(106.0, child_failed(5, "RuntimeError", "out of stock"))
    assert t.output == {"error": "sub-orchestration 'ship' failed after 3 attempts: RuntimeError: out of stock"}


def test_failure_from_exception_type_name_matches_a_policy_class():
    failure = Failure.from_exception(CardDeclined("x"))
    assert not POLICIES["by_class"].is_retryable(failure)
    assert not POLICIES["by_name"].is_retryable(failure)
    assert POLICIES["default"].is_retryable(failure)
