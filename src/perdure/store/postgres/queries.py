"""Named SQL queries of the PostgreSQL store, loaded from ``queries.sql`` (same file format
and loader as the SQLite store's)."""

from __future__ import annotations

from importlib import resources

from perdure.store.sqlite.queries import Queries

Q = Queries(resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8"))

__all__ = ["Q", "Queries"]
