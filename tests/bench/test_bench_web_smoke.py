"""The dashboard benchmark at a tiny size, so it keeps working. No timing is asserted here:
``python -m bench.web`` measures."""

from __future__ import annotations

import json

from bench.web import main


def test_bench_web_smoke(tmp_path) -> None:
    out = tmp_path / "web.json"
    main(["--instances", "300", "--repeat", "2", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert sum(figures["statuses"].values()) == 300
    assert set(figures["requests"]) >= {
        "API list, first page",
        "API status counts",
        "page: an instance (state, history, diagnosis, timeline)",
    }
    assert "instances_by_name_status" in figures["plans"]["status counts"]
