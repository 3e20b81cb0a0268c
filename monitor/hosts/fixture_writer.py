"""Writing a recorded fixture directory, in the format ``fixture.py`` reads.

The recorder and ``replay --write-expected`` write through this, so a recording is
always readable by the replayer. JSON is written for people who diff it: sorted keys,
indent 2, a trailing newline. Domain XML is written verbatim, byte for byte, since a
stored hash names exactly those bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from monitor.errors import FixtureError
from monitor.hosts.fixture import (
    EXPECTED_FILE,
    HOST_ERRORS,
    INVENTORY_FILE,
    LOCKS_FILE,
    TICKS_DIR,
)
from monitor.hosts.source import VmReport, is_host_name
from monitor.model.ids import normalize_uuid


def write_json(path: Path, document) -> None:
    """The fixture's JSON form: sorted keys, indent 2, a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"
    path.write_text(text, encoding="utf-8")


class FixtureWriter:
    """Writes one fixture directory.

    The locks of a tick are the union of what every ``write_tick`` of that tick
    passed, so a recorder may hand them over host by host.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir)
        self._locks: dict[int, set[str]] = {}

    def tick_dir(self, number: int) -> Path:
        if number < 0:
            raise FixtureError(f"tick number {number} is negative")
        return self.root / TICKS_DIR / f"{number:04d}"

    def write_inventory(self, document: Mapping) -> Path:
        return self._write(self.root / INVENTORY_FILE, document)

    def write_expected(self, document: Mapping) -> Path:
        return self._write(self.root / EXPECTED_FILE, document)

    def write_tick(
        self,
        number: int,
        host: str,
        reports: Mapping[str, VmReport] | str,
        xmls: Mapping[str, bytes] | None = None,
        locks: Iterable[str] | None = None,
        *,
        error: str | None = None,
    ) -> Path:
        """Write ``<host>.json`` (and its XML) for one host in tick ``number``.

        ``reports`` is the poll's answer, or an error kind (``"unreachable"``,
        ``"timeout"``, ``"refused"``) alone. ``error="refused"`` beside reports
        records a host that answered the poll and refused the batch.
        """
        if not is_host_name(host) or host == LOCKS_FILE.removesuffix(".json"):
            raise FixtureError(f"{host!r} cannot be a host name in a fixture")
        if isinstance(reports, str):
            reports, error = None, reports
        document = self._host_document(reports, error)
        tick_dir = self.tick_dir(number)
        path = self._write(tick_dir / f"{host}.json", document)
        for vm_id, xml in sorted((xmls or {}).items()):
            xml_path = tick_dir / host / f"{_vm_id(vm_id)}.xml"
            xml_path.parent.mkdir(parents=True, exist_ok=True)
            xml_path.write_bytes(xml)
        if locks is not None:
            held = self._locks.setdefault(number, set())
            held.update(_vm_id(vm_id) for vm_id in locks)
            self._write(tick_dir / LOCKS_FILE, sorted(held))
        return path

    @staticmethod
    def _host_document(reports: Mapping[str, VmReport] | None, error: str | None) -> dict:
        if error is not None and error not in HOST_ERRORS:
            raise FixtureError(f"unknown host error {error!r} (one of {', '.join(HOST_ERRORS)})")
        if reports is None and error is None:
            raise FixtureError("a host answer needs reports or an error")
        if reports is not None and error in ("unreachable", "timeout"):
            raise FixtureError(f"a host that is {error} reports no vms")
        document: dict = {}
        if error is not None:
            document["error"] = error
        if reports is not None:
            document["vms"] = {
                _vm_id(vm_id): {"status": entry.status, "hash": entry.hash}
                for vm_id, entry in reports.items()
            }
        return document

    def _write(self, path: Path, document) -> Path:
        write_json(path, document)
        return path


def _vm_id(text: str) -> str:
    vm_id = normalize_uuid(text)
    if vm_id is None:
        raise FixtureError(f"vm id {text!r} is not a UUID")
    return vm_id
