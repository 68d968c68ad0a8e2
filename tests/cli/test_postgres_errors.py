"""PostgreSQL connection errors through the CLI: one line with the server's reason, at once
for permanent faults; passwords never printed; a missing psycopg names the extra."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from .helpers import ROOT, Background, environment
from .helpers import perdure as run


@pytest.fixture(scope="module")
def server_url() -> str:
    from tests import pgserver

    return pgserver.session_server().url


def _with(url: str, *, database: str | None = None, password: str | None = None, query: str = "") -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + (database or parts.path.lstrip("/")), query, ""))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"database": "no_such_database_xyz"}, 'database "no_such_database_xyz" does not exist'),
        ({"query": "bogus_option=1"}, 'invalid URI query parameter: "bogus_option"'),
    ],
)
def test_a_permanent_connection_error_is_one_line_at_once(server_url, change, reason):
    url = _with(server_url, password="s3cret-pw", **change)
    started = time.monotonic()
    ran = run("list", "--store", url, code=1)
    assert time.monotonic() - started < 5  # no waiting out the connect timeout
    assert len(ran.error_lines) == 1 and ran.err.startswith("error: cannot connect to PostgreSQL at ")
    assert reason in ran.err
    assert "s3cret-pw" not in ran.err


def test_an_unreachable_server_names_the_cause_without_the_password():
    ran = run("list", "--store", "postgresql://me:s3cret-pw@127.0.0.1:1/db", code=1, timeout=60)
    *told, error = ran.error_lines
    assert len(told) == 1 and "is not reachable yet" in told[0]  # one log line while it retries
    assert error.startswith("error: cannot connect to PostgreSQL at postgresql://me@127.0.0.1:1/db within 10 s")
    assert "Connection refused" in error
    assert "s3cret-pw" not in ran.err and "postgresql://me@127.0.0.1:1/db" in ran.err


def test_the_worker_banner_masks_the_password():
    from tests import pgserver

    with pgserver.fresh_database() as url:
        masked = _with(url, password="s3cret-pw")  # the test server trusts every password
        w = Background("worker", "--app", "tests.cli.cli_app:app", "--store", masked, cwd=ROOT)
        w.wait_for_log(" serves ")
        ran = w.stop()
    assert ran.code == 0 and "s3cret-pw" not in ran.err + ran.out
    assert f" serves {url}:" in ran.err


def test_a_missing_psycopg_says_which_extra_to_install():
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.argv = ['perdure', 'list', '--store', "
        "'postgresql://u@127.0.0.1/db']; from perdure.cli import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment(), cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: a PostgreSQL store needs psycopg, which is not installed")
    assert proc.stderr.rstrip().endswith('pip install "perdure[postgres]"') and proc.stderr.count("\n") == 1
