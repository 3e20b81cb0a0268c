"""Reported devices + rows -> the legacy full-list dict (docs/matching.md, "The legacy dict").

The legacy list holds every device that is a row, or is about to become one: matched
devices (``matchedBy`` = the rule) and new unmanaged ones (``new-unmanaged``, with their
derived id). Foreign devices and conflicts travel beside it, never inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.legacy.dicts import ConvertedVm, GuestDisk, LegacyDevice, LegacyVmDevices
from monitor.matching import MatchResult, Rule, match
from monitor.model.device import ReportedDevice
from monitor.model.domain import MetadataDevice, ParsedDomain, VmMetadata
from monitor.model.kinds import KINDS_BY_TYPE, kinds_with, stored_spec_params
from monitor.model.rows import DeviceRow

# Kinds whose key a row stores as ``host_device``: the legacy dict carries it as ``hostdev``.
HOST_DEVICE_TYPES = kinds_with(lambda kind: any(f.stored == "host_device" for f in kind.fields))
_MATCHED_BY = {rule: rule.value for rule in Rule}  # an Enum's .value is a property call


def convert(vm_id: str, parsed: ParsedDomain, rows: Sequence[DeviceRow]) -> ConvertedVm:
    return convert_result(match(vm_id, parsed.devices, rows), parsed.metadata)


def convert_result(result: MatchResult, metadata: VmMetadata) -> ConvertedVm:
    """The legacy dict of a match already made (the diagnosis passes an explained one)."""
    disks = _disk_entries(metadata)
    entries: list[tuple[ReportedDevice, LegacyDevice]] = [
        (m.device, _legacy(m.device, m.row.device_id, dict(m.row.spec_params), m.rule))
        for m in result.matches
    ]
    if result.new:  # the matches come sorted by position already
        entries += [(new.device, _legacy(new.device, new.device_id,
                                         new_spec_params(new.device), Rule.NEW_UNMANAGED))
                    for new in result.new]
        entries.sort(key=lambda entry: entry[0].position)
    guest_disks: dict[str, GuestDisk] = {}
    for device, legacy in entries:
        if disks and device.type == "disk":
            _add_disk_metadata(legacy, disks.get(device.keys.target_dev or ""), guest_disks)
    return ConvertedVm(
        vm_id=result.vm_id,
        legacy=LegacyVmDevices(vmId=result.vm_id, devices=[legacy for _, legacy in entries],
                               guestDiskMapping=guest_disks or None),
        foreign=result.foreign,
        conflicts=result.conflicts,
        conflicted_row_ids=result.conflicted_row_ids,
        result=result,
    )


def _legacy(device: ReportedDevice, device_id: str, spec_params: dict[str, Any],
            rule: Rule) -> LegacyDevice:
    # A literal, not LegacyDevice(...): a TypedDict called with keywords costs twice as much.
    legacy: LegacyDevice = {
        "deviceId": device_id, "type": device.type, "device": device.device,
        "address": dict(device.address.attrs), "alias": device.alias.name,
        "specParams": spec_params, "matchedBy": _MATCHED_BY[rule]}
    if device.type in HOST_DEVICE_TYPES and device.keys.host_address is not None:
        legacy["hostdev"] = device.keys.host_address.node_device_name()
    return legacy


def new_spec_params(device: ReportedDevice) -> dict[str, Any]:
    """What a new unmanaged row stores so its natural key finds it again next pass:
    the kind's fields that the kinds table stores in spec_params."""
    return stored_spec_params(KINDS_BY_TYPE.get(device.type), device.keys)


def _disk_entries(metadata: VmMetadata) -> dict[str, MetadataDevice]:
    """The metadata's disk entries by target dev; empty (no keys read) when there are none."""
    return {entry.attrs["name"]: entry for entry in metadata.devices
            if entry.attrs.get("devtype") == "disk" and entry.attrs.get("name")}


def _add_disk_metadata(legacy: LegacyDevice, entry: MetadataDevice | None,
                       guest_disks: dict[str, GuestDisk]) -> None:
    if entry is None:
        return
    values = entry.values
    if values.get("imageID") is not None:
        legacy["imageID"] = str(values["imageID"])
    if isinstance(values.get("volumeChain"), list):
        legacy["volumeChain"] = values["volumeChain"]
    if values.get("guestName"):
        guest_disks[legacy["deviceId"]] = GuestDisk(name=str(values["guestName"]))
