"""The declared shapes of the legacy device dicts (docs/matching.md, "The legacy dict").

The converter is the one place that builds these old-style dicts; everything else in
the engine passes typed values. ``ConvertedVm`` is the bundle handed to a monitoring
adapter: the legacy dict, plus beside it what the legacy code must not see as devices
(foreign devices, conflicts) and the ids of rows in conflict, so the adapter leaves
them alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple, NotRequired, TypedDict

from monitor.matching.matcher import Conflict, MatchResult
from monitor.model.device import ReportedDevice


class LegacyDevice(TypedDict):
    deviceId: str
    type: str
    device: str
    address: dict[str, str]  # the reported <address> attributes, {} if none
    alias: str  # the reported alias, "" if none
    specParams: dict[str, Any]  # the row's; derived from the natural key for new rows
    matchedBy: str  # a Rule value: user-alias, ..., stable-id, new-unmanaged
    hostdev: NotRequired[str]  # libvirt node-device name, host devices only
    imageID: NotRequired[str]  # from the disk's <ovirt-vm:device> metadata entry
    volumeChain: NotRequired[list[dict[str, Any]]]


class GuestDisk(TypedDict):
    name: str  # the guest's name for the disk, e.g. /dev/vda


class LegacyVmDevices(TypedDict):
    vmId: str
    devices: list[LegacyDevice]
    guestDiskMapping: dict[str, GuestDisk] | None  # by deviceId; None: no guest names known


class DeviceRef(TypedDict):
    """A reported device that is not in the legacy list, as JSON."""

    position: int
    tag: str
    type: str
    device: str
    alias: str
    address: dict[str, str]


class ConflictJson(TypedDict):
    rule: str
    reason: str
    devices: list[DeviceRef]
    rowIds: list[str]


class ConvertedVmJson(LegacyVmDevices):
    """One line of ``--emit-dicts``: the legacy dict with the rest beside it."""

    foreign: list[DeviceRef]
    conflicts: list[ConflictJson]
    conflictedRowIds: list[str]


class ConvertedVm(NamedTuple):
    vm_id: str
    legacy: LegacyVmDevices
    foreign: tuple[ReportedDevice, ...]
    conflicts: tuple[Conflict, ...]
    conflicted_row_ids: frozenset[str]
    result: MatchResult  # the decisions behind the dict: counts, logs, diagnosis

    def as_json(self) -> ConvertedVmJson:
        return ConvertedVmJson(
            vmId=self.legacy["vmId"],
            devices=self.legacy["devices"],
            guestDiskMapping=self.legacy["guestDiskMapping"],
            foreign=[device_ref(d) for d in self.foreign],
            conflicts=[conflict_json(c) for c in self.conflicts],
            conflictedRowIds=sorted(self.conflicted_row_ids),
        )


def device_ref(device: ReportedDevice) -> DeviceRef:
    return DeviceRef(position=device.position, tag=device.tag, type=device.type,
                     device=device.device, alias=device.alias.name,
                     address=dict(device.address.attrs))


def conflict_json(conflict: Conflict) -> ConflictJson:
    return ConflictJson(rule=conflict.rule.value, reason=conflict.reason,
                        devices=[device_ref(d) for d in conflict.devices],
                        rowIds=[row.device_id for row in conflict.rows])
