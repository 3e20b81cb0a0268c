"""THE matching policy (docs/matching.md): an ordered table of rules, read top to bottom.

The rules run one at a time, each over all devices and rows still open. Under a rule a
device is matched when its key selects exactly one open row and no other device selects
that row; anything ambiguous is a conflict, and the devices and rows in it leave matching.
``singleton`` is the exception: it decides only when one open device and one open row of
the kind exist, and otherwise decides nothing. A step's ``veto`` drops a selected row
before that: ``stored-alias`` never selects an unplugged row, nor one whose equality key
differs from the device's (libvirt reuses its aliases). Keys are defined in ``keys.py``;
the engine that runs this table is ``matcher.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from enum import Enum
from typing import NamedTuple

from monitor.matching import keys
from monitor.model.device import ReportedDevice
from monitor.model.kinds import KINDS, Unmanaged, kinds_under, kinds_with
from monitor.model.rows import DeviceRow


class Rule(str, Enum):
    """What decided a device: the legacy dict's ``matchedBy``."""

    USER_ALIAS = "user-alias"
    STORED_ALIAS = "stored-alias"
    MAC = "mac"
    DISK_SERIAL = "disk-serial"
    DISK_PATH = "disk-path"
    HOST_ADDRESS = "host-address"
    CONTROLLER_INDEX = "controller-index"
    MEMORY_NODE_SIZE = "memory-node-size"
    CHANNEL_TARGET = "channel-target"
    SINGLETON = "singleton"
    ADDRESS = "address"
    STABLE_ID = "stable-id"
    NEW_UNMANAGED = "new-unmanaged"
    FOREIGN = "foreign"
    CONFLICT = "conflict"


class Stage(str, Enum):
    ALIAS = "alias"  # reads device.keys only to veto a stored alias
    NATURAL = "natural-key"  # for every device the alias rules left open, whatever its alias
    FALLBACK = "fallback"


class Lookup(str, Enum):
    EQUAL = "equal"  # device key == row key
    INSIDE = "inside"  # one of the row's keys is a substring of the device key
    UNIQUE = "unique"  # one open device and one open row with the key, else no decision


class Step(NamedTuple):
    rule: Rule
    stage: Stage
    kinds: frozenset[str] | None  # device and row `type`s it applies to; None: every kind
    key: str  # what is compared, for people
    device_key: Callable[[ReportedDevice], Hashable | None] | None  # None: the derived id
    row_key: Callable[[DeviceRow], Hashable | None]
    lookup: Lookup = Lookup.EQUAL
    # Why a selected row is not this device after all (None: it may be); see stored_alias_veto.
    veto: Callable[[ReportedDevice, DeviceRow], str | None] | None = None


def _kinds(rule: Rule) -> frozenset[str]:
    """The types a natural-key rule applies to: the kinds table says (model/kinds.py)."""
    return kinds_under(rule.value)


SINGLETON_KINDS = _kinds(Rule.SINGLETON)
A, N, F = Stage.ALIAS, Stage.NATURAL, Stage.FALLBACK



def stored_alias_veto(device: ReportedDevice, row: DeviceRow) -> str | None:
    """Why a row holding the device's alias is not that device (docs/matching.md): libvirt
    hands a freed alias (``net0``) to the next device attached, so a libvirt alias is an
    identity only while its device is there and agrees with the kind's equality key."""
    if not row.is_plugged:
        return f"row {row.device_id} holds this alias but is unplugged"
    for step in equality_steps(device.type):
        row_key = step.row_key(row)
        device_key = step.device_key(device) if row_key is not None else None
        if device_key is not None and device_key != row_key:
            return (f"row {row.device_id} holds this alias but its {step.rule.value} key "
                    f"{keys.key_text(row_key)} differs from {keys.key_text(device_key)}")
    return None


POLICY: tuple[Step, ...] = (
    Step(Rule.USER_ALIAS, A, None, "ua-<uuid> = device_id (another type: conflict)",
         keys.user_alias_id, keys.row_id),
    Step(Rule.STORED_ALIAS, A, None, "(type, alias) = (type, stored alias), non-empty; "
         "plugged rows only, never against a differing equality key",
         keys.alias, keys.row_alias, veto=stored_alias_veto),
    Step(Rule.MAC, N, _kinds(Rule.MAC), "MAC = spec_params.mac_address",
         keys.mac, keys.row_mac),
    Step(Rule.DISK_SERIAL, N, _kinds(Rule.DISK_SERIAL), "serial = device_id",
         keys.serial, keys.row_id),
    Step(Rule.DISK_PATH, N, _kinds(Rule.DISK_PATH),
         "device_id or spec_params.lun_id inside the source path/dev",
         keys.source, keys.row_path_parts, Lookup.INSIDE),
    Step(Rule.HOST_ADDRESS, N, _kinds(Rule.HOST_ADDRESS),
         "host-side source address or mdev uuid = host_device (node-device name)",
         keys.host_address, keys.row_host_address),
    Step(Rule.CONTROLLER_INDEX, N, _kinds(Rule.CONTROLLER_INDEX),
         "(device, index, model) = (device, spec_params.index, spec_params.model)",
         keys.controller, keys.row_controller),
    Step(Rule.MEMORY_NODE_SIZE, N, _kinds(Rule.MEMORY_NODE_SIZE),
         "(node, size MiB) = (spec_params.node, spec_params.size)",
         keys.memory, keys.row_memory),
    Step(Rule.CHANNEL_TARGET, N, _kinds(Rule.CHANNEL_TARGET),
         "(device, target type, target name) = (device, spec_params.target_type, .target_name)",
         keys.channel, keys.row_channel),
    Step(Rule.SINGLETON, N, SINGLETON_KINDS,
         "kind (video: model, graphics: type): one open device and one open row",
         keys.kind, keys.row_kind, Lookup.UNIQUE),
    Step(Rule.ADDRESS, F, None, "(type, full non-empty address) = (type, row address)",
         keys.address, keys.row_address),
    Step(Rule.STABLE_ID, F, None, "(type, derived id) = (type, device_id)",
         None, keys.row_typed_id),
)

# Unmatched devices of exactly these kinds become new unmanaged rows; all others are foreign.
UNMANAGED_TYPES = kinds_with(lambda kind: kind.unmanaged is Unmanaged.ALWAYS)
HOST_DEVICE_TYPES = kinds_with(lambda kind: kind.unmanaged is Unmanaged.WITHOUT_USER_ALIAS)


def becomes_unmanaged(device: ReportedDevice) -> bool:
    """A host device with a ``ua-`` alias was the manager's: gone from the DB, it is foreign."""
    if device.type in UNMANAGED_TYPES:
        return True
    return device.type in HOST_DEVICE_TYPES and not device.alias.is_user


def natural_steps(device_type: str) -> tuple[Step, ...]:
    """The natural-key rules of a kind, in policy order (the derived id uses the first key)."""
    return _NATURAL_STEPS_BY_TYPE.get(device_type, ())


def equality_steps(device_type: str) -> tuple[Step, ...]:
    """The kind's equality keys (mac, disk-serial, host-address, controller-index,
    memory-node-size, channel-target): the ones that veto a stored alias. disk-path
    (a substring) and singleton (no key) never do."""
    return _EQUALITY_STEPS_BY_TYPE.get(device_type, ())


_NATURAL_STEPS_BY_TYPE: dict[str, tuple[Step, ...]] = {}
_EQUALITY_STEPS_BY_TYPE: dict[str, tuple[Step, ...]] = {}
for _step in POLICY:
    if _step.stage is Stage.NATURAL and _step.lookup is not Lookup.UNIQUE:
        for _kind in _step.kinds or ():
            _NATURAL_STEPS_BY_TYPE[_kind] = _NATURAL_STEPS_BY_TYPE.get(_kind, ()) + (_step,)
            if _step.lookup is Lookup.EQUAL:
                _EQUALITY_STEPS_BY_TYPE[_kind] = _EQUALITY_STEPS_BY_TYPE.get(_kind, ()) + (_step,)

# A rule the kinds table names must be one of the policy's natural-key rules.
_unknown = {rule for kind in KINDS for rule in kind.rules} - {
    step.rule.value for step in POLICY if step.stage is Stage.NATURAL}
assert not _unknown, f"kinds table names rules the policy lacks: {sorted(_unknown)}"
