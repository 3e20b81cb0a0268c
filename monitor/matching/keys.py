"""Per-kind identity keys of reported devices and of rows, in comparison form.

Each function returns a hashable key, or ``None`` when the device or row has no such
key (a ``None`` key never matches anything). Device keys come already normalized from
the parser; row keys are normalized here, once per row and rule: MAC case, hex vs
decimal numbers, UUID case. Stored values are never rewritten.

Only the natural-key functions read ``device.keys``, which the parser loads lazily:
the alias rules run first, so a device matched by its alias never pays for them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from monitor.model.address import Address
from monitor.model.device import ReportedDevice
from monitor.model.hostaddress import HostAddress, parse_node_device_name
from monitor.model.ids import normalize_mac, normalize_number, normalize_uuid
from monitor.model.kinds import KINDS_BY_TYPE, kinds_with
from monitor.model.rows import DeviceRow

# Singleton kinds told apart by their model or type, not by the tag alone.
KIND_BY_DEVICE = kinds_with(lambda kind: kind.by_device)



def _spec(type_: str, name: str) -> str:
    """The spec_params key a kind's field is stored under (monitor/model/kinds.py)."""
    spec = KINDS_BY_TYPE[type_].field(name).spec
    assert spec is not None, f"{type_}.{name} is not stored in spec_params"
    return spec


_MAC = _spec("interface", "mac")
_INDEX, _MODEL = _spec("controller", "index"), _spec("controller", "model")
_NODE, _SIZE = _spec("memory", "node"), _spec("memory", "size")
_TARGET_TYPE, _TARGET_NAME = _spec("channel", "target_type"), _spec("channel", "target_name")
_HOST_DEVICE = KINDS_BY_TYPE["hostdev"].field("host_address").stored  # a row column


def _text(value: Any) -> str | None:
    """Lower-case comparison form of a free-text id (a serial, a LUN WWID)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def _id(value: Any) -> str | None:
    """A UUID in canonical form; other ids in lower case."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 36 and value[8] == "-" and value == value.lower():
        return value  # already canonical, or not a UUID at all: the same comparison form
    return normalize_uuid(str(value)) or _text(value)


def _stored(value: Any) -> Hashable:
    """A stored value in comparison form: a list or an object (a hand-edited row) as its
    ``repr``, so that it is hashable and never equal to what XML gives."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return repr(value)


# --- alias rules -----------------------------------------------------------------

def user_alias_id(device: ReportedDevice) -> str | None:
    return device.alias.user_uuid


def row_id(row: DeviceRow) -> str | None:
    return _id(row.device_id)


def alias(device: ReportedDevice) -> Hashable | None:
    return (device.type, device.alias.name) if device.alias.name else None


def row_alias(row: DeviceRow) -> Hashable | None:
    """Only a non-empty stored alias: an empty one never matches a device without alias."""
    return (row.type, row.alias) if row.alias else None


# --- natural keys ----------------------------------------------------------------

def mac(device: ReportedDevice) -> str | None:
    value = device.keys.mac
    return normalize_mac(value) or _text(value)


def row_mac(row: DeviceRow) -> str | None:
    value = row.spec_params.get(_MAC)
    return normalize_mac(value) or _text(value)


def serial(device: ReportedDevice) -> str | None:
    return _id(device.keys.serial)


def source(device: ReportedDevice) -> str | None:
    """The disk's source path/dev in lower case: row ids are searched inside it."""
    return _text(device.keys.source)


def row_path_parts(row: DeviceRow) -> tuple[str, ...] | None:
    """What may appear inside a disk's source path: its device id and its LUN WWID."""
    parts = tuple(p for p in (row_id(row), _text(row.spec_params.get("lun_id"))) if p)
    return parts or None


def host_address(device: ReportedDevice) -> HostAddress | None:
    return device.keys.host_address


def row_host_address(row: DeviceRow) -> HostAddress | None:
    return parse_node_device_name(getattr(row, _HOST_DEVICE))


def controller(device: ReportedDevice) -> Hashable | None:
    keys = device.keys
    if keys.index is None:
        return None
    return (device.device, normalize_number(keys.index), keys.model or None)


def row_controller(row: DeviceRow) -> Hashable | None:
    index = row.spec_params.get(_INDEX)
    if index is None:
        return None
    return (row.device, normalize_number(index), _stored(row.spec_params.get(_MODEL) or None))


def memory(device: ReportedDevice) -> Hashable | None:
    keys = device.keys
    if keys.size is None:
        return None
    return (normalize_number(keys.node), normalize_number(keys.size))


def row_memory(row: DeviceRow) -> Hashable | None:
    size = row.spec_params.get(_SIZE)
    if size is None:
        return None
    return (normalize_number(row.spec_params.get(_NODE)), normalize_number(size))


def channel(device: ReportedDevice) -> Hashable | None:
    keys = device.keys
    if keys.target_type is None and keys.target_name is None:
        return None
    return (device.device, keys.target_type, keys.target_name)


def row_channel(row: DeviceRow) -> Hashable | None:
    target_type = row.spec_params.get(_TARGET_TYPE)
    target_name = row.spec_params.get(_TARGET_NAME)
    if target_type is None and target_name is None:
        return None
    return (row.device, _stored(target_type), _stored(target_name))


def kind(device: ReportedDevice) -> Hashable:
    """A singleton's kind: video by model type, graphics by type, the rest by type alone."""
    if device.type in KIND_BY_DEVICE:
        return (device.type, device.device.lower())
    return (device.type,)


def row_kind(row: DeviceRow) -> Hashable:
    if row.type in KIND_BY_DEVICE:
        return (row.type, row.device.lower())
    return (row.type,)


# --- fallbacks -------------------------------------------------------------------

def address(device: ReportedDevice) -> Hashable | None:
    key = device.address.key
    return (device.type, key) if key else None


def row_address(row: DeviceRow) -> Hashable | None:
    key = Address(row.address).key if row.address else None
    return (row.type, key) if key else None


def row_typed_id(row: DeviceRow) -> Hashable | None:
    return (row.type, row_id(row))


# --- for people ------------------------------------------------------------------

def key_text(key: Any) -> str:
    """A key as one short, stable string: for explanations and derived-id names."""
    if type(key) is tuple:
        if key and type(key[0]) is tuple:  # an address key: (name, value) pairs
            return ",".join(f"{name}={value}" for name, value in key)
        return "/".join(key_text(part) for part in key)
    if isinstance(key, HostAddress):
        return key.node_device_name()
    if key is None:
        return "-"
    return str(key)
