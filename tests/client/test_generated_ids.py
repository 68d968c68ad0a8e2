"""Ids of instances started without one: unique, and in the order they were created (so a
store's indexes keyed by instance id take new instances at their end)."""

from __future__ import annotations

import re
import time

import perdure

app = perdure.App()


@app.orchestration
async def noop(ctx: perdure.OrchestrationContext, _: None) -> None:
    return None


def test_generated_ids_are_unique_hex_and_sort_by_creation(store, client):
    first = client.start_many(noop, [None] * 50)
    time.sleep(0.002)
    second = [client.start(noop, None) for _ in range(3)]
    ids = [*first, *second]
    assert all(re.fullmatch(r"[0-9a-f]{32}", iid) for iid in ids)
    assert len(set(ids)) == len(ids)
    assert max(first) < min(second)  # a later start sorts after an earlier one
    assert {s.instance_id for s in client.list(limit=100).items} == set(ids)
