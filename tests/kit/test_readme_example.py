"""The README's example orchestration (``order_saga`` in ``shop.py``, read from the README
itself) unit-tested with the testing kit: the ``perdure_env`` fixture of perdure's pytest
plugin, replaced activities, events, and virtual time through its one-day wait."""

from __future__ import annotations

import importlib.util
import time
from datetime import timedelta
from types import ModuleType

import pytest

from perdure.core.history import ActivityScheduled, TimerCreated, TimerFired
from tests.docs.harness import ROOT, blocks

ORDER = {"id": 7, "total": 20, "items": ["a", "b"]}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> ModuleType:
    """``shop.py`` exactly as the README shows it."""
    block = next(b for b in blocks(ROOT / "README.md") if b.text.startswith("# file: shop.py\n"))
    path = tmp_path_factory.mktemp("readme") / "shop.py"
    path.write_text(block.text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("readme_shop", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def perdure_app(shop):
    return shop.app


def test_a_confirmed_order_is_charged_then_packed(perdure_env, shop):
    perdure_env.mock_activity(shop.charge, lambda order: {"charge_id": "ch_test", "amount": order["total"]})
    run = perdure_env.start(shop.order_saga, ORDER)
    perdure_env.raise_event(run, "PaymentConfirmed", {"ok": True}, after=timedelta(hours=2))
    result = perdure_env.run_until_complete(run)
    assert result.status == "COMPLETED"
    assert result.output == {"receipt": {"charge_id": "ch_test", "amount": 20}, "parts": ["packed a", "packed b"]}
    assert timedelta(hours=2) <= result.elapsed < timedelta(hours=2, minutes=1)


def test_an_order_nobody_confirms_gives_up_after_its_one_day_wait(perdure_env, shop):
    started = time.perf_counter()
    run = perdure_env.start(shop.order_saga, ORDER)
    perdure_env.raise_event(run, "PaymentConfirmed", {"ok": True}, after=timedelta(days=2))  # too late
    result = perdure_env.run_until_complete(run)
    wall = time.perf_counter() - started
    print(f"order_saga's one-day wait: {wall:.3f} s of wall time for {result.elapsed} of virtual time")
    assert result.status == "COMPLETED" and result.output == {"status": "unconfirmed"}
    assert timedelta(days=1) <= result.elapsed < timedelta(days=1, minutes=1)
    [timer] = [e for e in result.history if isinstance(e, TimerCreated)]
    assert timer.fire_at - timer.timestamp == 86_400  # the real one-day timer, fired in virtual time
    assert any(isinstance(e, TimerFired) for e in result.history)


def test_a_flaky_charge_is_retried_on_virtual_time(perdure_env, shop):
    attempts = []

    def flaky_charge(order: dict) -> dict:
        attempts.append(perdure_env.now())
        if len(attempts) < 3:
            raise ConnectionError("card network unreachable")
        return {"charge_id": "ch_3", "amount": order["total"]}

    perdure_env.mock_activity("charge", flaky_charge)
    run = perdure_env.start(shop.order_saga, ORDER)
    perdure_env.raise_event(run, "PaymentConfirmed")
    result = perdure_env.run_until_complete(run)
    assert result.output["receipt"] == {"charge_id": "ch_3", "amount": 20}
    assert [e.attempt for e in result.history if isinstance(e, ActivityScheduled) and e.name == "charge"] == [1, 2, 3]
    assert attempts[1] - attempts[0] >= timedelta(seconds=1)  # the retry policy's delays, not slept
    assert shop.app.activities["charge"].fn is shop.charge  # the app itself is not changed
