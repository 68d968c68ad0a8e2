"""The scale benchmark's parts at tiny sizes: filling a store with terminal instances, and
the check that every statement of a W1 run can use an index (``bench.plans``)."""

from __future__ import annotations

from bench.plans import write_plans
from bench.scale import fill

import perdure
from perdure.core.history import ExecutionStarted


def test_fill_leaves_that_many_completed_instances_with_their_histories(store_url):
    fill("sqlite" if store_url.startswith("sqlite") else "postgres", store_url, 30, seed=10)
    store = perdure.open_store(store_url)
    client = perdure.Client(store)
    assert client.count(perdure.InstanceFilter(status="COMPLETED")) == client.count() == 30
    copied = next(s for s in client.list(limit=30).items if s.instance_id.endswith("-2"))
    [started] = [e for e in client.history(copied.instance_id) if isinstance(e, ExecutionStarted)]
    assert copied.output == 1 and started.run_id == copied.run_id and copied.run_id.endswith("-2")
    store.close()


def test_every_statement_of_w1_can_use_an_index(store_url, tmp_path):
    kind = "sqlite" if store_url.startswith("sqlite") else "postgres"
    fill(kind, store_url, 40, seed=20)
    whole_table = write_plans(kind, store_url, tmp_path / "plans.txt")
    text = (tmp_path / "plans.txt").read_text()
    assert text.count("\n-- ") >= 20  # the statements of a W1 run were captured and planned
    assert whole_table == [], text
