"""A scratch database for the measuring tools (tools/paired, tools/partial_floor).

SQLite: a file in a temporary folder. PostgreSQL: a schema of its own in the database
at ``MONITOR_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``), created
here and dropped when ``stack`` closes.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack

import sqlalchemy as sa

PG_URL = os.environ.get("MONITOR_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def scratch_database(db: str, name: str, stack: ExitStack) -> str:
    """The URL of an empty database named after ``name``, removed when ``stack`` closes."""
    if db == "sqlite":
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        return f"sqlite:///{folder}/{name}.db"
    schema = f"{name}_{os.getpid()}"
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()

    stack.callback(drop)
    return f"{PG_URL}?options=-csearch_path%3D{schema}"
