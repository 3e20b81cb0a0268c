"""``replay --check``: the export after the last tick against ``expected.json``.

Pure. Every field is compared but ``hash_time`` (the engine's clock). VMs are keyed by
id and rows by (vm id, device id), so a difference reads as a path an operator can
find in the files, with the expected and the actual value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

IGNORED_VM_FIELDS = frozenset({"hash_time"})


class Difference(NamedTuple):
    path: str
    expected: Any
    actual: Any

    def line(self) -> str:
        return f"{self.path}: expected {_show(self.expected)}, actual {_show(self.actual)}"


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


def compare_exports(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[Difference]:
    differences: list[Difference] = []
    _compare_keyed(
        "vms", _by(expected.get("vms", []), ("id",)), _by(actual.get("vms", []), ("id",)),
        IGNORED_VM_FIELDS, differences,
    )
    key = ("vm_id", "device_id")
    _compare_keyed(
        "devices", _by(expected.get("devices", []), key), _by(actual.get("devices", []), key),
        frozenset(), differences,
    )
    return differences


def _by(entries, key: tuple[str, ...]) -> dict[str, Mapping[str, Any]]:
    return {"/".join(str(entry.get(k)) for k in key): entry for entry in entries}


def _compare_keyed(name: str, expected: dict, actual: dict, ignored: frozenset[str],
                   out: list[Difference]) -> None:
    for key in sorted(expected.keys() | actual.keys()):
        path = f"{name}[{key}]"
        if key not in actual:
            out.append(Difference(path, "present", _ABSENT))
        elif key not in expected:
            out.append(Difference(path, _ABSENT, "present"))
        else:
            _compare_values(path, expected[key], actual[key], ignored, out)


def _compare_values(path: str, expected: Any, actual: Any, ignored: frozenset[str],
                    out: list[Difference]) -> None:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for field in sorted(expected.keys() | actual.keys()):
            if field in ignored:
                continue
            _compare_values(f"{path}.{field}", expected.get(field, _ABSENT),
                            actual.get(field, _ABSENT), frozenset(), out)
    elif expected != actual or type(expected) is not type(actual):
        out.append(Difference(path, expected, actual))
