"""Which rows become devices, in which order, with which alias, address and disk name.

Pure (no lxml): the XML writers and the metadata writer both read this plan, so a
disk's target dev is decided once and the ``<disk>`` element and its
``ovirt-vm:device name=...`` entry can never disagree.

* Unplugged rows are left out; so are rows of a kind the builder does not know
  (docs/run-vm.md lists the known kinds).
* Managed rows get the user alias ``ua-<device id>``, except graphics, lease and
  smartcard, where libvirt's schema has no alias. Unmanaged rows (devices libvirt added) get
  no alias: libvirt keeps only ``ua-`` aliases of the ones we write.
* On Q35 the domain gets ``pcie_root_ports`` (default 16) ``pcie-root-port``
  controllers in total, counting the VM's plugged root-port rows: the missing ones are
  added, unmanaged and without alias, at the lowest free PCI controller indexes from 1.
  libvirt itself leaves one spare, so a second PCIe hot-plug would fail. The first tick
  stores them as unmanaged rows (found by controller index), so the next start counts
  them and adds none (docs/run-vm.md).
* The order is fixed by (kind, a per-kind key, device id), never by row order, so the
  same VM always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from monitor.errors import DefinitionError
from monitor.model.alias import NO_ALIAS, Alias
from monitor.model.ids import normalize_number
from monitor.model.kinds import KINDS, KINDS_BY_TYPE, Norm, default_value, kinds_with, row_value
from monitor.model.rows import DeviceRow
from monitor.domxml.vm_definition import VmDefinition

# The order of kinds inside <devices>, and the kinds libvirt's schema (domaincommon.rng)
# allows no <alias> in (found again by the singleton rule, graphics by type, or not at
# all): both from the kinds table (monitor/model/kinds.py).
KIND_ORDER = tuple(kind.type for kind in KINDS)
_KIND_RANK = {kind: rank for rank, kind in enumerate(KIND_ORDER)}
NO_ALIAS_KINDS = kinds_with(lambda kind: not kind.user_alias)

# Target dev prefix of a disk by its bus.
DISK_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd",
               "fdc": "fd", "xen": "xvd"}


class PlannedDevice(NamedTuple):
    """One row that will be written, with what the writers must agree on."""

    row: DeviceRow
    alias: Alias
    address: tuple[tuple[str, str], ...]  # ``type`` first, then by name
    target_dev: str | None = None  # disks only
    bus: str | None = None  # disks only


def plan_devices(definition: VmDefinition, rows: Sequence[DeviceRow]) -> tuple[PlannedDevice, ...]:
    written = [row for row in rows if row.is_plugged and row.type in _KIND_RANK]
    written += missing_root_ports(definition, written)
    _check_boot_orders(definition, written)
    disk_names = _disk_names(definition, [row for row in written if row.type == "disk"])
    planned = []
    for row in written:
        target_dev, bus = disk_names.get(row.device_id, (None, None))
        planned.append(
            PlannedDevice(row, _alias(definition, row), _address(row), target_dev, bus)
        )
    return tuple(sorted(planned, key=_sort_key))


ROOT_PORT = "pcie-root-port"


def missing_root_ports(definition: VmDefinition, written: Sequence[DeviceRow]) -> list[DeviceRow]:
    """The ``pcie-root-port`` controllers a Q35 VM lacks to have ``pcie_root_ports``."""
    if not definition.is_q35:
        return []
    pci = [row for row in written if row.type == "controller" and row.device == "pci"]
    have = sum(1 for row in pci if row.spec_params.get("model") == ROOT_PORT)
    taken = {spec_int(row.spec_params.get("index"), 0) for row in pci} | {0}  # 0: pcie-root
    added: list[DeviceRow] = []
    index = 1
    while have + len(added) < definition.pcie_root_ports:
        if index not in taken:
            added.append(DeviceRow(device_id=f"{ROOT_PORT}-{index}", vm_id=definition.vm_id,
                                   type="controller", device="pci", is_managed=False,
                                   spec_params={"index": index, "model": ROOT_PORT}))
        index += 1
    return added


def _check_boot_orders(definition: VmDefinition, rows: list[DeviceRow]) -> None:
    """libvirt refuses a boot order used twice; say which, before the host does."""
    seen: dict[int, str] = {}
    for row in sorted(rows, key=lambda r: r.device_id):
        order = spec_int(row.spec_params.get("boot_order"), 0)
        if order > 0 and order in seen:
            raise DefinitionError(
                f"VM {definition.vm_id}: boot order {order} used by rows {seen[order]} "
                f"and {row.device_id}"
            )
        seen[order] = row.device_id


def _alias(definition: VmDefinition, row: DeviceRow) -> Alias:
    if not row.is_managed or row.type in NO_ALIAS_KINDS:
        return NO_ALIAS
    try:
        return Alias.for_device(row.device_id)
    except ValueError:
        raise DefinitionError(
            f"VM {definition.vm_id}: managed {row.type} row {row.device_id!r} "
            "has no UUID for a ua- alias"
        ) from None


def _address(row: DeviceRow) -> tuple[tuple[str, str], ...]:
    """The stored attributes, exactly, in a fixed order (a JSON column may reorder keys)."""
    attrs = {str(k): str(v) for k, v in (row.address or {}).items()}
    first = (("type", attrs.pop("type")),) if "type" in attrs else ()
    return first + tuple(sorted(attrs.items()))


def default_disk_bus(definition: VmDefinition, device: str) -> str:
    if device == "cdrom":
        return "sata" if definition.is_q35 else "ide"
    if device == "floppy":
        return "fdc"
    if device == "lun":
        return "scsi"
    return "virtio"


def disk_name(prefix: str, index: int) -> str:
    """libvirt's naming: 0 -> ``vda``, 25 -> ``vdz``, 26 -> ``vdaa``."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return prefix + letters


def _disk_names(
    definition: VmDefinition, disks: list[DeviceRow]
) -> dict[str, tuple[str, str]]:
    """(target dev, bus) per disk: the stored ``target_dev``, else the first free name
    of the bus's prefix, handed out in boot order, then device-id order (so the boot
    disk of a VM with no stored names is ``vda``/``sda``)."""
    names: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    unnamed = []
    for row in sorted(disks, key=_naming_order):
        bus = str(row.spec_params.get("bus") or default_disk_bus(definition, row.device))
        target = row.spec_params.get("target_dev")
        if not target:
            unnamed.append((row, bus))
            continue
        if target in taken:
            raise DefinitionError(
                f"VM {definition.vm_id}: two disks use target dev {target!r}"
            )
        taken.add(str(target))
        names[row.device_id] = (str(target), bus)
    for row, bus in unnamed:
        prefix = DISK_PREFIX.get(bus, "sd")
        index = 0
        while disk_name(prefix, index) in taken:
            index += 1
        taken.add(disk_name(prefix, index))
        names[row.device_id] = (disk_name(prefix, index), bus)
    return names


def _naming_order(row: DeviceRow) -> tuple[int, str]:
    order = spec_int(row.spec_params.get("boot_order"), 0)
    return (order if order > 0 else 1 << 30, row.device_id)


def _kind_key(planned: PlannedDevice) -> tuple:
    """Within one kind: disks by name (``vdb`` before ``vdaa``), the others by the fields
    their kind's ``order`` names (controllers by type and index, channels by target name,
    DIMMs by node), as stored (absent: 0 or ""); ties and other kinds by device id."""
    row = planned.row
    if row.type == "disk" and planned.target_dev:
        return (len(planned.target_dev), planned.target_dev)
    return tuple(row.device if name == "device" else _stored(row, name)
                 for name in KINDS_BY_TYPE[row.type].order)


def _stored(row: DeviceRow, name: str) -> int | str:
    field = KINDS_BY_TYPE[row.type].field(name)
    value = row_value(row, field)
    return spec_int(value, 0) if field.norm in _NUMBERS else spec_text(value, "")


_NUMBERS = (Norm.NUMBER, Norm.MIB)


def identity(row: DeviceRow, name: str) -> int | str:
    """What the builder writes for one identity field of the row's kind: the stored value
    (a number as an int, text as text), else the kinds table's default (monitor/model/
    kinds.py), so the parser reads back the key the matching compares to the row's."""
    field = KINDS_BY_TYPE[row.type].field(name)
    default = default_value(row, field)
    value = row_value(row, field)
    if field.norm in _NUMBERS:
        return spec_int(value, default)
    return spec_text(value, "" if default is None else default)


def _sort_key(planned: PlannedDevice) -> tuple:
    # Keys of different kinds are never compared: the kind's rank differs first.
    return (_KIND_RANK[planned.row.type], _kind_key(planned), planned.row.device_id)


def spec_int(value, default: int) -> int:
    """A spec param as an int: ``3``, ``"3"`` and ``"0x3"`` read alike; else ``default``."""
    if isinstance(value, bool) or value is None:
        return default
    number = normalize_number(value) if isinstance(value, (str, int)) else None
    return number if isinstance(number, int) else default


def spec_text(value, default: str) -> str:
    """A spec param as text (numbers as their decimal form); empty or absent -> ``default``."""
    if value is None or value == "" or isinstance(value, (dict, list)):
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
