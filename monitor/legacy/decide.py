"""Legacy dict + the VM's rows -> the DB changes (docs/matching.md, "What `decide` writes"), as a pure decision.

What a match writes: ``is_plugged`` true, the reported address (``{}`` if none), the
reported alias if any (else kept), the metadata's guest name as ``logical_name`` if any
(else kept), ``host_device`` for host devices; nothing else. A row not reported: a
managed one is unplugged (address cleared, a ``ua-`` alias kept, a libvirt alias cleared:
libvirt hands it to the next device attached) unless its kind cannot be identified
reliably; an unmanaged one is deleted. Rows in a conflict are left exactly as
they are. Only rows whose values really change are listed, so applying the same XML
twice yields empty changes. Values that compare equal after normalization (``0x05`` vs
``0x5``) are not rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.legacy.dicts import ConvertedVm, GuestDisk, LegacyDevice
from monitor.matching import Rule
from monitor.model.address import same_address
from monitor.model.alias import Alias
from monitor.model.changes import RowUpdate, VmChanges
from monitor.model.hostaddress import parse_node_device_name
from monitor.model.kinds import kinds_with
from monitor.model.rows import DeviceRow

# Managed rows of these types stay as they are when not reported (model/kinds.py).
NEVER_UNPLUGGED_TYPES = kinds_with(lambda kind: kind.keeps_when_unreported)
_NEW_UNMANAGED = Rule.NEW_UNMANAGED.value  # read once: an Enum's .value is a property call


def decide(converted: ConvertedVm, rows: Sequence[DeviceRow]) -> VmChanges:
    rows_by_id = {row.device_id: row for row in rows}
    guest_disks = converted.legacy["guestDiskMapping"] or {}
    updates: list[RowUpdate] = []
    inserts: list[DeviceRow] = []
    reported: set[str] = set()
    for legacy in converted.legacy["devices"]:
        device_id = legacy["deviceId"]
        reported.add(device_id)
        row = rows_by_id.get(device_id)
        if row is not None:
            update = matched_update(row, legacy, guest_disks.get(device_id))
            if update is not None:
                updates.append(update)
        elif legacy["matchedBy"] == _NEW_UNMANAGED:
            inserts.append(new_row(converted.vm_id, legacy))
    deletes: list[str] = []
    for row in rows:
        if row.device_id in reported or row.device_id in converted.conflicted_row_ids:
            continue
        if not row.is_managed:
            deletes.append(row.device_id)
        elif row.type not in NEVER_UNPLUGGED_TYPES:
            alias = "" if Alias.parse(row.alias).libvirt_assigned else row.alias
            if row.is_plugged or row.address or alias != row.alias:
                updates.append(RowUpdate(row.device_id, False, {}, alias, row.logical_name,
                                         row.host_device, alias != row.alias))
    return VmChanges(
        vm_id=converted.vm_id,
        updates=tuple(sorted(updates, key=lambda update: update.device_id)),
        inserts=tuple(sorted(inserts, key=lambda row: row.device_id)),
        deletes=tuple(sorted(deletes)),
    )


def matched_update(row: DeviceRow, legacy: LegacyDevice,
                   guest_disk: GuestDisk | None) -> RowUpdate | None:
    """The row's new values after a match, or ``None`` when nothing would change."""
    address = legacy["address"]
    if address != row.address and same_address(address, row.address):
        address = row.address  # the same address written another way: keep it as stored
    alias = legacy["alias"] or row.alias
    logical_name = guest_disk["name"] if guest_disk else row.logical_name
    host_device = legacy.get("hostdev", row.host_device)
    if host_device != row.host_device and _same_host_device(host_device, row.host_device):
        host_device = row.host_device
    if (row.is_plugged and address == row.address and alias == row.alias
            and logical_name == row.logical_name and host_device == row.host_device):
        return None
    return RowUpdate(row.device_id, True, dict(address), alias, logical_name, host_device,
                     alias != row.alias)


def new_row(vm_id: str, legacy: LegacyDevice) -> DeviceRow:
    return DeviceRow(
        device_id=legacy["deviceId"],
        vm_id=vm_id,
        type=legacy["type"],
        device=legacy["device"],
        address=dict(legacy["address"]),
        alias=legacy["alias"],
        spec_params=dict(legacy["specParams"]),
        is_managed=False,
        is_plugged=True,
        is_readonly=False,
        logical_name=None,
        host_device=legacy.get("hostdev"),
    )


def _same_host_device(a: str | None, b: str | None) -> bool:
    parsed = parse_node_device_name(a)
    return parsed is not None and parsed == parse_node_device_name(b)
