"""Host-side identity of a host device, and libvirt's node-device names for it.

A host device row stores libvirt's node-device name (``pci_0000_05_00_1``,
``mdev_<uuid>``, ``usb_1_5``, ``scsi_0_0_2_6``); the XML carries the host-side
source address. Both become a ``HostAddress`` so they compare exactly.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from monitor.model.ids import normalize_number, normalize_uuid


class HostAddress(NamedTuple):
    kind: str  # pci | usb | scsi | mdev
    parts: tuple  # numbers for pci/usb/scsi, the lower-case uuid for mdev

    def node_device_name(self) -> str:
        if self.kind == "pci":
            domain, bus, slot, function = self.parts
            return f"pci_{domain:04x}_{bus:02x}_{slot:02x}_{function:x}"
        if self.kind == "mdev":
            return "mdev_" + self.parts[0].replace("-", "_")
        return self.kind + "_" + "_".join(str(p) for p in self.parts)


def _numbers(values) -> tuple | None:
    parts = tuple(normalize_number(v) for v in values)
    if any(not isinstance(p, int) for p in parts):
        return None
    return parts


def pci(domain, bus, slot, function) -> HostAddress | None:
    parts = _numbers((domain or "0", bus, slot, function))
    return HostAddress("pci", parts) if parts else None


def usb(bus, device) -> HostAddress | None:
    parts = _numbers((bus, device))
    return HostAddress("usb", parts) if parts else None


def scsi(host, bus, target, unit) -> HostAddress | None:
    parts = _numbers((host, bus, target, unit))
    return HostAddress("scsi", parts) if parts else None


def mdev(uuid_text) -> HostAddress | None:
    canonical = normalize_uuid(uuid_text)
    return HostAddress("mdev", (canonical,)) if canonical else None


_NODE_NAME = re.compile(r"^(pci|usb|scsi|mdev)_(.+)$")


def parse_node_device_name(name: str | None) -> HostAddress | None:
    """``pci_0000_05_00_1`` -> HostAddress('pci', (0, 5, 0, 1)); unknown names -> None."""
    if not name:
        return None
    found = _NODE_NAME.match(name.strip())
    if not found:
        return None
    kind, rest = found.groups()
    if kind == "mdev":
        return mdev(rest.replace("_", "-"))
    fields = rest.split("_")
    if kind == "pci" and len(fields) == 4:
        parts = tuple(int(f, 16) for f in fields if re.fullmatch(r"[0-9a-fA-F]+", f))
        return HostAddress("pci", parts) if len(parts) == 4 else None
    if kind == "usb" and len(fields) == 2:
        return usb(*fields)
    if kind == "scsi" and len(fields) == 4:
        return scsi(*fields)
    return None
