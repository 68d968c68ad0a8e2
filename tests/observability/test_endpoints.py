"""The /metrics endpoints: ``perdure worker --metrics-port`` (the real command, scraped
over HTTP) and the web app's ``/metrics`` (behind the token, or public when asked)."""

from __future__ import annotations

import re

import httpx
import pytest

import perdure
from tests.cli.helpers import ROOT, Background
from tests.cli.helpers import perdure as run
from tests.web.conftest import served_app


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start!r} in:\n{text}")


def test_the_worker_serves_its_metrics_and_the_store_gauges(store_url):
    worker = Background(
        "worker",
        "--app",
        "tests.cli.cli_app:app",
        "--store",
        store_url,
        "--poll-interval",
        "0.05",
        "--metrics-port",
        "0",
        "--metrics-host",
        "127.0.0.1",
        cwd=ROOT,
    )
    try:
        worker.wait_for_log("metrics at http://")
        [port] = re.findall(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", "".join(worker.err))
        run("start", "quick", "1", "--id", "q-1", "--store", store_url)
        assert run("result", "q-1", "--wait", "30", "--store", store_url).code == 0
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    finally:
        assert worker.stop().code == 0
    assert sample(text, 'perdure_instances_completed_total{orchestration="quick"}') == 1
    assert sample(text, 'perdure_activity_executions_total{activity="add",outcome="completed"}') == 1
    assert sample(text, 'perdure_store_call_seconds_count{operation="run_round"}') > 0
    assert sample(text, 'perdure_instances{orchestration="quick",status="COMPLETED"}') == 1
    assert sample(text, "perdure_workers_live") == 1


def test_the_web_app_serves_metrics_behind_its_token(store):
    perdure.Client(store).start("quick", 1)
    with served_app(store, metrics=True) as served:
        assert served.anon.get("/metrics").status_code == 401
        answer = served.api.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert sample(answer.text, 'perdure_instances{orchestration="quick",status="PENDING"}') == 1
        assert served.api.get("/api/v1/instances").status_code == 200  # the rest is unchanged


def test_the_web_app_serves_public_metrics_only_when_told(store):
    with served_app(store, metrics=True, metrics_public=True) as served:
        assert served.anon.get("/metrics").status_code == 200
        assert served.anon.get("/api/v1/instances").status_code == 401
    with served_app(store) as served:
        assert served.api.get("/metrics").status_code == 404
    with pytest.raises(ValueError, match="metrics_public=True needs metrics=True"):
        served_app(store, metrics_public=True).__enter__()
