"""The database schema: every table the engine reads or writes, in one place.

The tables are created and upgraded by the Alembic migrations next to this file
(``migrations/versions``); a test compares the migrated database with these
definitions, so the two cannot drift.

* ``vms``: one row per VM. ``hash`` names the last Domain XML *applied*;
  ``hash_time`` is the report time of that poll and guards against older reports;
  ``version`` is bumped by every update (an optimistic guard for callers that want one).
* ``vm_devices``: the device rows (docs/architecture.md, "Data model"), deleted with their VM.
* ``vm_device_locks``: the devices lock, one row per VM, taken by a conditional
  UPDATE; each taking writes a fresh ``token``, which the fence checks (docs/worker.md).
  No foreign key: a lock may be taken for a VM before it is loaded, and a stale lock
  row is harmless.
* ``vm_last_xml``: the last Domain XML fetched for a VM (for ``diagnose``). It lives
  in its own table so the ``vms`` rows, which every tick scans per host, stay small.
  On PostgreSQL its ``xml`` is compressed with lz4 where the server has it (migration
  0005: a column's compression is not part of SQLAlchemy's table).
* ``host_leases``: which worker ticks which host (docs/operations.md, "Many workers"):
  ``owner`` (``NULL``: free), ``epoch`` (incremented by every claim). A lease expires
  with its owner's heartbeat.
* ``worker_heartbeats``: one row per running ``monitor run``, ``expires_at`` by the
  database's clock; a worker whose row has expired is not live, its leases may be
  taken over, and its share goes to the others. ``max_hosts`` is its cap (0: stopping).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# JSON objects: JSONB on PostgreSQL (compact, indexable), JSON text elsewhere.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

UUID_LENGTH = 36


class UtcDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz`` and returns the session's zone; SQLite stores
    naive text. Both come back as aware UTC datetimes. SQLite's text is fixed-width
    (``YYYY-MM-DD HH:MM:SS.ffffff``), so the hash-time guard compares correctly.
    A naive datetime is a bug in the caller and is refused.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime given to the store: {value.isoformat()}")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def result_processor(self, dialect, coltype):
        """A value read: aware UTC. SQLite's naive text is read as UTC in one call,
        PostgreSQL's ``timestamptz`` (in the session's zone) moved to UTC; both without
        SQLAlchemy's own processing in between: 0.3 µs instead of 2.4 µs a value on
        SQLite (docs/performance.md, "The sixth wave")."""
        return _sqlite_utc if dialect.name == "sqlite" else _utc


@lru_cache(maxsize=4096)
def _sqlite_utc(value: str | None) -> datetime | None:
    """SQLite's ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC, naive): the aware datetime. A
    value with an offset (written by hand, not by the engine) is read as it says.

    Remembered (datetimes are immutable): the VMs one tick applies share its report
    time, so a host's first read finds a few values among its hundred rows."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:
        return _utc(datetime.fromisoformat(value))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    zone = value.tzinfo
    if zone is UTC:  # PostgreSQL's, in the engine's sessions (engine._configure_postgresql)
        return value
    return value.replace(tzinfo=UTC) if zone is None else value.astimezone(UTC)


# PostgreSQL leaves this percent of each page of the two tables a full tick rewrites
# (every VM's hash, every device row's address) filled at insert, so those updates stay
# in their page and touch no index (migration 0004, docs/performance.md).
FILLFACTOR = 70

vms = sa.Table(
    "vms",
    metadata,
    sa.Column("id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("hash", sa.Text),
    sa.Column("hash_time", UtcDateTime),
    sa.Column("last_error_hash", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("definition", Json, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_vms_host", "host"),
    postgresql_with={"fillfactor": FILLFACTOR},
)

vm_devices = sa.Table(
    "vm_devices",
    metadata,
    sa.Column(
        "vm_id",
        sa.String(UUID_LENGTH),
        sa.ForeignKey("vms.id", ondelete="CASCADE", name="fk_vm_devices_vm_id"),
        primary_key=True,
    ),
    sa.Column("device_id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("address", Json, nullable=False),
    sa.Column("alias", sa.Text, nullable=False, server_default=""),
    sa.Column("spec_params", Json, nullable=False),
    sa.Column("is_managed", sa.Boolean, nullable=False),
    sa.Column("is_plugged", sa.Boolean, nullable=False),
    sa.Column("is_readonly", sa.Boolean, nullable=False),
    sa.Column("logical_name", sa.Text),
    sa.Column("host_device", sa.Text),
    sa.Column("custom_properties", Json, nullable=False),
    # The stored-alias rule looks rows up by (vm, alias).
    sa.Index("ix_vm_devices_vm_id_alias", "vm_id", "alias"),
    postgresql_with={"fillfactor": FILLFACTOR},
)

vm_device_locks = sa.Table(
    "vm_device_locks",
    metadata,
    sa.Column("vm_id", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("token", sa.String(32), nullable=False, server_default=""),
)

vm_last_xml = sa.Table(
    "vm_last_xml",
    metadata,
    sa.Column(
        "vm_id",
        sa.String(UUID_LENGTH),
        sa.ForeignKey("vms.id", ondelete="CASCADE", name="fk_vm_last_xml_vm_id"),
        primary_key=True,
    ),
    sa.Column("xml", sa.LargeBinary, nullable=False),
    sa.Column("fetched_at", UtcDateTime, nullable=False),
)

host_leases = sa.Table(
    "host_leases",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text),
    sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
)

worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("owner", sa.Text, primary_key=True),
    sa.Column("max_hosts", sa.Integer),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

# Column order of the typed records, so a result row becomes a record positionally.
VM_COLUMNS = (
    vms.c.id, vms.c.name, vms.c.host, vms.c.status, vms.c.hash, vms.c.hash_time,
    vms.c.last_error_hash, vms.c.last_error, vms.c.definition,
)
DEVICE_COLUMNS = (
    vm_devices.c.device_id, vm_devices.c.vm_id, vm_devices.c.type, vm_devices.c.device,
    vm_devices.c.address, vm_devices.c.alias, vm_devices.c.spec_params,
    vm_devices.c.is_managed, vm_devices.c.is_plugged, vm_devices.c.is_readonly,
    vm_devices.c.logical_name, vm_devices.c.host_device, vm_devices.c.custom_properties,
)
