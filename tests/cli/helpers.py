"""Run the real ``perdure`` entry point (the console script of this environment) in a
subprocess, as a user's shell would."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
PERDURE = str(Path(sys.executable).with_name("perdure"))
if not Path(PERDURE).exists():  # an environment without the script next to python
    PERDURE = shutil.which("perdure") or PERDURE


@dataclass
class Ran:
    """What one command did."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """The lines on stderr."""
        return self.err.splitlines()


def environment(**extra: str) -> dict[str, str]:
    """The environment of a command: this one, without perdure's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERDURE_") or k == "PERDURE_TEST_POSTGRES_URL"}
    env.update(extra)
    return env


def perdure(
    *args: str,
    code: int | None = 0,
    cwd: Path | str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Ran:
    """Run ``perdure ARGS``; assert its exit code (unless ``code`` is None)."""
    proc = subprocess.run(
        [PERDURE, *args],
        cwd=cwd,
        input=stdin,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    ran = Ran(proc.returncode, proc.stdout, proc.stderr)
    if code is not None:
        assert ran.code == code, f"perdure {' '.join(args)} exited {ran.code}, not {code}:\n{ran.out}\n{ran.err}"
    return ran


class Background:
    """A long-running ``perdure`` command (a worker): its output is collected as it comes,
    and it is stopped with signals."""

    def __init__(self, *args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [PERDURE, *args],
            cwd=cwd,
            env=env or environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.interrupted = False
        self._readers = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        """Wait until ``predicate()`` holds (the process must stay alive meanwhile)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{''.join(self.err)}"
            assert time.monotonic() < deadline, f"timed out; stderr so far:\n{''.join(self.err)}"
            time.sleep(0.05)

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        """Wait until a line on stderr contains ``text``."""
        self.wait_for(lambda: any(text in line for line in list(self.err)), timeout)

    def interrupt(self) -> None:
        """Send Ctrl-C (SIGINT)."""
        self.interrupted = True
        self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 30) -> Ran:
        """Ctrl-C (unless sent already, or it exited) and wait for the exit; what it printed."""
        if self.proc.poll() is None and not self.interrupted:
            self.interrupt()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return Ran(self.proc.returncode, "".join(self.out), "".join(self.err))
