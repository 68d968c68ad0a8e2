"""The PostgreSQL store: many worker processes on many hosts sharing one database.

Open it with ``perdure.open_store("postgresql://user@host:port/db")`` or
``PostgresStore(url, **options)`` (needs the ``postgres`` extra: psycopg 3 and
psycopg-pool). SQL lives in ``schema.sql`` (the documented schema), ``migrations/`` and
``queries.sql``; locking is explained in :mod:`perdure.store.postgres.orchestrations`,
wake-ups across processes in :mod:`perdure.store.postgres.listen`, retries of transient
faults in :mod:`perdure.store.postgres.connection`.
"""

from perdure.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
