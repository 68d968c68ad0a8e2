"""Run the code blocks of the docs (README.md and docs/*.md) the way a reader would.

Every fenced block is one of these, by its language:

- ``python``: executed. The blocks of a page run in order in one namespace, in a fresh
  directory that is the working directory and on ``sys.path``. A block whose first line is
  ``# file: NAME.py`` is saved under that name (so later blocks can import it and shell
  blocks can give ``--app NAME:app``) and then run as ``__main__``.
- ``bash``: each line is run by ``bash`` in that same directory, with this environment's
  ``perdure`` first on ``PATH`` (the real entry point, a subprocess; the store is the
  default ``perdure.db`` there unless the line says otherwise). A line must exit 0, or
  with the code of its trailing ``# exit N`` comment. A ``perdure worker`` line starts a
  worker in the background (as in a second terminal) that runs until the page ends, then
  gets Ctrl-C and must exit 0. ``export NAME=value`` lines set the environment of the lines
  after them.
- ``output``: what a command prints; shown, not run (the language marks it).
- ``ini`` (a systemd unit) and ``dockerfile``: configuration; every ``perdure`` command
  line in it (``ExecStart=``, ``CMD [...]``) is parsed by the real CLI.

An HTML comment on the line before a block changes that:
``<!-- docs-test: parse -->`` (for a PostgreSQL host that does not exist here): python is
only compiled and the ``perdure`` lines of a shell block are only parsed by the CLI;
``<!-- docs-test: skip REASON -->`` does not run it (REASON is required: installing from
PyPI, a benchmark of minutes); ``<!-- docs-test: setup -->`` marks the README's set-up
commands, which ``test_docs.py`` checks against ``.ci/run``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN = {"python", "bash"}
SHOWN = {"output"}
CONFIG = {"ini", "dockerfile"}
DATA = {"json", "yaml"}  # example payloads, responses, scrape configs: each must parse
KNOWN = RUN | SHOWN | CONFIG | DATA

_FENCE = re.compile(r"^```([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->$")
_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, text and marker."""

    page: Path
    line: int
    lang: str
    text: str
    marker: str | None = None
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(1)
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = _MARKER.match(previous)
        found.append(
            Block(
                page,
                start + 1,
                lang,
                "\n".join(body) + "\n",
                marker.group(1) if marker else None,
                marker.group(2) if marker else "",
            )
        )
        i += 1
    return found


def shell_lines(text: str) -> Iterator[str]:
    """The commands of a shell block: continuation lines joined, blanks and comments left out."""
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.strip()


def parse_command(args: list[str]) -> None:
    """Parse ``perdure ARGS`` with the real CLI (no command runs): options and arguments
    must exist and their values be valid."""
    from perdure.cli import cli

    with cli.make_context("perdure", list(args), resilient_parsing=False) as ctx:
        rest = [*ctx._protected_args, *ctx.args]  # what the group left for the subcommand
        name, command, sub_args = cli.resolve_command(ctx, rest)
        assert command is not None, f"no command in {args}"
        with command.make_context(name, sub_args, parent=ctx):
            pass


def perdure_args(line: str) -> list[str] | None:
    """The arguments after ``perdure`` in a shell line (after ``VAR=value`` prefixes), or
    None if the line does not run perdure."""
    words = shlex.split(_EXIT.sub("", line), comments=True)  # a trailing comment, as bash reads it
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    if words and (words[0] == "perdure" or words[0].endswith("/perdure")):
        return words[1:]
    return None


class PageRun:
    """Runs the blocks of one page in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.namespace: dict[str, object] = {"__name__": "__docs__"}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PERDURE_")}
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.workers: list[tuple[Block, subprocess.Popen[str], list[str]]] = []
        self.files: list[str] = []

    # -- python --

    def python(self, block: Block) -> None:
        code = compile(block.text, block.where, "exec")
        if block.marker == "parse":
            return
        first = block.text.splitlines()[0] if block.text.strip() else ""
        match = re.match(r"^# file: ([\w/]+\.py)$", first)
        if match:
            path = self.workdir / match.group(1)
            path.write_text(block.text, encoding="utf-8")
            self.files.append(path.stem)
            sys.modules.pop(path.stem, None)
            runpy.run_path(str(path), run_name="__main__")
            return
        exec(code, self.namespace)

    # -- shell --

    def bash(self, block: Block) -> None:
        for line in shell_lines(block.text):
            if block.marker == "parse":
                args = perdure_args(line)
                assert args is not None, f"{block.where}: only perdure lines can be parse-only: {line}"
                parse_command(args)
                continue
            expected = int(m.group(1)) if (m := _EXIT.search(line)) else 0
            command = _EXIT.sub("", line)
            if command.startswith("export "):
                name, _, value = command[len("export ") :].partition("=")
                self.env[name.strip()] = os.path.expandvars(shlex.split(value)[0] if value else "")
                continue
            args = perdure_args(command)
            if args is not None and args[:1] == ["worker"]:
                self._start_worker(block, command)
                continue
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
            assert proc.returncode == expected, (
                f"{block.where}: `{command}` exited {proc.returncode}, not {expected}:\n{proc.stdout}\n{proc.stderr}"
            )

    def _start_worker(self, block: Block, command: str) -> None:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        err: list[str] = []
        threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True).start()
        deadline = time.monotonic() + 30
        while not any(" serves " in line or '" serves ' in line for line in list(err)):
            assert proc.poll() is None, f"{block.where}: `{command}` exited {proc.returncode}:\n{''.join(err)}"
            assert time.monotonic() < deadline, f"{block.where}: `{command}` did not start:\n{''.join(err)}"
            time.sleep(0.05)
        self.workers.append((block, proc, err))

    # -- configuration --

    def config(self, block: Block) -> None:
        commands: list[list[str]] = []
        for line in block.text.splitlines():
            line = line.strip()
            if block.lang == "ini" and line.startswith("ExecStart="):
                words = shlex.split(line.split("=", 1)[1])
            elif block.lang == "dockerfile" and line.startswith(("CMD ", "ENTRYPOINT ")):
                words = json.loads(line.split(" ", 1)[1])
            else:
                continue
            at = next(i for i, w in enumerate(words) if w == "perdure" or w.endswith("/perdure"))
            commands.append(words[at + 1 :])
        assert commands, f"{block.where}: no perdure command line in this configuration"
        for args in commands:
            parse_command(args)

    # -- the page --

    def run(self, block: Block) -> None:
        if block.marker == "skip":
            assert block.reason, f"{block.where}: a skipped block must say why"
            return
        if block.marker == "setup":  # checked against .ci/run by test_docs.py
            return
        if block.lang == "python":
            self.python(block)
        elif block.lang == "bash":
            self.bash(block)
        elif block.lang in CONFIG:
            self.config(block)
        elif block.lang == "yaml":
            import yaml

            try:
                yaml.safe_load(block.text)
            except yaml.YAMLError as exc:
                raise AssertionError(f"{block.where}: not valid YAML: {exc}") from None
        elif block.lang in DATA:
            try:
                json.loads(block.text)
            except ValueError as exc:
                raise AssertionError(f"{block.where}: not valid JSON: {exc}") from None

    def finish(self) -> None:
        """Stop the background workers with Ctrl-C; each must exit 0."""
        for block, proc, err in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.returncode == 0, f"{block.where}: the worker exited {proc.returncode}:\n{''.join(err)}"
        for name in self.files:
            sys.modules.pop(name, None)


@contextlib.contextmanager
def in_directory(workdir: Path) -> Iterator[None]:
    """Run with ``workdir`` as the working directory and first on ``sys.path``; logging
    handlers a block installs are removed afterwards."""
    old = os.getcwd()
    handlers = list(logging.getLogger().handlers)
    level = logging.getLogger().level
    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    try:
        yield
    finally:
        os.chdir(old)
        sys.path.remove(str(workdir))
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def run_page(page: Path, workdir: Path) -> None:
    """Run every block of ``page`` in order in ``workdir``."""
    runner = PageRun(workdir)
    with in_directory(workdir):
        try:
            for block in blocks(page):
                runner.run(block)
        finally:
            runner.finish()
