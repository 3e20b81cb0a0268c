"""A parsed Domain XML: the VM's identity, its devices and the oVirt metadata."""

from __future__ import annotations

from typing import NamedTuple, Union

from monitor.model.device import ReportedDevice

# A metadata value with its type hint applied: ``type="int"`` -> int, and so on.
# Nested elements (a disk's volumeChain) become lists of dicts.
MetaValue = Union[str, int, float, bool, None, list, dict]


class MetadataDevice(NamedTuple):
    """One ``<ovirt-vm:device>`` entry: its attributes (devtype, name, mac_address) and values."""

    attrs: dict[str, str]
    values: dict[str, MetaValue]


class VmMetadata(NamedTuple):
    values: dict[str, MetaValue]
    custom: dict[str, MetaValue]
    devices: tuple[MetadataDevice, ...]
    qos: dict[str, MetaValue]

    def disk_entry(self, target_dev: str | None) -> MetadataDevice | None:
        if not target_dev:
            return None
        for entry in self.devices:
            if entry.attrs.get("devtype") == "disk" and entry.attrs.get("name") == target_dev:
                return entry
        return None


EMPTY_METADATA = VmMetadata({}, {}, (), {})


class ParsedDomain(NamedTuple):
    """What the parser read from one document.

    ``uuid`` is the normalized ``<uuid>`` (``None`` for a lone device element or a
    domain without a valid one); ``source_kind`` says which root it came from:
    ``domain``, ``domstatus`` or ``device``.
    """

    uuid: str | None
    name: str | None
    devices: tuple[ReportedDevice, ...]
    metadata: VmMetadata
    source_kind: str
