"""A store holding running instances of several orchestrations, made by the deployed code
(:data:`tests.replay.apps.app`) with a worker driven step by step."""

from __future__ import annotations

import perdure
from perdure.testing import StepWorker

from .apps import app

RUNNING = ["order-1", "order-2", "refund-3", "loyalty-4", "gift-5"]
COMPLETED = ["order-6"]


def settle(worker: StepWorker) -> None:
    """Run turns and activities until nothing is due now (timers a day away stay)."""
    for _ in range(100):
        worked = worker.run_turns()
        while worker.run_task():
            worked += 1
        worked += worker.round()
        if not worked:
            return
    raise AssertionError("the worker did not settle")


def populate(store: perdure.Store) -> None:
    """order-1 and order-2 wait for PaymentConfirmed after the charge; refund-3 waits on a
    day's timer; loyalty-4 is in its third execution (continue-as-new) waiting for a visit;
    gift-5 waits to be wrapped; order-6 has completed."""
    client = perdure.Client(store, app=app)
    worker = StepWorker(app, store, "setup")
    client.start("order_saga", {"id": 1, "items": ["a"]}, instance_id="order-1")
    client.start("order_saga", {"id": 2, "items": ["b", "c"]}, instance_id="order-2")
    client.start("refund", {"id": 3}, instance_id="refund-3")
    client.start("loyalty", 1, instance_id="loyalty-4")
    client.start("gift", "ada", instance_id="gift-5")
    client.start("order_saga", {"id": 6, "items": ["d", "e"]}, instance_id="order-6")
    settle(worker)
    for _ in range(2):
        client.raise_event("loyalty-4", "Visit")
        settle(worker)
    client.raise_event("order-6", "PaymentConfirmed")
    settle(worker)
    assert [client.get(i).status.value for i in RUNNING] == ["RUNNING"] * len(RUNNING)
    assert client.get("loyalty-4").execution_id == 3
    assert client.get("order-6").status.value == "COMPLETED"
