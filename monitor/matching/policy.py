"""THE matching policy (BRIEF section 3): an ordered table of rules, read top to bottom.

The rules run one at a time, each over all devices and rows still open. Under a rule a
device is matched when its key selects exactly one open row and no other device selects
that row; anything ambiguous is a conflict, and the devices and rows in it leave matching.
``singleton`` is the exception: it decides only when one open device and one open row of
the kind exist, and otherwise decides nothing. Keys are defined in ``keys.py``; the
engine that runs this table is ``matcher.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from enum import Enum
from typing import NamedTuple

from monitor.matching import keys
from monitor.model.device import ReportedDevice
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
    ALIAS = "alias"  # never reads device.keys
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


SINGLETON_KINDS = frozenset(
    {"balloon", "rng", "watchdog", "tpm", "sound", "smartcard", "console", "panic",
     "video", "graphics"}
)
A, N, F = Stage.ALIAS, Stage.NATURAL, Stage.FALLBACK

POLICY: tuple[Step, ...] = (
    Step(Rule.USER_ALIAS, A, None, "ua-<uuid> = device_id (another type: conflict)",
         keys.user_alias_id, keys.row_id),
    Step(Rule.STORED_ALIAS, A, None, "(type, alias) = (type, stored alias), non-empty",
         keys.alias, keys.row_alias),
    Step(Rule.MAC, N, frozenset({"interface"}), "MAC = spec_params.mac_address",
         keys.mac, keys.row_mac),
    Step(Rule.DISK_SERIAL, N, frozenset({"disk"}), "serial = device_id",
         keys.serial, keys.row_id),
    Step(Rule.DISK_PATH, N, frozenset({"disk"}),
         "device_id or spec_params.lun_id inside the source path/dev",
         keys.source, keys.row_path_parts, Lookup.INSIDE),
    Step(Rule.HOST_ADDRESS, N, frozenset({"hostdev", "mdev"}),
         "host-side source address or mdev uuid = host_device (node-device name)",
         keys.host_address, keys.row_host_address),
    Step(Rule.CONTROLLER_INDEX, N, frozenset({"controller"}),
         "(device, index, model) = (device, spec_params.index, spec_params.model)",
         keys.controller, keys.row_controller),
    Step(Rule.MEMORY_NODE_SIZE, N, frozenset({"memory"}),
         "(node, size MiB) = (spec_params.node, spec_params.size)",
         keys.memory, keys.row_memory),
    Step(Rule.CHANNEL_TARGET, N, frozenset({"channel"}),
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
UNMANAGED_TYPES = frozenset({"controller", "channel", "redir", "memory"})
HOST_DEVICE_TYPES = frozenset({"hostdev", "mdev"})


def becomes_unmanaged(device: ReportedDevice) -> bool:
    """A host device with a ``ua-`` alias was the manager's: gone from the DB, it is foreign."""
    if device.type in UNMANAGED_TYPES:
        return True
    return device.type in HOST_DEVICE_TYPES and not device.alias.is_user


def natural_steps(device_type: str) -> tuple[Step, ...]:
    """The natural-key rules of a kind, in policy order (the derived id uses the first key)."""
    return _NATURAL_STEPS_BY_TYPE.get(device_type, ())


_NATURAL_STEPS_BY_TYPE: dict[str, tuple[Step, ...]] = {}
for _step in POLICY:
    if _step.stage is Stage.NATURAL and _step.lookup is not Lookup.UNIQUE:
        for _kind in _step.kinds or ():
            _NATURAL_STEPS_BY_TYPE[_kind] = _NATURAL_STEPS_BY_TYPE.get(_kind, ()) + (_step,)
