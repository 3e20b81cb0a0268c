"""Create or upgrade the schema with Alembic, without an alembic.ini.

``Store.open`` calls :func:`ensure_schema` on first use: a database already at the
head revision costs one look at ``alembic_version``. Upgrades run in one transaction
on a connection we own, behind a lock (PostgreSQL advisory lock per schema; SQLite's
``BEGIN IMMEDIATE``), so two processes starting on an empty database do not both
create the tables.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from monitor.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaUpgrade(NamedTuple):
    """The schema revision before and after an upgrade (``None``: no schema)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@functools.cache
def known_revisions() -> frozenset[str]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(engine: Engine) -> SchemaUpgrade:
    """Upgrade to head if needed; cheap when the schema is already current."""
    with engine.connect() as connection:
        before = current_revision(connection)
        connection.rollback()
    if before == head_revision():
        return SchemaUpgrade(before, before)
    return upgrade(engine)


def upgrade(engine: Engine) -> SchemaUpgrade:
    with engine.connect() as connection:
        with connection.begin():
            _lock_schema(connection)
            before = current_revision(connection)
            if before is not None and before not in known_revisions():
                raise StoreError(
                    f"the database schema is at revision {before}, unknown to this version "
                    "of monitor (made by a newer one?)"
                )
            if before != head_revision():
                command.upgrade(alembic_config(connection), "head")
            after = current_revision(connection)
    return SchemaUpgrade(before, after)


def _lock_schema(connection: Connection) -> None:
    """Serialize concurrent upgrades of one PostgreSQL schema (SQLite: BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('monitor-schema:' || current_schema()))")
        )
