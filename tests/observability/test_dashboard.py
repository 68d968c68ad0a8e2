"""The Grafana dashboard in contrib/ queries only the metrics perdure exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

import perdure
from perdure.observability import PrometheusMetrics, StoreGauges

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "perdure.json"


def exported_names(client: perdure.Client) -> set[str]:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    StoreGauges(client, interval=0).register(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # families without samples yet still expose these series once observed
    for family in registry.collect():
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_every_query_of_the_dashboard_names_an_exported_metric(store):
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    used = {name for query in queries for name in re.findall(r"\bperdure_[a-z_]+", query)}
    assert len(used) >= 15
    assert used <= exported_names(perdure.Client(store)), used - exported_names(perdure.Client(store))
