"""Reported devices and rows built by hand (no XML), and a fake of the DB adapter: what
the correlation tests share (tests/test_matching.py and the tests after it).
"""

from __future__ import annotations

from dataclasses import replace

from monitor.model.address import Address
from monitor.model.alias import Alias
from monitor.model.changes import VmChanges
from monitor.model.device import ReportedDevice
from monitor.model.kinds import KINDS as TABLE
from monitor.model.kinds import KINDS_BY_TYPE, NO_KEYS
from monitor.model.rows import DeviceRow

VM = "6f1d3e4a-0000-4000-8000-00000000c0de"


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def dev(tag: str, type: str | None = None, device: str | None = None, *, alias: str = "",
        address: dict | None = None, position: int = 0, **keys) -> ReportedDevice:
    return ReportedDevice(tag, type or tag, device or tag, Alias.parse(alias),
                          Address(address), position, keys=_keys(type or tag, keys))


def _keys(type_: str, keys: dict):
    """The kind's natural-key value (model/kinds.py); a type no kind declares has none."""
    kind = KINDS_BY_TYPE.get(type_)
    return kind.keys(**keys) if kind is not None else NO_KEYS if not keys else dict(keys)


def row(device_id: str, type: str, device: str | None = None, *, alias: str = "",
        address: dict | None = None, spec: dict | None = None, **fields) -> DeviceRow:
    return DeviceRow(device_id=device_id, vm_id=VM, type=type, device=device or type,
                     address=dict(address or {}), alias=alias, spec_params=dict(spec or {}),
                     **fields)


def numbered(*devices: ReportedDevice) -> list[ReportedDevice]:
    """Devices in XML order: position = index."""
    for position, device in enumerate(devices):
        device.position = position
    return list(devices)


def apply_in_memory(rows: list[DeviceRow], changes: VmChanges) -> list[DeviceRow]:
    """What the store does with VmChanges, on plain rows (a fake of the DB adapter)."""
    by_id = {r.device_id: r for r in rows}
    for device_id in changes.deletes:
        del by_id[device_id]
    for update in changes.updates:
        by_id[update.device_id] = replace(
            by_id[update.device_id], is_plugged=update.is_plugged, address=dict(update.address),
            alias=update.alias, logical_name=update.logical_name, host_device=update.host_device)
    for new in changes.inserts:
        assert new.device_id not in by_id, "an insert collides with an existing row"
        by_id[new.device_id] = new
    return sorted(by_id.values(), key=lambda r: r.device_id)


# type -> (tag, type, device), from the kinds table (model/kinds.py), plus a tag no
# kind declares; for rows (type, device).
KINDS = {kind.type: (kind.tag, kind.type, kind.devices[0]) for kind in TABLE}
KINDS["emulator"] = ("emulator", "emulator", "emulator")
