"""The inventory document: ``{"vms": [...], "devices": [...]}`` (docs/architecture.md, "Data model").

``monitor load`` reads it, ``monitor export`` writes it, and ``replay`` compares it
with ``expected.json``. Values are kept exactly as given (MAC case, hex strings,
UUIDs inside ``spec_params``), so load then export gives the same document back.

Shape rules a reader checks here, one line per problem, naming the entry:
* ``id``, ``vm_id``, ``device_id`` are lower-case dashed UUIDs;
* a VM needs ``id`` and ``name``; a row needs ``device_id``, ``vm_id``, ``type``,
  ``device``; every other field may be left out and takes the default of DeviceRow
  / VmRecord; an unknown field is refused (a typo would otherwise be lost);
* ``hash_time`` is ISO 8601 with an offset; export writes it in UTC with a ``Z``
  (``2024-05-01T12:00:00Z``, microseconds only when there are some).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from monitor.errors import MonitorError, UsageError
from monitor.inputfile import read_json
from monitor.model.ids import normalize_uuid
from monitor.model.rows import DeviceRow, VmRecord
from monitor.settings import Limits

if TYPE_CHECKING:
    from monitor.store.repository import Store

HOST_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class LoadSummary(NamedTuple):
    vms: int
    rows: int


class Inventory(NamedTuple):
    """A checked document: the VMs in document order, and each VM's rows."""

    vms: tuple[VmRecord, ...]
    rows: dict[str, list[DeviceRow]]


# --- writing -------------------------------------------------------------------------


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def vm_document(vm: VmRecord) -> dict[str, Any]:
    return {
        "definition": vm.definition,
        "hash": vm.hash,
        "hash_time": format_time(vm.hash_time),
        "host": vm.host,
        "id": vm.id,
        "last_error": vm.last_error,
        "last_error_hash": vm.last_error_hash,
        "name": vm.name,
        "status": vm.status,
    }


def row_document(row: DeviceRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in sorted(DeviceRow.__dataclass_fields__)}


def build_document(
    vms: Iterable[VmRecord], rows_by_vm: Mapping[str, Iterable[DeviceRow]]
) -> dict[str, list]:
    """VMs sorted by id, rows by (vm_id, device_id), keys sorted."""
    ordered = sorted(vms, key=lambda vm: vm.id)
    devices = [
        row_document(row)
        for vm in ordered
        for row in sorted(rows_by_vm.get(vm.id, ()), key=lambda row: row.device_id)
    ]
    return {"devices": devices, "vms": [vm_document(vm) for vm in ordered]}


def dumps(document: Mapping[str, Any]) -> str:
    """The document as JSON text; a NaN or an infinity (no JSON number) is refused."""
    try:
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False,
                          allow_nan=False) + "\n"
    except ValueError as error:
        raise MonitorError(f"cannot export: {error} (a stored value is not a JSON number)") \
            from None


# --- reading -------------------------------------------------------------------------


class _Invalid(ValueError):
    """A field's problem, completed with the entry's name by the caller."""


def _uuid(value: Any) -> str:
    if isinstance(value, str) and normalize_uuid(value) == value:
        return value
    raise _Invalid(f"is not a lower-case UUID: {value!r}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid(f"is not a string: {value!r}")


def _host(value: Any) -> str:
    if isinstance(value, str) and HOST_NAME.match(value):
        return value
    raise _Invalid(f"is not a host name ([A-Za-z0-9._-]+, not a URI): {value!r}")


def _time(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(_text(value))
    except ValueError:
        raise _Invalid(f"is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise _Invalid(f"has no UTC offset (write ...Z): {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise _Invalid(f"is outside the calendar in UTC: {value!r}") from None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid(f"is not true or false: {value!r}")


def _object(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    raise _Invalid(f"is not an object: {value!r}")


def _strings(value: Any) -> dict[str, str]:
    if all(isinstance(item, str) for item in _object(value).values()):
        return value
    raise _Invalid(f"has a value that is not a string: {value!r}")


def _nullable(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


REQUIRED = object()

# field -> (check and convert, default or REQUIRED); defaults are copied per entry.
VM_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "id": (_uuid, REQUIRED),
    "name": (_text, REQUIRED),
    "host": (_nullable(_host), None),
    "status": (_nullable(_text), None),
    "hash": (_nullable(_text), None),
    "hash_time": (_nullable(_time), None),
    "last_error_hash": (_nullable(_text), None),
    "last_error": (_nullable(_text), None),
    "definition": (_object, {}),
}
DEVICE_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "device_id": (_uuid, REQUIRED),
    "vm_id": (_uuid, REQUIRED),
    "type": (_text, REQUIRED),
    "device": (_text, REQUIRED),
    "address": (_strings, {}),
    "alias": (_text, ""),
    "spec_params": (_object, {}),
    "is_managed": (_flag, True),
    "is_plugged": (_flag, True),
    "is_readonly": (_flag, False),
    "logical_name": (_nullable(_text), None),
    "host_device": (_nullable(_text), None),
    "custom_properties": (_object, {}),
}


def _entry(value: Any, fields: dict, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} is not an object")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise UsageError(f"{where}: unknown field {unknown[0]!r}")
    checked = {}
    for name, (check, default) in fields.items():
        if name not in value:
            if default is REQUIRED:
                raise UsageError(f"{where}: {name} is missing")
            checked[name] = json.loads(json.dumps(default))  # a fresh {} per entry
            continue
        try:
            checked[name] = check(value[name])
        except _Invalid as problem:
            raise UsageError(f"{where}: {name} {problem}") from None
    return checked


def _list(document: dict, key: str) -> list:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise UsageError(f"{key} is not a list")
    return value


def parse_document(document: Any) -> Inventory:
    """Check a document's shape and turn it into records; the first problem is raised."""
    if not isinstance(document, dict):
        raise UsageError('not an inventory document: expected {"vms": [...], "devices": [...]}')
    unknown = sorted(set(document) - {"vms", "devices"})
    if unknown:
        raise UsageError(f"unknown top-level key {unknown[0]!r} (expected vms, devices)")
    if "vms" not in document:
        raise UsageError("vms is missing")
    records: dict[str, VmRecord] = {}
    for index, value in enumerate(_list(document, "vms")):
        vm = VmRecord(**_entry(value, VM_FIELDS, f"vms[{index}]"))
        if vm.id in records:
            raise UsageError(f"vms[{index}]: duplicate id {vm.id}")
        records[vm.id] = vm
    rows: dict[str, list[DeviceRow]] = {vm_id: [] for vm_id in records}
    seen: set[tuple[str, str]] = set()
    for index, value in enumerate(_list(document, "devices")):
        row = DeviceRow(**_entry(value, DEVICE_FIELDS, f"devices[{index}]"))
        if row.vm_id not in records:
            raise UsageError(f"devices[{index}]: vm_id {row.vm_id} is not among the document's vms")
        if (row.vm_id, row.device_id) in seen:
            raise UsageError(f"devices[{index}]: duplicate device_id {row.device_id}")
        seen.add((row.vm_id, row.device_id))
        rows[row.vm_id].append(row)
    return Inventory(tuple(records.values()), rows)


def read_document(path: str | Path, max_bytes: int = Limits().max_json_bytes) -> Any:
    """The JSON in ``path``; a missing, oversized or malformed file is a one-line
    UsageError (``monitor.inputfile`` lists what is refused)."""
    return read_json(path, max_bytes, UsageError)


# --- the store ------------------------------------------------------------------------


def load_document(store: "Store", document: Any) -> LoadSummary:
    """Replace each listed VM and all its rows in one transaction; other VMs stay."""
    inventory = parse_document(document)
    with store.transaction() as tx:
        written = tx.replace_vms([(vm, inventory.rows[vm.id]) for vm in inventory.vms])
    return LoadSummary(vms=len(inventory.vms), rows=written)


def export_document(store: "Store", vm_ids: Iterable[str] | None = None) -> dict:
    with store.transaction() as tx:
        return tx.export(vm_ids)
