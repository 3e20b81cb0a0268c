"""A batch's device-row changes on SQLite, and the values a row is written with.

A full tick rewrites ~28 rows per VM, so how a batch of row changes reaches the
database is most of the write path (docs/performance.md, "What each change bought").
SQLAlchemy Core declares every statement below. On SQLite (in-process, no round trips)
they are compiled once, then run by the driver's ``executemany`` over plain tuples,
skipping SQLAlchemy's per-row work. A row whose alias stays is updated by a statement
that does not set it: SQLite rewrites the ``(vm_id, alias)`` index entry of every row
an UPDATE sets the alias of, changed or not (~1 µs a row, ~4 % of a full tick:
docs/performance.md, "The eleventh wave"). PostgreSQL compares the values: a kept alias
touches no index.

On PostgreSQL a batch's row changes are part of its one write statement
(``batch_writes``), as JSON documents of the rows in the order ``UPDATED`` and
``row_values`` give here.

A row changes at most once per batch (``legacy.decide`` lists a device once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.model.changes import VmChanges
from monitor.model.rows import DeviceRow
from monitor.store import jsontext, prepared
from monitor.store.schema import DEVICE_COLUMNS, vm_devices

# The columns an update writes, in the table's order (the order a compiled SET takes).
UPDATED = ("address", "alias", "is_plugged", "logical_name", "host_device")
KEEPING_ALIAS = tuple(name for name in UPDATED if name != "alias")
KEY = ("vm_id", "device_id")


def write_changes(connection: Connection, changes: Sequence[VmChanges]) -> int:
    """SQLite: deletes, then updates, then inserts of many VMs; the number of rows
    written. Deleting first lets a row be replaced by one with the same id."""
    written = 0
    if any(change.deletes for change in changes):
        written += _delete_many(connection, changes)
    if any(change.updates for change in changes):
        written += _update_many(connection, changes)
    inserts = [row_values(row) for change in changes for row in change.inserts]
    if inserts:
        written += prepared.execute_many(connection, _INSERT_ROW, inserts)
    return written


# A whole row, every column a parameter.
_INSERT_ROW = sa.insert(vm_devices).values(
    {column.name: sa.bindparam(column.name, type_=column.type) for column in vm_devices.c})


_DELETE_ROW = sa.delete(vm_devices).where(
    vm_devices.c.vm_id == sa.bindparam("vm_id"),
    vm_devices.c.device_id == sa.bindparam("device_id"),
)


def _update_row(columns: tuple[str, ...]) -> sa.Update:
    """One row's update by its key, setting ``columns`` (each bound as ``b_<name>``)."""
    return (
        sa.update(vm_devices)
        .where(vm_devices.c.vm_id == sa.bindparam("b_vm_id"),
               vm_devices.c.device_id == sa.bindparam("b_device_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in columns})
    )


_UPDATE_ROW = _update_row(UPDATED)
_UPDATE_ROW_KEEPING_ALIAS = _update_row(KEEPING_ALIAS)


def _driver_many(connection: Connection, statement, order: tuple[str, ...],
                 rows: list[tuple]) -> int:
    """``statement`` over tuples in ``order``; refuses a compilation with another order."""
    compiled = prepared.prepared(statement, connection.dialect)
    if compiled.names != order:
        raise RuntimeError(f"{compiled.sql!r} takes {compiled.names}, not {order}")
    return prepared.driver_executemany(connection, compiled.sql, rows)


def _delete_many(connection: Connection, changes: Sequence[VmChanges]) -> int:
    keys = [(change.vm_id, device_id) for change in changes for device_id in change.deletes]
    return _driver_many(connection, _DELETE_ROW, KEY, keys)


def _update_many(connection: Connection, changes: Sequence[VmChanges]) -> int:
    """The updates, those that set an alias and those that keep it, an ``executemany``
    each."""
    setting_alias: list[tuple] = []
    keeping_alias: list[tuple] = []
    for change in changes:
        vm_id = change.vm_id
        for update in change.updates:
            address = jsontext.dumps(update.address)
            if update.alias_changed:
                setting_alias.append((address, update.alias, update.is_plugged,
                                      update.logical_name, update.host_device, vm_id,
                                      update.device_id))
            else:
                keeping_alias.append((address, update.is_plugged, update.logical_name,
                                      update.host_device, vm_id, update.device_id))
    written = 0
    for statement, columns, rows in ((_UPDATE_ROW, UPDATED, setting_alias),
                                     (_UPDATE_ROW_KEEPING_ALIAS, KEEPING_ALIAS, keeping_alias)):
        if rows:
            order = tuple(f"b_{name}" for name in (*columns, *KEY))
            written += _driver_many(connection, statement, order, rows)
    return written


_DEVICE_FIELDS = tuple(column.name for column in DEVICE_COLUMNS)


def row_values(row: DeviceRow) -> dict[str, Any]:
    """A whole row as the parameters of an INSERT."""
    return {name: getattr(row, name) for name in _DEVICE_FIELDS}
