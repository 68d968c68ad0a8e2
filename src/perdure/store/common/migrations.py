"""Numbered migration files, shared by the SQL stores.

Each backend package holds ``schema.sql`` (the complete current schema) and
``migrations/NNNN_name.sql`` (the steps from one version to the next, numbered alike in
every backend); each backend applies them with its own transaction discipline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from perdure.core.records import frozen_record

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@frozen_record
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def package_schema(package: str) -> str:
    """The text of ``package``'s ``schema.sql``."""
    return resources.files(package).joinpath("schema.sql").read_text(encoding="utf-8")


def package_migrations(package: str) -> list[Migration]:
    """``package``'s migrations, in version order."""
    folder = resources.files(package).joinpath("migrations")
    return load_migrations(
        (entry.name, entry.read_text(encoding="utf-8")) for entry in folder.iterdir() if entry.is_file()
    )


def load_migrations(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """Build the ordered migration list from ``(file name, text)`` pairs; other file names
    are ignored, gaps and duplicate numbers are an error."""
    found: list[Migration] = []
    for name, text in files:
        match = _MIGRATION_NAME.match(name)
        if match:
            found.append(Migration(int(match.group(1)), name, text))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(f"migration {migration.name} is out of sequence; expected number {expected:04d}")
    return found


def migrations_from_dir(path: str | Path) -> list[Migration]:
    """Load migrations from a directory (tests use this to simulate later versions)."""
    folder = Path(path)
    return load_migrations((p.name, p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.is_file())
