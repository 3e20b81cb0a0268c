"""The device store: the one package that speaks SQL (SQLAlchemy Core, Alembic).

* ``schema``: the tables; ``migrations/``: how they are created and upgraded;
* ``engine``: URL to Engine, DB failure to a one-line StoreError;
* ``checkpoints``: SQLite's WAL checkpoints on a thread of their own (long-running verbs);
* ``repository``: ``Store`` and its transactions (``Tx``), the API everyone uses;
* ``batch_writes``: what a batch transaction writes; on PostgreSQL one statement;
* ``row_writes``: a batch's row changes on SQLite, an executemany a kind;
* ``fence``: what a tick must still hold when it writes (its devices locks, its host
  lease);
* ``inventory``: the ``{"vms", "devices"}`` document of load and export;
* ``leases``: host leases and worker heartbeats (``monitor run``'s lease keeper).
"""

from monitor.store.fence import Fence
from monitor.store.inventory import (
    LoadSummary,
    dumps,
    export_document,
    load_document,
    read_document,
)
from monitor.store.leases import LeaseTx
from monitor.store.migrate import SchemaUpgrade
from monitor.store.batch_writes import HashAdvance, LastXmls
from monitor.store.repository import Store, Tx

__all__ = [
    "Fence",
    "HashAdvance",
    "LastXmls",
    "LeaseTx",
    "LoadSummary",
    "SchemaUpgrade",
    "Store",
    "Tx",
    "dumps",
    "export_document",
    "load_document",
    "read_document",
]
