"""``perdure web``: serves the store, prints a generated token once (and then listens on
127.0.0.1 only), never prints a token it was given, and says what to install without the
extra."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.web.conftest import TOKEN
from tests.web.test_security import csrf_of

PERDURE = [sys.executable, "-m", "perdure.cli"]


def run_web(store_url: str, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    """Start ``perdure --store URL web --port 0 ARGS``; return the process, its URL and the
    lines it printed so far."""
    environment = {k: v for k, v in os.environ.items() if k != "PERDURE_WEB_TOKEN"} | (env or {})
    proc = subprocess.Popen(
        [*PERDURE, "--store", store_url, "web", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", line)
        if match:
            return proc, match.group(1), lines
    proc.kill()
    raise AssertionError("perdure web did not start:\n" + "".join(lines))


def stop(proc: subprocess.Popen, lines: list[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return "".join(lines) + out


def test_without_a_token_it_generates_one_prints_it_once_and_serves_localhost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    proc, base, lines = run_web(url)
    try:
        assert base.startswith("http://127.0.0.1:")
        [token] = re.findall(r"access token \(shown once\): (\S+)", "".join(lines))
        assert len(token) >= 40
        with httpx.Client(base_url=base) as http:
            assert http.get("/api/v1/instances").status_code == 401
            created = http.post("/api/v1/instances", json={"name": "wf"}, headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 201
            form = http.get("/login")
            assert http.post("/login", data={"csrf_token": csrf_of(form.text), "token": token}).status_code == 303
            assert created.json()["instance_id"] in http.get("/instances").text
    finally:
        output = stop(proc, lines)
    assert output.count(token) == 1  # the access log and the rest never repeat it
    assert "perdure web: sqlite:///" in output


def test_a_given_token_is_never_printed_and_a_public_host_needs_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    proc, base, lines = run_web(url, "--read-only", env={"PERDURE_WEB_TOKEN": TOKEN})
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            assert http.get("/api/v1/instances").json() == {"items": [], "next_cursor": None}
            assert http.post("/api/v1/instances", json={"name": "wf"}).status_code == 403
    finally:
        output = stop(proc, lines)
    assert TOKEN not in output and "(read-only)" in output

    refused = subprocess.run(
        [*PERDURE, "--store", url, "web", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PERDURE_WEB_TOKEN"},
        timeout=60,
    )
    assert refused.returncode == 2
    assert "needs a token you chose" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_without_the_web_extra_it_says_what_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"  # makes `import uvicorn` fail, as without the extra
    blocker.write_text("import sys\nsys.modules['uvicorn'] = None\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run(
        [*PERDURE, "--store", f"sqlite:///{tmp_path / 'x.db'}", "web"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: perdure web needs the web extra: pip install "perdure[web]"'
    listed = subprocess.run([*PERDURE, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0 and "web" in listed.stdout
