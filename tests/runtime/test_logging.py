"""What the library logs: standard ``logging`` only (no handlers installed), and records
about an instance carry its ids as attributes."""

from __future__ import annotations

import io
import json
import logging

import perdure
from perdure.logs import ContextFilter, JsonFormatter, configure_logging

app = perdure.App()
user_log = logging.getLogger("my_app")


@app.activity
def charge(n: int) -> int:
    user_log.info("charging %d", n)
    if n < 0:
        raise ValueError("negative amount")
    return n


@app.orchestration
async def order(ctx: perdure.OrchestrationContext, n: int) -> int:
    ctx.logger.info("order for %d", n)
    return await ctx.call_activity(charge, n)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_records_about_an_instance_carry_its_ids_and_no_handler_is_installed(store):
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    collect = Collect()
    root.addHandler(collect)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        client = perdure.Client(store)
        with perdure.Worker(app, store, poll_interval=0.05):
            client.wait(client.start(order, 5, instance_id="o-1"), timeout=20)
            client.wait(client.start(order, -1, instance_id="o-2"), timeout=20)
    finally:
        root.removeHandler(collect)
        root.setLevel(level)
    assert root.handlers == handlers_before
    assert not logging.getLogger("perdure").handlers and not logging.getLogger("perdure.worker").handlers

    def ids(message: str) -> tuple[object, object, object, str]:
        record = next(r for r in collect.records if r.getMessage() == message)
        return record.instance_id, record.execution_id, record.task_id, record.levelname

    assert ids("order for 5") == ("o-1", 1, None, "INFO")
    assert ids("charging 5") == ("o-1", 1, 1, "INFO")  # the user's logger, through ContextFilter
    assert ids("activity 'charge' failed on attempt 1: ValueError: negative amount") == ("o-2", 1, 1, "WARNING")
    assert (
        ids(
            "instance 'o-2' failed: perdure.errors.ActivityError: activity 'charge' failed: ValueError: negative amount"
        )[3]
        == "ERROR"
    )
    assert ids("instance 'o-1' completed") == ("o-1", 1, None, "INFO")


def test_json_formatter_and_configure_logging_replace_their_own_handler():
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream)
    try:
        again = configure_logging("INFO", "json", stream)
        assert [h for h in logging.getLogger().handlers if h.get_name() == "perdure"] == [again]
        logging.getLogger("perdure.test").info("hello", extra={"instance_id": "x-1"})
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().removeHandler(again)
    record = json.loads(stream.getvalue())
    assert record["message"] == "hello" and record["instance_id"] == "x-1" and record["task_id"] is None
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "m"})), str)
