"""Deterministic ids for new unmanaged rows, so the same device never churns.

oVirt gave unmanaged controllers and channels a fresh random id on every hash change
(docs/matching.md, "stable-id"). Here a new row's id is a uuid5 of (VM id, type, identity), where the
identity is the device's natural key, else its alias, else its address. The same device
gets the same id on every pass, so the row created on pass 1 is found on pass 2 (by its
stored alias, or by the ``stable-id`` rule) and nothing new is inserted.

Identical devices share an identity and are told apart by their order in the XML: the
first keeps the plain name, the next ones get ``#2``, ``#3``... Ordering by position
(not by input order) keeps the ids independent of how the caller lists the devices.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable

from monitor.matching import keys
from monitor.matching.policy import natural_steps
from monitor.model.device import ReportedDevice
from monitor.model.ids import normalize_uuid

# Fixed forever: changing it would give every unmanaged row a new id (churn).
NAMESPACE = uuid.UUID("90231f36-85c5-4567-855f-3d24cbe558e1")


def identity(device: ReportedDevice) -> str:
    """What names a device of its kind: natural key, else alias, else address."""
    for step in natural_steps(device.type):
        key = step.device_key(device)
        if key is not None:
            return f"{step.rule.value}:{keys.key_text(key)}"
    if device.alias.name:
        return "alias:" + device.alias.name
    if device.address.key:
        return "address:" + keys.key_text(device.address.key)
    return "none"


def order_key(device: ReportedDevice) -> tuple:
    """Position first; the rest only breaks ties between devices built by hand."""
    return (device.position, device.tag, device.type, device.device, device.alias.name)


def derive_ids(
    vm_id: str, devices: Iterable[ReportedDevice], taken: Collection[str] = ()
) -> dict[ReportedDevice, str]:
    """The derived id of each device.

    ``taken`` holds ids of rows already decided (matched or in conflict): an ordinal that
    would name one of them is skipped, so a new row never collides with an existing one.
    """
    vm = normalize_uuid(vm_id) or vm_id
    groups: dict[tuple[str, str], list[ReportedDevice]] = defaultdict(list)
    for device in devices:
        groups[(device.type, identity(device))].append(device)
    derived: dict[ReportedDevice, str] = {}
    for (device_type, name), group in groups.items():
        group.sort(key=order_key)
        ordinal = 0
        for device in group:
            while True:
                ordinal += 1
                suffix = f"#{ordinal}" if ordinal > 1 else ""
                candidate = str(uuid.uuid5(NAMESPACE, f"{vm}|{device_type}|{name}{suffix}"))
                if candidate not in taken:
                    break
            derived[device] = candidate
    return derived
