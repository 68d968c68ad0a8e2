"""Open a store from a URL: ``sqlite:///path``, ``sqlite://:memory:``, ``postgresql://...``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from perdure.errors import InvalidInputError, SchemaVersionError, StoreError, StoreUnavailableError
from perdure.store.base import Store

INIT_HINT = "create it with `perdure init` (or start a worker on it)"


def open_store(url: str, *, create: bool = True, **options: Any) -> Store:
    """Open the store at ``url``.

    - ``sqlite:///relative/or/absolute.db`` (``sqlite:////abs/path.db`` also works),
      ``sqlite://:memory:`` for a private in-memory store (tests);
    - ``postgresql://user@host:port/db`` (needs the ``postgres`` extra).

    ``create=True`` (the default) creates the schema, or migrates an older one, if needed.
    ``create=False`` only opens a store that is ready: a missing SQLite file, a database
    without perdure's schema, or one whose schema needs a migration raises
    :class:`~perdure.errors.StoreError` and nothing is written (read-only tools use it).

    ``options`` go to the backend (for SQLite: ``synchronous``, ``busy_timeout``, ``clock``...).
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInputError(f"store URL {url!r} is not a URL; use sqlite:///path.db or postgresql://...")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from perdure.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, create=create, **options)
    if scheme in ("postgresql", "postgres"):
        try:
            from perdure.store.postgres import PostgresStore
        except ImportError as exc:
            if exc.name not in ("psycopg", "psycopg_pool", "psycopg_binary"):
                raise
            raise StoreUnavailableError(
                f'a PostgreSQL store needs psycopg, which is not installed ({exc}): pip install "perdure[postgres]"'
            ) from None
        return PostgresStore.from_url(url, create=create, **options)
    raise InvalidInputError(
        f"unsupported store URL scheme {scheme!r} in {public_url(url)!r}; use sqlite:// or postgresql://"
    )


def public_url(url: str) -> str:
    """``url`` without its password, if it has one (for logs, errors and banners)."""
    try:
        parts = urlsplit(url)
        password, host, port = parts.password, parts.hostname or "", parts.port
    except ValueError:  # a malformed port or netloc: show only the scheme
        return url.split("://", 1)[0] + "://..."
    if password is None:
        return url
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def require_schema(current: int, latest: int, where: str) -> None:
    """Refuse to open ``where`` without creating: no perdure schema (version 0), or one that
    is older (needs a migration) or newer than this perdure's ``latest``."""
    if current == 0:
        raise StoreError(f"{where} is not a perdure store (it has no perdure schema); {INIT_HINT}")
    if current > latest:
        raise SchemaVersionError(
            f"the schema of {where} is version {current}, newer than the version {latest} this "
            f"perdure understands; upgrade perdure to open it"
        )
    if current < latest:
        raise StoreError(
            f"the schema of {where} is version {current} and needs a migration to version {latest}; "
            f"run `perdure init` (or start a worker) to migrate it"
        )


def check_sqlite_file(path: str) -> None:
    """The checks of ``open_store(..., create=False)`` on an SQLite file, made through a
    read-only connection (before the store's own connections, which would set WAL mode)."""
    from perdure.store.sqlite.migrations import package_migrations, schema_version

    if not Path(path).is_file():
        raise StoreError(f"no perdure store at {path!r}: the file does not exist; {INIT_HINT}")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"cannot open {path!r}: {exc}") from exc
    try:
        current = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path!r} is not a perdure store: {exc}") from exc
    finally:
        conn.close()
    migrations = package_migrations()
    require_schema(current, migrations[-1].version if migrations else 0, repr(path))


def check_postgres_schema(conn: Any, where: str) -> None:
    """The checks of ``open_store(..., create=False)`` on a PostgreSQL connection."""
    from perdure.store.postgres.migrations import package_migrations, schema_version

    migrations = package_migrations()
    require_schema(schema_version(conn), migrations[-1].version if migrations else 0, where)
