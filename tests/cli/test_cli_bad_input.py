"""Garbage arguments to every ``perdure`` command (each a real ``perdure`` process): one
``error: ...`` line on stderr, a non-zero exit status (2 for usage errors and unknown
instances, 3 for "no result yet"), never a traceback, and nothing stored or changed."""

from __future__ import annotations

import sqlite3

import pytest

import perdure
from perdure.core.history import TurnStarted
from perdure.store.base import InstanceQuery, Outcome, TurnCommit

from .helpers import perdure as run

USAGE, NOT_FOUND, ERROR, NOT_YET = 2, 2, 1, 3

# (arguments after --store URL, exit status, text the error line must contain)
CASES = [
    (["no-such-command"], USAGE, "No such command"),
    (["start"], USAGE, "Missing argument"),
    (["start", "wf", "{bad json"], ERROR, "input is not valid JSON"),
    (["start", "wf", "acme"], ERROR, """a string needs JSON quotes: '"acme"'"""),
    (["start", "wf", "[1, NaN]"], ERROR, "not JSON-serialisable"),
    (["start", "", "1"], ERROR, "must not be empty"),
    (["start", "wf", "1", "--id", ""], ERROR, "instance id must not be empty"),
    (["start", "wf", "1", "--id", "a::sub::1"], ERROR, "reserved sub-orchestration marker"),
    (["start", "wf", "1", "--id", "x" * 300], ERROR, "the limit is 256"),
    (["start", "wf", "1", "--id", "a\tb"], ERROR, "control character"),
    (["start", "wf", "1", "--id", "live-1"], ERROR, "already exists"),
    (["start", "wf", "1", "--wait", "soon"], USAGE, "'soon' is not a valid float"),
    (["start", "wf", "1", "--bogus"], USAGE, "No such option"),
    (["status"], USAGE, "Missing argument"),
    (["status", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["status", "corrupt-1", "--history"], ERROR, "history of instance 'corrupt-1' cannot be read"),
    (["list", "--status", "WHATEVER"], ERROR, "unknown status 'WHATEVER'"),
    (["list", "--limit", "0"], USAGE, "0 is not in the range"),
    (["list", "--limit", "many"], USAGE, "'many' is not a valid integer"),
    (["list", "--cursor", "garbage!!"], ERROR, "invalid list cursor"),
    (["list", "--created-after", "yesterday"], ERROR, "'yesterday' is neither an ISO 8601 time"),
    (["list", "--prefix", ""], ERROR, "prefix must be a non-empty string"),
    (["start", "wf", "@missing.json"], ERROR, "cannot read input from 'missing.json'"),
    (["start", "wf", "1", "--wait", "-1"], USAGE, "-1.0 is not in the range"),
    (["result"], USAGE, "Missing argument"),
    (["result", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["result", "live-1"], NOT_YET, "is PENDING: no result yet"),
    (["result", "live-1", "--wait", "0.2"], NOT_YET, "no result yet after waiting 0.2 s"),
    (["history", "live-1", "--execution", "0"], USAGE, "0 is not in the range"),
    (["history", "live-1", "--execution", "2"], ERROR, "has executions 1 to 1, not 2"),
    (["history", "live-1", "--execution", "1", "--all-executions"], USAGE, "not both"),
    (["terminate", "live-1", "--query"], USAGE, "give an INSTANCE_ID or --query, not both"),
    (["terminate", "live-1", "--status", "RUNNING"], USAGE, "the filters, --yes and --dry-run go with --query"),
    (["purge", "--query", "--status", "BOGUS"], ERROR, "unknown status 'BOGUS'"),
    (["suspend", "--query", "--created-before", "soon"], ERROR, "'soon' is neither an ISO 8601 time"),
    (["--log-level", "loud", "list"], USAGE, "'loud' is not one of"),
    (["list", "--log-format", "xml"], USAGE, "'xml' is not one of"),
    (["status", "live-1", "--store", "garbage"], ERROR, "is not a URL"),
    (["history"], USAGE, "Missing argument"),
    (["history", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["history", "corrupt-1"], ERROR, "history of instance 'corrupt-1' cannot be read"),
    (["raise", "live-1"], USAGE, "Missing argument"),
    (["raise", "live-1", "go", "{bad"], ERROR, "event data is not valid JSON"),
    (["raise", "live-1", ""], ERROR, "event name must be a non-empty string"),
    (["raise", "nope", "go"], NOT_FOUND, "no instance with id 'nope'"),
    (["raise", "done-1", "go"], ERROR, "already COMPLETED"),
    (["terminate"], USAGE, "give an INSTANCE_ID, or --query"),
    (["terminate", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["terminate", "done-1"], ERROR, "already COMPLETED"),
    (["suspend", "nope", "--reason"], USAGE, "requires an argument"),
    (["suspend", "done-1"], ERROR, "already COMPLETED"),
    (["resume", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["purge"], USAGE, "give an INSTANCE_ID, or --query"),
    (["purge", "live-1"], ERROR, "only completed, failed or terminated instances"),
    (["purge", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["worker"], USAGE, "Missing option '--app'"),
    (["worker", "--app", "garbage"], ERROR, "--app must look like module:attribute"),
    (["worker", "--app", "no_such_module_xyz:app"], ERROR, "cannot import module 'no_such_module_xyz'"),
    (["worker", "--app", "json:nothing"], ERROR, "module 'json' has no attribute 'nothing'"),
    (["worker", "--app", "json:dumps"], ERROR, "not a perdure.App"),
    (["worker", "--app", "json:dumps", "--lease", "-1"], USAGE, "-1.0 is not in the range"),
    (["worker", "--app", "json:dumps", "--local-activity-budget", "-1"], USAGE, "-1.0 is not in the range"),
    (["demo", "--store", "garbage"], ERROR, "is not a URL"),
    (["diagnose", "nope"], NOT_FOUND, "no instance with id 'nope'"),
    (["diagnose", "--limit", "-5"], USAGE, "-5 is not in the range"),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with a running, a completed and a corrupted instance."""
    path = tmp_path_factory.mktemp("cli") / "bad.db"
    url = f"sqlite:///{path}"
    store = perdure.open_store(url)
    try:
        client = perdure.Client(store)
        for iid in ("live-1", "done-1", "corrupt-1"):
            client.start("wf", None, instance_id=iid)
        for iid in ("done-1", "corrupt-1"):
            [item] = store.lock_orchestrations("test", lease_seconds=30, instance_ids=[iid])
            events = [TurnStarted(timestamp=1.0), *(m.event for m in item.messages)]
            completed = TurnCommit(
                instance_id=iid,
                lease_token=item.lease_token,
                execution_id=1,
                new_events=events,
                consumed=[m.message_id for m in item.messages],
                status=perdure.OrchestrationStatus.COMPLETED,
            )
            assert store.commit_turns([completed]) == [Outcome.OK]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE history SET event = '{not json' WHERE instance_id = 'corrupt-1'")
    return url


def snapshot(url: str) -> list:
    """Everything the store holds that a failed command must not change."""
    store = perdure.open_store(url)
    try:
        return [
            (r.instance_id, r.status, r.history_event_count, len(store.pending_messages(r.instance_id)))
            for r in store.list_instances(InstanceQuery()).items
        ]
    finally:
        store.close()


@pytest.mark.parametrize(("args", "code", "text"), CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_garbage_arguments_give_one_error_line_and_change_nothing(url, args, code, text, tmp_path):
    """One case of :data:`CASES`."""
    before = snapshot(url)
    result = run("--store", url, *args, code=code, cwd=tmp_path)
    lines = result.error_lines
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert text in lines[0]
    assert "Traceback" not in result.out + result.err
    assert result.out == ""
    assert snapshot(url) == before


@pytest.mark.parametrize(
    "store_url",
    ["garbage", "mysql://somewhere/db", "sqlite://", "sqlite:////no/such/directory/x.db"],
)
def test_a_bad_store_url_is_one_error_line(store_url):
    """A store URL that is malformed, of an unknown kind or unreachable."""
    for command in (["list"], ["start", "wf"]):
        result = run("--store", store_url, *command, code=ERROR)
        lines = result.error_lines
        assert len(lines) == 1 and lines[0].startswith("error: "), result.err
        assert "Traceback" not in result.out + result.err


def test_no_new_instance_was_stored_by_the_failed_commands(url, tmp_path):
    """After a sample of the failed commands, the store still holds exactly its three instances."""
    for args, _code, _text in CASES[::4]:
        run("--store", url, *args, code=None, cwd=tmp_path)
    assert [row[0] for row in snapshot(url)] == ["corrupt-1", "done-1", "live-1"]
