"""``python -m bench.can_size`` at a tiny size, on both stores: the retention it measures
keeps ``keep_executions`` executions before the current one, and ``None`` keeps them all.
No size or timing is asserted: the figures are in bench/RESULTS.md."""

from __future__ import annotations

import pytest
from bench.can_size import run


@pytest.mark.parametrize(("keep", "executions"), [(2, 3), (None, 31)])
def test_the_store_keeps_the_executions_retention_allows(store_url, keep, executions):
    figures = run(store_url, iterations=30, keep=keep, samples=3)
    assert (figures["executions_kept"], figures["events_kept"]) == (executions, 6 * executions)
    assert len(figures["sizes"]) >= 2
    assert figures["size_at_rest"] > 0
