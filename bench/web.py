"""The dashboard and API with a big store: how fast the list's first page, the status counts
and an instance page answer with 100,000 instances stored, and the query plans behind them.

    python -m bench.web                              # SQLite, 100,000 instances
    python -m bench.web --store postgres             # PostgreSQL ($PERDURE_BENCH_POSTGRES_URL)
    python -m bench.web --instances 2000 --repeat 5  # a quick look

The store is filled through the client and a worker (most instances completed, some failed,
some running and waiting for an event, some pending; on PostgreSQL then vacuumed and analysed,
as autovacuum does after a bulk load), then the app is served by uvicorn on
127.0.0.1 and each request is timed over HTTP (median and max of ``--repeat`` requests after
warm-up). The query plans of the reads behind those requests are printed: each must use an
index (no full scan of ``instances``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import perdure
from bench.__main__ import fresh_store_url
from perdure.web import create_app, new_token

LIMIT_MS = 300.0
app = perdure.App()


@app.activity
def step(x: int) -> int:
    """A small step."""
    return x + 1


@app.orchestration
async def quick(ctx: perdure.OrchestrationContext, n: int) -> int:
    """Done in one turn (most of the fleet)."""
    if n % 97 == 0:
        raise ValueError(f"order {n} was refused")
    return n


@app.orchestration
async def order(ctx: perdure.OrchestrationContext, n: int) -> int:
    """A few steps, then a wait for an approval (the instance the page shows)."""
    for _ in range(8):
        n = await ctx.call_activity(step, n)
    ctx.set_custom_status({"stage": "awaiting approval"})
    await ctx.wait_for_event("Approved")
    return n


def fill(url: str, instances: int, batch: int = 2000) -> dict[str, Any]:
    """``instances`` instances: all but a few hundred finished by a worker, 200 left pending."""
    store = perdure.open_store(url)
    client = perdure.Client(store)
    started = time.perf_counter()
    done = 0
    running = max(1, min(100, instances // 100))
    pending = max(1, min(200, instances // 50))
    finished = instances - running - pending
    with perdure.Worker(app, store, batch_size=256, poll_interval=0.05):
        while done < finished:
            size = min(batch, finished - done)
            client.start_many(
                quick, range(done, done + size), instance_ids=[f"q-{i:07d}" for i in range(done, done + size)]
            )
            done += size
            while sum(d.depth for d in client.queue_depths()) > 4 * batch:
                time.sleep(0.05)
        client.start_many(order, range(running), instance_ids=[f"order-{i:04d}" for i in range(running)])
        deadline = time.monotonic() + 600
        while client.queue_depths() and time.monotonic() < deadline:
            time.sleep(0.1)
    client.start_many(quick, range(pending), instance_ids=[f"p-{i:04d}" for i in range(pending)])
    if not url.startswith("sqlite"):  # what autovacuum does after a bulk load: visibility map, statistics
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE instances")
    totals = {c.status.value: 0 for c in client.instance_counts()}
    for c in client.instance_counts():
        totals[c.status.value] += c.count
    store.close()
    return {"fill_s": round(time.perf_counter() - started, 1), "statuses": totals}


@contextmanager
def served(url: str, token: str) -> Iterator[tuple[str, perdure.Store]]:
    store = perdure.open_store(url)
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, token=token), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(30)
        store.close()


def timed(http: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    """Median and max milliseconds of ``repeat`` GETs of ``path`` (after 3 warm-up requests)."""
    for _ in range(3):
        http.get(path).raise_for_status()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = http.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
    return {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1)}


def log_in(http: httpx.Client, token: str) -> None:
    import re

    form = http.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    assert http.post("/login", data={"csrf_token": csrf, "token": token}).status_code == 303


def query_plans(store: perdure.Store) -> dict[str, str]:
    """The plans of the reads behind the timed requests, as the database prints them."""
    from perdure.store.base import InstanceQuery

    list_params = {
        "statuses": None,
        "name": None,
        "created_after": None,
        "created_before": None,
        "parent_instance_id": None,
        "prefix": None,
        "cursor_created": None,
        "cursor_id": None,
        "limit": 51,
    }
    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    is_sqlite = store.url.startswith("sqlite")
    if is_sqlite:
        from perdure.store.sqlite.queries import Q
        from perdure.store.sqlite.store import _filter_params
    else:
        from perdure.store.postgres.queries import Q
        from perdure.store.postgres.store import _filter_params

    def params(**query: Any) -> dict[str, Any]:
        out = dict(list_params)
        out.update(_filter_params(InstanceQuery(**query)))
        return out

    cases["list, first page"] = (Q.list_instances, params())
    cases["list by status FAILED"] = (Q.list_instances, params(statuses=[perdure.OrchestrationStatus.FAILED]))
    cases["list by name"] = (Q.list_instances, params(name="order"))
    cases["list by id prefix"] = (Q.list_instances, params(instance_id_prefix="order-"))
    cases["list by last update"] = (Q.list_instances_by_updated, params(sort="updated"))
    cases["status counts"] = (Q.instance_counts, {})
    cases["get instance"] = (Q.get_instance, {"instance_id": "order-0000"})
    plans = {}
    for label, (sql, values) in cases.items():
        if is_sqlite:
            with store._db.reader() as conn:  # a bench may look inside: read-only EXPLAIN
                rows = conn.execute("EXPLAIN QUERY PLAN " + sql, values).fetchall()
            plans[label] = "; ".join(r["detail"] for r in rows)
        else:
            with store._db.pool.connection() as conn:
                rows = conn.execute("EXPLAIN " + sql, values).fetchall()
            plans[label] = "; ".join(next(iter(r.values())).strip() for r in rows)
    return plans


def main(argv: list[str] | None = None) -> int:
    """Fill a store, time the requests, print the figures and the plans."""
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)

    with fresh_store_url(args.store) as url:
        figures: dict[str, Any] = {"store": args.store, "instances": args.instances}
        figures.update(fill(url, args.instances))
        token = new_token()
        with served(url, token) as (base, store):
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            page = httpx.Client(base_url=base, timeout=60)
            log_in(page, token)
            requests = {
                "API list, first page": (api, "/api/v1/instances?limit=50"),
                "API status counts": (api, "/api/v1/counts"),
                "API instance": (api, "/api/v1/instances/order-0000"),
                "page: instance list (first page + counts)": (page, "/instances"),
                "page: an instance (state, history, diagnosis, timeline)": (page, "/instances/order-0000"),
                "page: list filtered by status FAILED": (page, "/instances?status=FAILED"),
                "page: list filtered by name": (page, "/instances?name=order"),
                "page: list by id prefix": (page, "/instances?prefix=order-"),
                "page: list sorted by last update": (page, "/instances?sort=updated"),
                "page: list filtered by a prefix no id has": (page, "/instances?prefix=none-"),
            }
            figures["requests"] = {label: timed(c, path, args.repeat) for label, (c, path) in requests.items()}
            figures["plans"] = query_plans(store)

    print(
        f"{figures['instances']:,} instances on {figures['store']} (filled in {figures['fill_s']} s): {figures['statuses']}"
    )
    worst = 0.0
    for label, t in figures["requests"].items():
        worst = max(worst, t["median_ms"])
        print(f"  {label:58s} median {t['median_ms']:7.1f} ms   max {t['max_ms']:7.1f} ms")
    print("query plans:")
    for label, plan in figures["plans"].items():
        print(f"  {label:26s} {plan}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if worst < LIMIT_MS else 1


if __name__ == "__main__":
    sys.exit(main())
