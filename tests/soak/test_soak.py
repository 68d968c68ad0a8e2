"""The crash-and-restart soak (``python -m bench.soak``) in its short mode: worker processes
SIGKILLed at random for a few seconds under the mixed workload, on SQLite and PostgreSQL;
every instance must end COMPLETED with its expected output, no history may complete a
task twice, nothing may be left live. The full soak runs a minute (bench/RESULTS.md)."""

from __future__ import annotations

import perdure
from bench import soak, soak_app


def test_workers_killed_at_random_lose_nothing_and_duplicate_nothing(store_url):
    report = soak.run(store_url, seconds=4, workers=2, seed=16, in_flight=12, drain_timeout=60, log=lambda _: None)
    assert report.ok, report.summary() + "\n\n" + "\n\n".join(report.problems)
    assert report.kills >= 2
    assert report.instances >= 12
    assert report.activities_executed >= report.activities_completed + report.activity_failures > 0

    # The checks see a wrong output: the soak cannot pass by checking nothing.
    store = perdure.open_store(store_url)
    try:
        wrong = soak.check_outputs(perdure.Client(store), {"soak-0": 1})
    finally:
        store.close()
    assert len(wrong) == 1
    assert f"expected COMPLETED with {soak_app.expected_output(1)!r}" in wrong[0]
