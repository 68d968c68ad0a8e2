"""The SQLite store's named queries (``queries.sql``)."""

from perdure.store.common.queries import Queries, load_queries

Q: Queries = load_queries(__package__)
