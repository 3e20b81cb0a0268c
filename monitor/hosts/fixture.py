"""Reading a recorded fixture directory (docs/worker.md, "Recorded fixtures").

```
inventory.json                  optional: VMs and rows before the first tick
ticks/0001/<host>.json          {"vms": {"<vm id>": {"status": "Up", "hash": "..."}}}
                                or {"error": "unreachable" | "timeout" | "refused"}
ticks/0001/<host>/<vm id>.xml   the Domain XML the host returns for that VM, verbatim
ticks/0001/locks.json           optional: a JSON list of VM ids whose devices lock is held
expected.json                   optional: the export expected after the last tick
```

The whole directory is checked when it is read, so a broken fixture fails before the
first tick with one line naming the file. Host answers are read eagerly (they are
small); XML stays on disk until a dump asks for it.

``"refused"`` means the host answered the poll but refused the batch: the file may
carry ``"vms"`` beside the error, the poll returns them and the dump raises
``HostRefused`` (without ``"vms"`` the poll reports no VM). ``"unreachable"`` and
``"timeout"`` fail the poll itself, so they stand alone. ``locks`` cannot be a host
name, since ``locks.json`` holds the tick's locks. Other files in a
tick folder (notes, a host folder without its ``.json``) are not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from monitor.errors import FixtureError
from monitor.hosts.source import VmReport, is_host_name, report
from monitor.inputfile import read_json
from monitor.model.ids import ids_in_several_spellings, normalize_uuid
from monitor.settings import Limits

DEFAULT_LIMITS = Limits()
TICK_NAME = re.compile(r"[0-9]{4,}")
HOST_ERRORS = ("unreachable", "timeout", "refused")
LOCKS_FILE = "locks.json"
INVENTORY_FILE = "inventory.json"
EXPECTED_FILE = "expected.json"
TICKS_DIR = "ticks"


class HostAnswer(NamedTuple):
    """One host's ``<host>.json`` in one tick: its reports, or the error it gave."""

    host: str
    reports: Mapping[str, VmReport]
    error: str | None  # one of HOST_ERRORS, or None
    xml_dir: Path  # ticks/NNNN/<host>/, which may not exist

    def xml_path(self, vm_id: str) -> Path:
        return self.xml_dir / f"{vm_id}.xml"


class Tick(NamedTuple):
    number: int
    path: Path
    answers: tuple[HostAnswer, ...]  # in host name order: the hosts polled this tick
    locks: frozenset[str]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(answer.host for answer in self.answers)

    def answer(self, host: str) -> HostAnswer | None:
        for answer in self.answers:
            if answer.host == host:
                return answer
        return None


class Fixture(NamedTuple):
    root: Path
    ticks: tuple[Tick, ...]  # in numeric order
    inventory_path: Path | None  # None when the fixture has no inventory.json

    @property
    def expected_path(self) -> Path:
        """Where ``expected.json`` is, or where ``--write-expected`` writes it."""
        return self.root / EXPECTED_FILE

    @property
    def has_expected(self) -> bool:
        return self.expected_path.is_file()

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host polled in some tick, in name order."""
        return tuple(sorted({host for tick in self.ticks for host in tick.hosts}))


def read_fixture(root: str | Path) -> Fixture:
    """The fixture at ``root``, fully checked; ``FixtureError`` naming the bad file."""
    root = Path(root)
    ticks_dir = root / TICKS_DIR
    if not ticks_dir.is_dir():
        raise FixtureError(f"{root}: not a fixture (no {TICKS_DIR}/ folder)")
    inventory = root / INVENTORY_FILE
    return Fixture(
        root=root,
        ticks=tuple(_read_tick(number, path) for number, path in _tick_folders(ticks_dir)),
        inventory_path=inventory if inventory.is_file() else None,
    )


def _tick_folders(ticks_dir: Path) -> list[tuple[int, Path]]:
    numbered: dict[int, Path] = {}
    for path in ticks_dir.iterdir():
        if path.name.startswith("."):
            continue  # .gitkeep and friends
        if not (path.is_dir() and TICK_NAME.fullmatch(path.name)):
            raise FixtureError(f"{path}: a tick must be a folder named by 4 or more digits")
        number = int(path.name)
        if number in numbered:
            raise FixtureError(f"{path}: tick {number} is also {numbered[number].name}")
        numbered[number] = path
    return sorted(numbered.items())


def _read_tick(number: int, path: Path) -> Tick:
    answers = []
    for file in sorted(path.glob("*.json")):
        if file.name == LOCKS_FILE:
            continue
        host = file.stem
        if not is_host_name(host):
            raise FixtureError(f"{file}: {host!r} is not a host name ([A-Za-z0-9._-]+)")
        answers.append(_read_answer(host, file, path / host))
    answers.sort(key=lambda answer: answer.host)
    return Tick(number, path, tuple(answers), _read_locks(path / LOCKS_FILE))


def _read_json(file: Path):
    return read_json(file, DEFAULT_LIMITS.max_json_bytes, FixtureError)


def _read_answer(host: str, file: Path, xml_dir: Path) -> HostAnswer:
    document = _read_json(file)
    if not isinstance(document, dict) or not ({"vms", "error"} & document.keys()):
        raise FixtureError(f"{file}: expected {{\"vms\": {{...}}}} or {{\"error\": ...}}")
    unknown = document.keys() - {"vms", "error"}
    if unknown:
        raise FixtureError(f"{file}: unknown keys {sorted(unknown)}")
    error = document.get("error")
    if error is not None and error not in HOST_ERRORS:
        raise FixtureError(f"{file}: unknown error {error!r} (one of {', '.join(HOST_ERRORS)})")
    if error in ("unreachable", "timeout") and "vms" in document:
        raise FixtureError(f"{file}: a host that is {error} reports no vms")
    reports = _read_reports(file, document.get("vms", {}))
    return HostAnswer(host, reports, error, xml_dir)


def _read_reports(file: Path, vms) -> dict[str, VmReport]:
    if not isinstance(vms, dict):
        raise FixtureError(f"{file}: \"vms\" must be an object of vm id -> report")
    reports = {}
    # A VM spelled two ways keeps both spellings, so the tick sees and refuses them
    # (docs/operations.md "Limits"), instead of one silently replacing the other.
    spelled_twice = {s for found in ids_in_several_spellings(vms).values() for s in found}
    for raw_id, entry in vms.items():
        vm_id = raw_id if raw_id in spelled_twice else normalize_uuid(raw_id)
        if vm_id is None:
            raise FixtureError(f"{file}: vm id {raw_id!r} is not a UUID")
        if not isinstance(entry, dict) or not isinstance(entry.get("status"), str):
            raise FixtureError(f"{file}: vm {raw_id}: expected {{\"status\": str, \"hash\": ...}}")
        hash_value = entry.get("hash")
        if hash_value is not None and not isinstance(hash_value, str):
            raise FixtureError(f"{file}: vm {raw_id}: hash must be a string or null")
        reports[vm_id] = report(entry["status"], hash_value)
    return reports


def _read_locks(file: Path) -> frozenset[str]:
    if not file.exists():  # a device or a FIFO named locks.json is read, and refused
        return frozenset()
    document = _read_json(file)
    if not isinstance(document, list):
        raise FixtureError(f"{file}: expected a JSON list of VM ids")
    locks = set()
    for raw_id in document:
        vm_id = normalize_uuid(raw_id) if isinstance(raw_id, str) else None
        if vm_id is None:
            raise FixtureError(f"{file}: vm id {raw_id!r} is not a UUID")
        locks.add(vm_id)
    return frozenset(locks)
