"""Security of the API and the dashboard: no route without the token (401, nothing changed),
read-only mode (403, nothing changed), sessions, CSRF, redirects, headers, and no secret in
any answer."""

from __future__ import annotations

import re

import httpx
import pytest

import perdure
from perdure.web import create_app
from perdure.web.errors import mask_secrets
from tests.web.conftest import TOKEN, Served, served_app

# Every API route, with a request that would change something if it were let through.
ROUTES = [
    ("GET", "/api/v1/instances", None),
    ("POST", "/api/v1/instances", {"name": "wf", "instance_id": "intruder"}),
    ("GET", "/api/v1/instances/victim", None),
    ("DELETE", "/api/v1/instances/victim", None),
    ("GET", "/api/v1/instances/victim/history", None),
    ("GET", "/api/v1/instances/victim/diagnosis", None),
    ("POST", "/api/v1/instances/victim/events/Go", {"x": 1}),
    ("POST", "/api/v1/instances/victim/suspend", {}),
    ("POST", "/api/v1/instances/victim/resume", {}),
    ("POST", "/api/v1/instances/victim/terminate", {}),
    ("POST", "/api/v1/instances/victim/rewind", {}),
    ("POST", "/api/v1/instances/victim/restart", {}),
    ("POST", "/api/v1/instances/victim/reset", {"to_turn": 1}),
    ("GET", "/api/v1/counts", None),
    ("GET", "/api/v1/diagnosis", None),
    ("GET", "/api/v1/workers", None),
    ("GET", "/api/v1/queues", None),
    ("GET", "/api/v1/dead-letters", None),
]
MUTATIONS = [(m, p, b) for m, p, b in ROUTES if m != "GET"]


def snapshot(store: perdure.Store) -> tuple:
    """Everything a refused request could have changed."""
    client = perdure.Client(store)
    states = [(s.instance_id, s.status, s.last_updated_at) for s in client.list().items]
    messages = [(m.message_id, type(m.event).__name__) for m in store.pending_messages("victim")]
    queues = [(q.kind, q.name, q.depth) for q in client.queue_depths()]
    return states, messages, queues


def test_the_route_table_of_these_tests_covers_every_api_route(store: perdure.Store) -> None:
    app = create_app(store, token=TOKEN)
    [api] = [r for r in app.routes if getattr(r, "path", "") == "/api/v1"]
    served = {(method, route.path) for route in api.routes for method in route.methods - {"HEAD"}}
    tested = {
        (m, re.sub(r"/instances/victim", "/instances/{instance_id:iid}", p)[len("/api/v1") :]) for m, p, _ in ROUTES
    }
    tested = {(m, p.replace("/events/Go", "/events/{event_name:iid}")) for m, p in tested}
    assert served == tested


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_every_route_refuses_a_missing_or_wrong_token_and_changes_nothing(served: Served, header: str | None) -> None:
    served.client.start("wf", None, instance_id="victim")
    before = snapshot(served.store)
    headers = {"Authorization": header} if header else {}
    for method, path, body in ROUTES:
        response = served.anon.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
    assert snapshot(served.store) == before
    for method, path, _ in ROUTES:  # unknown paths too: nothing is revealed without the token
        assert served.anon.request(method, path + "/nope").status_code == 401


def test_read_only_mode_serves_reads_and_refuses_every_mutation(store: perdure.Store) -> None:
    perdure.Client(store).start("wf", None, instance_id="victim")
    before = snapshot(store)
    with served_app(store, read_only=True) as served:
        for method, path, body in MUTATIONS:
            response = served.api.request(method, path, json=body)
            assert response.status_code == 403, (method, path)
            assert response.json()["error"] == {
                "code": "read_only",
                "message": "this perdure web server is read-only: it serves reads only",
            }
        for method, path, _ in ROUTES:
            if method == "GET":
                assert served.api.get(path).status_code == 200, path
        assert snapshot(store) == before

        page = log_in(served.anon, TOKEN)
        assert "read-only" in page and "Raise event" not in served.anon.get("/instances/victim").text
        csrf = csrf_of(served.anon.get("/instances/victim").text)
        refused = served.anon.post(
            "/instances/victim/actions/terminate", data={"csrf_token": csrf}, follow_redirects=True
        )
        assert "read-only" in refused.text
    assert snapshot(store) == before


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def log_in(http: httpx.Client, token: str) -> str:
    """Log in through the form; return the page it lands on."""
    form = http.get("/login")
    response = http.post("/login", data={"csrf_token": csrf_of(form.text), "token": token, "next": ""})
    assert response.status_code == 303, response.text
    return http.get(response.headers["location"]).text


def test_pages_need_a_session_from_the_login_form(served: Served) -> None:
    http = served.anon
    assert http.get("/").headers["location"] == "/instances"
    for path in ("/instances", "/fleet", "/instances/x", "/instances/x/live", "/fleet/live"):
        response = http.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    fragment = http.get("/fleet/live", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"].startswith("/login")

    form = http.get("/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    cookie = form.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    wrong = http.post("/login", data={"csrf_token": csrf_of(form.text), "token": "not-the-token-at-all"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    no_csrf = http.post("/login", data={"token": TOKEN})
    assert no_csrf.status_code == 403 and http.get("/instances").status_code == 303

    page = log_in(http, TOKEN)
    assert "Instances" in page and TOKEN not in page
    assert TOKEN not in str(http.cookies)
    assert http.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    assert http.get("/instances").status_code == 303


def test_login_redirects_only_inside_the_app(served: Served) -> None:
    for target, landing in (
        ("/instances?status=RUNNING", "/instances?status=RUNNING"),
        ("https://evil.example/", "/instances"),
        ("//evil.example/x", "/instances"),
        ("/\\evil.example", "/instances"),
    ):
        with httpx.Client(base_url=served.url) as http:
            form = http.get("/login")
            response = http.post("/login", data={"csrf_token": csrf_of(form.text), "token": TOKEN, "next": target})
            assert response.headers["location"] == landing, target


def test_actions_need_the_csrf_token_and_change_nothing_without_it(served: Served) -> None:
    served.client.start("wf", None, instance_id="victim")
    before = snapshot(served.store)
    page = log_in(served.anon, TOKEN)
    for path, data in (
        ("/instances/victim/actions/terminate", {"reason": "x"}),
        ("/instances/victim/events", {"name": "Go", "data": "1"}),
    ):
        for token in (None, "forged-token-value-000000", csrf_of(page)[:-1]):
            form = dict(data, **({"csrf_token": token} if token else {}))
            response = served.anon.post(path, data=form)
            assert response.status_code == 403, (path, token)
    assert snapshot(served.store) == before
    # another site's page cannot use the session either: the cookie is SameSite=Strict and
    # without the session's CSRF token the post is refused, as above.
    ok = served.anon.post("/instances/victim/events", data={"name": "Go", "data": "[1]", "csrf_token": csrf_of(page)})
    assert ok.status_code == 303 and [type(m.event).__name__ for m in served.store.pending_messages("victim")][-1] == (
        "EventRaised"
    )


def test_answers_carry_security_headers_and_no_secret(served: Served) -> None:
    page = log_in(served.anon, TOKEN)
    for response in (served.anon.get("/instances"), served.api.get("/api/v1/instances"), served.anon.get("/login")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert TOKEN not in response.text
    assert TOKEN not in page
    assert served.store.url.split("@")[-1] not in page or "@" not in served.store.url


def test_a_token_must_be_long_enough() -> None:
    store = perdure.open_store("sqlite://:memory:")
    try:
        with pytest.raises(perdure.InvalidInputError, match="at least 16 characters"):
            create_app(store, token="short")
    finally:
        store.close()


def test_secrets_are_masked_in_messages() -> None:
    text = "cannot open postgresql://app:s3cr3t@db:5432/orders (password=hunter2 host=db)"
    masked = mask_secrets(text)
    assert "s3cr3t" not in masked and "hunter2" not in masked
    assert masked == "cannot open postgresql://app:***@db:5432/orders (password=*** host=db)"
