"""Alembic environment: migrations run on a connection handed in by monitor.store.migrate.

There is no alembic.ini: ``monitor db init`` (or the first ``Store.open``) builds the
Config in code and passes its open connection in ``config.attributes["connection"]``,
inside a transaction it commits itself. For a developer's ``alembic`` command line, a
``sqlalchemy.url`` main option is honoured instead.
"""

from __future__ import annotations

from alembic import context

from monitor.store.engine import create_engine
from monitor.store.schema import metadata

config = context.config


def run_on(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


shared = config.attributes.get("connection")
if shared is not None:
    run_on(shared)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as own:
        run_on(own)
        own.commit()
    engine.dispose()
