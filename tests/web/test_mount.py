"""docs/web.md's example runs as written: the dashboard and API mounted under /perdure in
another Starlette app, with links and redirects under the mount point."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import httpx
import pytest

import perdure
from tests.web.conftest import TOKEN, serve
from tests.web.test_security import csrf_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "web.md"


def mounted_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(# service\.py.*?)```", text, re.S)
    assert code, "docs/web.md lost its mounting example"
    return code.group(1)


def test_the_documented_mount_serves_the_api_and_the_dashboard_under_its_path(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERDURE_STORE", store_url)
    monkeypatch.setenv("PERDURE_WEB_TOKEN", TOKEN)
    script = tmp_path / "service.py"
    script.write_text(mounted_example(), encoding="utf-8")
    namespace = runpy.run_path(str(script))
    store: perdure.Store = namespace["store"]
    try:
        perdure.Client(store).start("wf", {"n": 1}, instance_id="orders/7")
        with serve(namespace["app"]) as url, httpx.Client(base_url=url) as http:
            assert http.get("/health").text == "ok"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert http.get("/perdure/api/v1/instances/orders%2F7", headers=auth).json()["input"] == {"n": 1}
            assert http.get("/perdure/api/v1/instances").status_code == 401
            assert http.get("/perdure/api/v1/nope", headers=auth).json()["error"]["code"] == "not_found"

            assert http.get("/perdure/instances").headers["location"] == "/perdure/login?next=%2Fperdure%2Finstances"
            form = http.get("/perdure/login")
            assert 'action="/perdure/login"' in form.text and 'href="/perdure/static/app.css"' in form.text
            landed = http.post(
                "/perdure/login", data={"csrf_token": csrf_of(form.text), "token": TOKEN, "next": "/perdure/fleet"}
            )
            assert landed.headers["location"] == "/perdure/fleet"
            page = http.get("/perdure/instances").text
            assert 'href="/perdure/instances/orders%2F7"' in page
            instance = http.get("/perdure/instances/orders%2F7")
            assert instance.status_code == 200 and "orders/7" in instance.text
            assert 'action="/perdure/instances/orders%2F7/actions/terminate"' in instance.text
            assert http.get("/perdure/static/app.css").status_code == 200
    finally:
        store.close()
