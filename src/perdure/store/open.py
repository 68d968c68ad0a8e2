"""Open a store from a URL: ``sqlite:///path``, ``sqlite://:memory:``, ``postgresql://...``."""

from __future__ import annotations

from typing import Any

from perdure.errors import InvalidInputError
from perdure.store.base import Store


def open_store(url: str, **options: Any) -> Store:
    """Open (creating and migrating if needed) the store at ``url``.

    - ``sqlite:///relative/or/absolute.db`` (``sqlite:////abs/path.db`` also works),
      ``sqlite://:memory:`` for a private in-memory store (tests);
    - ``postgresql://user@host:port/db`` (needs the ``postgres`` extra).

    ``options`` go to the backend (for SQLite: ``synchronous``, ``busy_timeout``, ``clock``...).
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInputError(f"store URL {url!r} is not a URL; use sqlite:///path.db or postgresql://...")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from perdure.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)
    if scheme in ("postgresql", "postgres"):
        from perdure.store.postgres import PostgresStore

        return PostgresStore.from_url(url, **options)
    raise InvalidInputError(f"unsupported store URL scheme {scheme!r} in {url!r}; use sqlite:// or postgresql://")
