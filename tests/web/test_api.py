"""The HTTP API over a real uvicorn server and a real store, on SQLite and PostgreSQL:
every route, its shapes and status codes, paging, and bad input refused with nothing stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import perdure
from perdure.core.history import EventRaised
from tests.web.conftest import Served, wait_until
from tests.web.shop import app as shop

ORDER = {"id": 7, "total": 20, "items": ["book", "lamp"]}


def error(response) -> tuple[int, str, str]:
    """``(status, code, message)`` of an error answer."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_an_order_is_started_signalled_inspected_and_purged_over_http(served: Served) -> None:
    api = served.api
    created = api.post("/api/v1/instances", json={"name": "order_saga", "input": ORDER, "instance_id": "order-7"})
    assert (created.status_code, created.json()) == (201, {"instance_id": "order-7"})
    generated = api.post("/api/v1/instances", json={"name": "order_saga", "input": ORDER})
    assert generated.status_code == 201 and len(generated.json()["instance_id"]) == 32

    with perdure.Worker(shop, served.store, poll_interval=0.02):
        wait_until(
            lambda: api.get("/api/v1/instances/order-7").json()["waiting_on"]["events"], what="the approval wait"
        )
        state = api.get("/api/v1/instances/order-7").json()
        assert state["status"] == "RUNNING" and state["custom_status"] == {"stage": "awaiting approval"}
        [wait] = state["waiting_on"]["events"]
        since, timeout_at = (datetime.fromisoformat(wait[k]) for k in ("since", "timeout_at"))
        assert wait["name"] == "Approved" and (timeout_at - since).total_seconds() == 3600

        diagnosis = api.get("/api/v1/instances/order-7/diagnosis").json()
        assert diagnosis["verdict"] == "waiting_for_event" and diagnosis["findings"][0]["mitigation"]

        raised = api.post("/api/v1/instances/order-7/events/Approved", json={"by": "ops"})
        assert (raised.status_code, raised.json()) == (202, {"instance_id": "order-7", "accepted": True})
        done = served.client.wait("order-7", timeout=30)
    assert done.status == perdure.OrchestrationStatus.COMPLETED
    final = api.get("/api/v1/instances/order-7").json()
    assert final["status"] == "COMPLETED" and final["output"]["approval"] == {"by": "ops"}
    assert final["output"]["receipt"] == {"charge_id": "ch_7", "amount": 20}

    history = api.get("/api/v1/instances/order-7/history").json()
    assert history["instance_id"] == "order-7" and history["next_cursor"] is None
    kinds = [e["kind"] for e in history["items"]]
    assert kinds[:2] == ["TurnStarted", "ExecutionStarted"] and kinds[-1] == "ExecutionCompleted"
    assert [e["sequence"] for e in history["items"]] == list(range(len(kinds)))
    approval = next(e for e in history["items"] if e["kind"] == "EventRaised")
    assert approval["fields"] == {"name": "Approved", "input": {"by": "ops"}}
    assert approval["time"].endswith("Z") and datetime.fromisoformat(approval["time"]).tzinfo is not None
    failed = next(e for e in history["items"] if e["kind"] == "ActivityFailed")
    assert failed["fields"]["failure"]["type"] == "ConnectionError"

    assert api.get("/api/v1/instances/order-7/diagnosis").json()["verdict"] == "completed"
    purged = api.delete("/api/v1/instances/order-7")
    assert (purged.status_code, purged.content) == (204, b"")
    assert error(api.get("/api/v1/instances/order-7")) == (404, "not_found", "no instance with id 'order-7'")
    assert served.client.get("order-7") is None


def test_the_list_filters_pages_and_sorts(served: Served) -> None:
    client, api = served.client, served.api
    for n in range(5):
        client.start("nightly", None, instance_id=f"order-{n}")  # waits on a 6 h timer
    client.start("refund", None, instance_id="refund-1")  # no worker runs it: stays PENDING
    with perdure.Worker(shop, served.store, poll_interval=0.02):
        wait_until(lambda: not client.list(name="nightly", status="PENDING").items, what="the timers")
        client.terminate("order-1")
        client.wait("order-1", timeout=30)

    everything = api.get("/api/v1/instances").json()
    assert [i["instance_id"] for i in everything["items"]] == [
        "refund-1",
        "order-4",
        "order-3",
        "order-2",
        "order-1",
        "order-0",
    ]
    assert everything["next_cursor"] is None
    assert set(everything["items"][0]) >= {"instance_id", "name", "status", "created_at", "waiting_on"}

    seen, cursor = [], None
    while True:
        page = api.get("/api/v1/instances", params={"prefix": "order-", "limit": 2, "cursor": cursor}).json()
        assert len(page["items"]) <= 2
        seen += [i["instance_id"] for i in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ["order-4", "order-3", "order-2", "order-1", "order-0"]

    def ids(**params) -> list[str]:
        response = api.get("/api/v1/instances", params=params)
        assert response.status_code == 200, response.text
        return [i["instance_id"] for i in response.json()["items"]]

    assert ids(status="TERMINATED") == ["order-1"]
    assert ids(status="terminated,running", name="nightly", limit=2) == ["order-4", "order-3"]
    assert ids(status="PENDING") == ["refund-1"]
    assert ids(name="refund") == ["refund-1"]
    assert ids(sort="updated", limit=1) == ["order-1"]  # terminated last
    now = datetime.now(UTC)
    assert ids(created_after=(now + timedelta(minutes=1)).isoformat()) == []
    assert len(ids(created_before=(now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"))) == 6
    naive_future = (now + timedelta(minutes=1)).replace(tzinfo=None).isoformat()  # UTC when no offset
    assert ids(created_after=naive_future) == []


def test_bad_list_parameters_are_refused_naming_the_parameter(served: Served) -> None:
    for params, name in (
        ({"status": "DONE"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "name"}, "sort"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"stauts": "RUNNING"}, "stauts"),
    ):
        status, code, message = error(served.api.get("/api/v1/instances", params=params))
        assert (status, code) == (400, "invalid_parameter") and f"parameter {name!r}" in message, message
    status, code, message = error(served.api.get("/api/v1/instances", params={"cursor": "not-a-cursor"}))
    assert (status, code) == (400, "invalid_input") and "cursor" in message


def test_bad_start_requests_get_400_with_a_message_and_store_nothing(served: Served) -> None:
    api = served.api
    client = perdure.Client(served.store, max_payload_bytes=1000)  # the app's limit is the default 4 MiB
    big = "x" * (4 * 1024 * 1024)
    cases = [
        ({"content": b"{not json"}, "invalid_body", "not valid JSON"),
        ({"content": b""}, "invalid_body", "empty"),
        ({"json": ["order_saga"]}, "invalid_body", "must be a JSON object"),
        ({"json": {"input": 1}}, "invalid_body", "needs the field 'name'"),
        ({"json": {"name": 5}}, "invalid_body", "'name' must be a string"),
        ({"json": {"name": ""}}, "invalid_input", "must not be empty"),
        ({"json": {"name": "wf", "priority": 1}}, "invalid_body", "unknown field 'priority'"),
        ({"json": {"name": "wf", "instance_id": 7}}, "invalid_body", "'instance_id' must be a string"),
        ({"json": {"name": "wf", "instance_id": ""}}, "invalid_instance_id", "must not be empty"),
        ({"json": {"name": "wf", "instance_id": "a\nb"}}, "invalid_instance_id", "control character"),
        ({"json": {"name": "wf", "instance_id": "x" * 257}}, "invalid_instance_id", "the limit is 256"),
        ({"json": {"name": "wf", "instance_id": "p::sub::1"}}, "invalid_instance_id", "reserved"),
        ({"json": {"name": "wf", "input": big}}, "invalid_payload", "over the limit"),
    ]
    for request, code, words in cases:
        status, got, message = error(api.post("/api/v1/instances", **request))
        assert (status, got) == (400, code) and words in message, (request.get("json"), message)
        assert "\n" not in message
    too_large = api.post("/api/v1/instances", content=b" " * (9 * 1024 * 1024 + 1))
    assert error(too_large)[:2] == (413, "payload_too_large")
    assert client.list().items == [] and client.queue_depths() == []

    api.post("/api/v1/instances", json={"name": "wf", "instance_id": "taken"}).raise_for_status()
    status, code, message = error(api.post("/api/v1/instances", json={"name": "other", "instance_id": "taken"}))
    assert (status, code) == (409, "instance_exists") and "'taken' already exists" in message
    assert [s.name for s in client.list().items] == ["wf"]


def test_events_and_operations_answer_202_404_and_409(served: Served) -> None:
    api, client = served.api, served.client
    client.start("nightly", None, instance_id="a")
    assert api.post("/api/v1/instances/a/events/Go").status_code == 202  # no body: data null
    assert api.post("/api/v1/instances/a/events/Go", content=b"[1, 2]").status_code == 202
    assert error(api.post("/api/v1/instances/a/events/Go", content=b"{"))[:2] == (400, "invalid_body")
    assert error(api.post("/api/v1/instances/a/events/Go", json="x" * (4 * 1024 * 1024)))[:2] == (
        400,
        "invalid_payload",
    )
    messages = [m.event for m in served.store.pending_messages("a")]
    assert [(e.name, e.input) for e in messages if isinstance(e, EventRaised)] == [("Go", None), ("Go", [1, 2])]

    for operation in ("suspend", "resume"):
        response = api.post(f"/api/v1/instances/a/{operation}", json={"reason": f"{operation} it"})
        assert (response.status_code, response.json()) == (202, {"instance_id": "a", "accepted": True})
    assert error(api.post("/api/v1/instances/a/terminate", json={"reason": 3}))[:2] == (400, "invalid_body")
    assert error(api.post("/api/v1/instances/a/terminate", json={"why": "x"}))[:2] == (400, "invalid_body")
    assert error(api.delete("/api/v1/instances/a"))[:2] == (409, "invalid_state")
    assert api.post("/api/v1/instances/a/terminate", json={"reason": "duplicate"}).status_code == 202
    with perdure.Worker(shop, served.store, poll_interval=0.02):
        assert client.wait("a", timeout=30).status == perdure.OrchestrationStatus.TERMINATED
    status, code, message = error(api.post("/api/v1/instances/a/terminate"))
    assert (status, code) == (409, "invalid_state") and "already TERMINATED" in message
    assert error(api.post("/api/v1/instances/a/events/Go"))[:2] == (409, "invalid_state")

    for method, path in (
        ("GET", "/api/v1/instances/nope"),
        ("GET", "/api/v1/instances/nope/history"),
        ("GET", "/api/v1/instances/nope/diagnosis"),
        ("POST", "/api/v1/instances/nope/events/Go"),
        ("POST", "/api/v1/instances/nope/terminate"),
        ("DELETE", "/api/v1/instances/nope"),
        ("GET", "/api/v1/no/such/route"),
    ):
        assert error(api.request(method, path))[:2] == (404, "not_found"), path
    assert error(api.put("/api/v1/instances"))[:2] == (405, "method_not_allowed")


def test_history_pages_and_reads_earlier_executions(served: Served) -> None:
    api = served.api

    async def counter(ctx: perdure.OrchestrationContext, n: int) -> int:
        if n < 2:
            ctx.continue_as_new(n + 1)
        return n

    app = perdure.App()
    app.orchestration(counter)
    served.client.start("counter", 0, instance_id="c")
    with perdure.Worker(app, served.store, poll_interval=0.02):
        served.client.wait("c", timeout=30)
    first = api.get("/api/v1/instances/c/history", params={"execution": 1}).json()
    assert first["items"][-1]["kind"] == "ContinuedAsNew" and first["items"][-1]["fields"]["input"] == 1
    pages, cursor = [], None
    while True:
        page = api.get("/api/v1/instances/c/history", params={"limit": 2, "cursor": cursor}).json()
        pages.append(page["items"])
        if not (cursor := page["next_cursor"]):
            break
    flat = [e for p in pages for e in p]
    assert [e["sequence"] for e in flat] == list(range(len(flat))) and all(len(p) <= 2 for p in pages)
    assert flat == api.get("/api/v1/instances/c/history", params={"execution": 3}).json()["items"]
    status, code, message = error(api.get("/api/v1/instances/c/history", params={"execution": 4}))
    assert (status, code) == (400, "invalid_input") and "has executions 1 to 3, not 4" in message
    assert error(api.get("/api/v1/instances/c/history", params={"execution": "x"}))[:2] == (400, "invalid_parameter")


def test_ids_with_slashes_percent_signs_and_spaces_are_one_path_segment(served: Served) -> None:
    api = served.api
    for iid in ("orders/7", "100% done", "a b/c%2Fd"):
        assert api.post("/api/v1/instances", json={"name": "wf", "instance_id": iid}).status_code == 201
        encoded = json.dumps(iid)[1:-1].replace("%", "%25").replace("/", "%2F").replace(" ", "%20")
        assert api.get(f"/api/v1/instances/{encoded}").json()["instance_id"] == iid
        assert api.post(f"/api/v1/instances/{encoded}/events/a%2Fb").status_code == 202
        [event] = [m.event for m in served.store.pending_messages(iid) if isinstance(m.event, EventRaised)]
        assert event.name == "a/b"


def test_the_fleet_routes_show_workers_queues_counts_and_dead_letters(served: Served) -> None:
    api, client = served.api, served.client
    client.start("order_saga", ORDER, instance_id="o1")
    client.start("nobody_runs_this", None, instance_id="x1")
    served.store.enqueue_messages([perdure.store.base.Message("ghost", EventRaised(name="E"))])

    queues = api.get("/api/v1/queues").json()["items"]
    assert {(q["kind"], q["name"], q["depth"]) for q in queues} == {
        ("orchestration", None, 1),
        ("orchestration", "nobody_runs_this", 1),
        ("orchestration", "order_saga", 1),
    }
    assert all(q["visible"] == 1 and q["oldest_visible_age_s"] >= 0 for q in queues)
    counts = api.get("/api/v1/counts").json()
    assert counts["total"] == 2 and counts["by_status"]["PENDING"] == 2 and counts["by_status"]["FAILED"] == 0
    assert counts["by_name"] == {"nobody_runs_this": {"PENDING": 1}, "order_saga": {"PENDING": 1}}
    assert api.get("/api/v1/workers").json() == {"items": [], "next_cursor": None}
    assert api.get("/api/v1/dead-letters").json() == {"items": []}

    with perdure.Worker(shop, served.store, poll_interval=0.02, heartbeat_interval=0.05) as worker:
        wait_until(lambda: client.get("o1").status.value == "RUNNING", what="o1 running")
        [row] = api.get("/api/v1/workers").json()["items"]
        assert row["worker_id"] == worker.worker_id and row["alive"] is True and row["activity_concurrency"] == 256
        assert "order_saga@1" in row["orchestrations"] and "charge" in row["activities"]
        assert row["heartbeat_at"].endswith("Z") and row["heartbeat_age_s"] < 15
        fleet = api.get("/api/v1/diagnosis", params={"stalled_after": 0, "limit": 10}).json()
        assert fleet["totals"]["RUNNING"] == 1 and fleet["workers"][0]["worker_id"] == worker.worker_id
        assert {s["signal"] for s in fleet["signals"]} >= {"workers and queues", "external event receipt"}
        assert fleet["stalled_total"] >= 1
    assert error(api.get("/api/v1/diagnosis", params={"stalled_after": "-1"}))[:2] == (400, "invalid_parameter")
    assert error(api.get("/api/v1/workers", params={"limit": "0"}))[:2] == (400, "invalid_parameter")


def test_a_failed_instance_is_rewound_restarted_and_reset_over_http(served: Served) -> None:
    """``declined`` fails on its activity every time: a rewind runs the activity again (and
    fails again), a restart is a new run, a reset to turn 1 is one more; bad requests are 400,
    a rewind of an instance that did not fail is 409."""
    api, client = served.api, served.client
    client.start("declined", None, instance_id="d")
    with perdure.Worker(shop, served.store, poll_interval=0.02):
        first = client.wait("d", timeout=30)
        assert first.status == perdure.OrchestrationStatus.FAILED
        answer = api.post("/api/v1/instances/d/rewind", json={"reason": "card fixed?"})
        assert (answer.status_code, answer.json()) == (202, {"instance_id": "d", "accepted": True})
        wait_until(lambda: "ExecutionRewound" in _kinds(api, "d"), what="the rewind")
        again = client.wait("d", timeout=30)
        assert again.status == perdure.OrchestrationStatus.FAILED and again.run_id == first.run_id

        assert api.post("/api/v1/instances/d/restart").status_code == 202
        wait_until(lambda: client.get("d").run_id != first.run_id, what="the restart")
        restarted = client.wait("d", timeout=30)

        assert error(api.post("/api/v1/instances/d/reset", json={"to_turn": "1"}))[:2] == (400, "invalid_body")
        assert error(api.post("/api/v1/instances/d/reset", json={}))[:2] == (400, "invalid_body")
        reset = api.post("/api/v1/instances/d/reset", json={"to_turn": 1, "reason": "once more"})
        assert reset.status_code == 202 and reset.json()["run_id"] not in (first.run_id, restarted.run_id)
        assert client.wait("d", timeout=30).run_id == reset.json()["run_id"]
    status, code, message = error(api.post("/api/v1/instances/d/reset", json={"to_turn": 9}))
    assert (status, code) == (409, "invalid_state") and "its history has turns 1 to 2, not 9" in message
    client.start("nightly", None, instance_id="n")
    status, code, message = error(api.post("/api/v1/instances/n/rewind"))
    assert (status, code) == (409, "invalid_state") and "only a FAILED instance can be rewound" in message


def _kinds(api, iid: str) -> list[str]:
    return [e["kind"] for e in api.get(f"/api/v1/instances/{iid}/history").json()["items"]]
