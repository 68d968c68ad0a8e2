"""The testing kit's environment: virtual time that jumps only when nothing can run,
activities replaced per environment, events raised now or at a virtual time, and a clear
error when an instance cannot finish."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

import perdure
from perdure.testing import Environment

app = perdure.App()
sent: list[str] = []


@app.activity
def send(text: str) -> str:
    sent.append(text)
    return f"sent {text}"


@app.activity
async def lookup(key: str) -> str:
    return f"value of {key}"


@app.orchestration
async def reminder(ctx: perdure.OrchestrationContext, days: int) -> str:
    await ctx.create_timer(timedelta(days=days))
    return await ctx.call_activity(send, f"after {days} days")


@app.orchestration
async def approval(ctx: perdure.OrchestrationContext, _: None) -> object:
    try:
        return await ctx.wait_for_event("Approved", timeout=timedelta(hours=8))
    except perdure.TaskTimeoutError:
        ctx.set_custom_status("reminded")
        return await ctx.wait_for_event("Approved")


@app.orchestration
async def fetch(ctx: perdure.OrchestrationContext, key: str) -> str:
    return await ctx.call_activity(lookup, key)


@pytest.fixture
def env():
    with Environment(app, start=datetime(2030, 1, 1, tzinfo=UTC)) as environment:
        yield environment


def test_a_30_day_timer_costs_nothing_and_the_activity_runs_for_real(env):
    sent.clear()
    run = env.start(reminder, 30)
    result = env.run_until_complete(run)
    assert result.output == "sent after 30 days" and sent == ["after 30 days"]
    assert env.now() >= datetime(2030, 1, 31, tzinfo=UTC)
    assert result.elapsed >= timedelta(days=30)


def test_advance_runs_what_comes_due_and_stops_there(env):
    run = env.start(reminder, 2)
    env.advance(timedelta(0))
    assert env.result(run).status == "RUNNING" and env.result(run).state.waiting_on.timers
    env.advance(timedelta(days=1))
    assert env.now() == datetime(2030, 1, 2, tzinfo=UTC)
    assert env.result(run).status == "RUNNING"
    env.advance(timedelta(days=1, seconds=1))
    assert env.result(run).status == "COMPLETED"


def test_events_are_raised_now_or_at_a_virtual_time(env):
    early = env.start(approval, None, instance_id="early")
    late = env.start(approval, None, instance_id="late")
    env.raise_event(early, "Approved", 1, after=timedelta(hours=1))
    env.raise_event(early, "Approved", 2, after=timedelta(hours=2))
    env.raise_event(late, "Approved", 3, at=datetime(2030, 1, 1, 10, tzinfo=UTC))
    result = env.run_until_complete(early)
    assert (result.output, result.custom_status, result.elapsed) == (1, None, timedelta(hours=1))
    result = env.run_until_complete(late)  # passes 2:00, where the event for early is dropped
    assert (result.output, result.custom_status) == (3, "reminded")
    assert env.now() == datetime(2030, 1, 1, 10, tzinfo=UTC)
    now = env.start(approval, None)
    env.raise_event(now, "Approved", "a")
    assert env.run_until_complete(now).output == "a"
    assert env.now() == datetime(2030, 1, 1, 10, tzinfo=UTC)  # nothing had to wait


def test_an_instance_that_cannot_finish_says_what_it_waits_for(env):
    run = env.start(approval, None, instance_id="stuck")
    with pytest.raises(
        AssertionError, match=r"instance 'stuck' did not finish: it is RUNNING, waiting for event 'Approved'"
    ):
        env.run_until_complete(run)
    assert env.now() == datetime(2030, 1, 1, 8, 0, 0, 1000, tzinfo=UTC)  # the 8 hours passed
    slow = env.start(reminder, 40)
    with pytest.raises(
        AssertionError,
        match=r"did not finish within 7 days, 0:00:00 of virtual time: .* a timer due 2030-02-10 08:00:00 UTC",
    ):
        env.run_until_complete(slow, within=timedelta(days=7))


def test_activities_are_replaced_by_function_or_name_sync_or_async(env):
    env.mock_activity(lookup, lambda key: f"mocked {key}")
    assert env.run_until_complete(env.start(fetch, "a")).output == "mocked a"

    async def later(key: str) -> str:
        return f"async {key}"

    env.mock_activity("lookup", later)
    assert env.run_until_complete(env.start(fetch, "b")).output == "async b"
    assert app.activities["lookup"].fn is lookup


def test_a_failing_replacement_fails_the_activity(env):
    def broken(key: str) -> str:
        raise KeyError(key)

    env.mock_activity(lookup, broken)
    result = env.run_until_complete(env.start(fetch, "k"))
    assert result.status == "FAILED"
    assert result.failure.type == "perdure.errors.ActivityError" and "KeyError" in result.failure.message


def test_bad_input_is_refused_at_the_call(env):
    with pytest.raises(perdure.RegistrationError, match=r"activity 'charge' is not registered in the app"):
        env.mock_activity("charge", lambda _: None)
    with pytest.raises(perdure.InvalidInputError, match=r"must be a function \(for a fixed result: lambda _: value\)"):
        env.mock_activity(lookup, {"fixed": 1})
    with pytest.raises(perdure.RegistrationError):
        env.start("nope")
    run = env.start(approval, None)
    with pytest.raises(perdure.InvalidInputError, match="at= or after=, not both"):
        env.raise_event(run, "Approved", at=env.now(), after=timedelta(0))
    with pytest.raises(perdure.SerializationError):
        env.raise_event(run, "Approved", object(), after=timedelta(hours=1))
    with pytest.raises(perdure.InstanceNotFoundError, match="no instance with id 'ghost'"):
        env.run_until_complete("ghost")
    with pytest.raises(perdure.InvalidInputError, match="timezone-aware"):
        Environment(app, start=datetime(2030, 1, 1))


def test_the_pytest_fixture_needs_the_app_and_says_so(tmp_path):
    (tmp_path / "test_without_app.py").write_text(
        textwrap.dedent(
            """
            def test_it(perdure_env):
                pass
            """
        ),
        encoding="utf-8",
    )
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_without_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1
    assert "perdure_env needs your app: define a fixture named perdure_app that returns your perdure.App" in ran.stdout
