"""CPU time of a workload's measured part, every process counted: the workload's own process
(workers, client and all their threads) and, on PostgreSQL, the server backends connected
to its database.

The process is read with ``time.process_time()``. The backends are found in
``pg_stat_activity`` by database name and read from ``/proc`` when the measured part starts
and when it ends (the store's pool keeps its connections for the whole run; a backend that
exits in between is not counted).
"""

from __future__ import annotations

import os
import time

_TICK = os.sysconf("SC_CLK_TCK")


def stat_times(path: str) -> tuple[float, float]:
    """The CPU seconds in user and in kernel mode in a ``/proc`` ``stat`` file: a process's
    (``/proc/PID/stat``) or a thread's (``/proc/self/task/TID/stat``); 0 once it is gone."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK  # utime, stime


def stat_cpu(path: str) -> float:
    """:func:`stat_times`, user and kernel together."""
    return sum(stat_times(path))


def backends_cpu(url: str, application_name: str = "%") -> dict[int, float]:
    """The CPU seconds so far of the server backends connected to the PostgreSQL database
    at ``url`` (but the one this asks through), by pid; only those whose
    ``application_name`` is ``LIKE`` ``application_name``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        me = conn.info.backend_pid
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s",
            (application_name,),
        ).fetchall()
    return {pid: stat_cpu(f"/proc/{pid}/stat") for (pid,) in rows if pid != me}


class CpuClock:
    """Started and stopped around a workload's measured part; ``stop`` returns the CPU
    seconds of this process and of the server's backends for the store at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started: tuple[float, dict[int, float]] = (0.0, {})

    def _backends(self) -> dict[int, float]:
        return backends_cpu(self.url) if self.url.startswith("postgresql") else {}

    def start(self) -> None:
        """Take the starting readings."""
        self.started = (time.process_time(), self._backends())

    def stop(self) -> dict[str, float]:
        """``{"cpu_process_s", "cpu_server_s"}`` since :meth:`start`."""
        process = time.process_time() - self.started[0]
        before = self.started[1]
        server = sum(cpu - before.get(pid, 0.0) for pid, cpu in self._backends().items())
        return {"cpu_process_s": process, "cpu_server_s": server}
