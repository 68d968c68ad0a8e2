"""Fixtures of the web tests: the app served by a real uvicorn on a free port, over a real
store (SQLite and PostgreSQL, via ``store_url``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

import perdure
from perdure.web import create_app

TOKEN = "test-token-0123456789abcdef"


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@dataclass
class Served:
    """A running server: its URL, the store behind it, a client on that store, and HTTP
    clients with (``api``) and without (``anon``) the bearer token."""

    url: str
    store: perdure.Store
    client: perdure.Client
    api: httpx.Client
    anon: httpx.Client


@contextmanager
def served_app(store: perdure.Store, **options: Any) -> Iterator[Served]:
    """``create_app(store, token=TOKEN, **options)`` behind uvicorn."""
    options.setdefault("token", TOKEN)
    with serve(create_app(store, **options)) as url:
        headers = {"Authorization": f"Bearer {options['token']}"}
        with (
            httpx.Client(base_url=url, headers=headers, timeout=30) as api,
            httpx.Client(base_url=url, timeout=30) as anon,
        ):
            yield Served(url, store, perdure.Client(store), api, anon)


@pytest.fixture
def served(store: perdure.Store) -> Iterator[Served]:
    """The app over the test's store (both backends), read-write."""
    with served_app(store) as s:
        yield s


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
