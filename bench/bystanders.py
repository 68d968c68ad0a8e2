"""What an instance that ends costs the rest of a PostgreSQL fleet: W3 (start → result, one
after another) in one process, beside worker processes that wait on no instance.

    python -m bench.bystanders                       # 3 bystanders, 8 s
    python -m bench.bystanders --processes 6 --seconds 15
    python -m bench.bystanders --following           # bystanders that follow instance ends
    python -m bench.bystanders --watched [--following]  # every instance watched

Run it with ``PYTHONPATH`` naming the checkout to measure (its ``src`` and its root). Each
bystander is a process running an idle worker of the same app on the same database: no
work comes its way, but its store listens for other processes' commits. For the
measured seconds it reports, per instance ended by the W3 process, the CPU the bystanders
spent (their processes, from ``getrusage``) and the CPU of their listener connections'
server backends (from ``/proc``, by ``application_name``): what each extra process of a
fleet costs per instance end when it has nothing to do with it. With ``--following``, each
bystander follows instance ends meanwhile (``store.notifier.following``), as a process
does while a client of its waits on an instance or has just started one. An end sends a
``NOTIFY`` only if a wait of another process watches its instance: with ``--watched`` the
W3 process marks each instance watched (``Store.watch_instance``) as such a wait does.

PostgreSQL: $PERDURE_BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from datetime import datetime

import perdure
from bench.__main__ import fresh_store_url
from bench.cpu import backends_cpu
from bench.workloads import _sequence, app
from perdure.store.notify import INSTANCES
from perdure.store.postgres import PostgresStore

#: The ``application_name`` of the bystanders' listener connections (``LIKE``).
LISTENERS = "bystander%-listener"


def bystander(url: str, name: str, following: bool) -> None:
    """A bystander's process: an idle worker (``following`` instance ends, or not); prints
    its CPU seconds between two lines of stdin."""
    store = PostgresStore(url, application_name=name)
    with perdure.Worker(app, store), store.notifier.following(INSTANCES) if following else contextlib.nullcontext():
        print("ready", flush=True)
        sys.stdin.readline()
        before = resource.getrusage(resource.RUSAGE_SELF)
        sys.stdin.readline()
        after = resource.getrusage(resource.RUSAGE_SELF)
    store.close()
    print((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), flush=True)


def _tell(children: list[subprocess.Popen[str]]) -> None:
    """Send each bystander the line that starts, or ends, its measured part."""
    for child in children:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()


def measure(processes: int, seconds: float, following: bool = False, watched: bool = False) -> tuple[int, float, float]:
    """Instances ended in ``seconds`` of W3 (each marked watched if ``watched``), and the
    bystanders' CPU seconds spent meanwhile: their processes', and their listener backends'."""
    with fresh_store_url("postgres") as url:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.bystanders", "--bystander", url, f"bystander{n}"]
                + (["--following"] if following else []),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for n in range(processes)
        ]
        try:
            for child in children:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            store = perdure.open_store(url)
            client = perdure.Client(store)
            orchestration = _sequence(local=False)

            def start_to_result() -> None:
                iid = client.start(orchestration, 1)
                if watched:
                    store.watch_instance(iid)
                client.wait(iid, timeout=60)

            with perdure.Worker(app, store):
                for _ in range(50):  # warm-up
                    start_to_result()
                listeners = backends_cpu(url, LISTENERS)
                _tell(children)
                ended, deadline = 0, time.monotonic() + seconds
                while time.monotonic() < deadline:
                    start_to_result()
                    ended += 1
                after = backends_cpu(url, LISTENERS)  # before the bystanders close their listeners
                _tell(children)
                servers = sum(after[pid] - listeners[pid] for pid in after.keys() & listeners.keys())
            store.close()
            spent = 0.0
            for child in children:
                out, _ = child.communicate(timeout=30)
                spent += float(out.split()[-1])
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
    return ended, spent, servers


def main(argv: list[str] | None = None) -> int:
    """Run W3 beside idle bystanders and print their CPU per instance ended."""
    parser = argparse.ArgumentParser(prog="python -m bench.bystanders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3, help="bystander processes (default 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of W3 measured (default 8)")
    parser.add_argument("--following", action="store_true", help="the bystanders follow instance ends")
    parser.add_argument("--watched", action="store_true", help="each instance is watched, as by a remote wait")
    parser.add_argument("--bystander", nargs=2, metavar=("URL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bystander:
        bystander(*args.bystander, args.following)
        return 0
    ended, spent, servers = measure(args.processes, args.seconds, args.following, args.watched)
    per = 1000 / ended / args.processes
    how = "following instance ends" if args.following else "not following instance ends"
    how += ", every instance watched" if args.watched else ", no instance watched"
    print(
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {args.processes} bystanders ({how}), {ended} instances ended"
    )
    print(
        f"per instance ended, per bystander: process {per * spent:.4f} ms CPU, "
        f"its listener's server backend {per * servers:.4f} ms CPU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
