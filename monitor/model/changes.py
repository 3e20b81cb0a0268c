"""What applying one VM's report changes in the DB: the pure decision the store executes."""

from __future__ import annotations

from typing import NamedTuple

from monitor.model.rows import DeviceRow


class RowUpdate(NamedTuple):
    """The new values of the fields a match (or an unplug) writes; nothing else is touched."""

    device_id: str
    is_plugged: bool
    address: dict[str, str]
    alias: str
    logical_name: str | None
    host_device: str | None
    # Whether ``alias`` differs from the row's: the store leaves a kept one out of its
    # UPDATE (SQLite rewrites the index entry of every alias an UPDATE sets, changed or
    # not: docs/performance.md, "The eleventh wave"). True writes it in any case.
    alias_changed: bool = True


class VmChanges(NamedTuple):
    """Row changes for one VM. Only rows whose values really change are listed,
    so applying the same XML twice yields empty changes."""

    vm_id: str
    updates: tuple[RowUpdate, ...] = ()
    inserts: tuple[DeviceRow, ...] = ()
    deletes: tuple[str, ...] = ()

    @property
    def rows_written(self) -> int:
        return len(self.updates) + len(self.inserts) + len(self.deletes)
