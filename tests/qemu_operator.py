"""The ``monitor`` command line as an operator runs it against the real-QEMU host, and
the guests and NICs the real-QEMU tests use (docs/operations.md, "The real-QEMU test").
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from monitor.cli import main

HOST = "qemu-local"
SUMMARY = re.compile(r"^host=\S+ .*time=\d+ms$", re.MULTILINE)
COUNT = re.compile(r"([\w-]+)=(\d+)")
BRACKETS = re.compile(r"(\w+)\[([^\]]*)\]")


class Summary(dict):
    """One tick's summary line (docs/worker.md) as numbers: ``rows``, ``new``, ...,
    and ``matched``/``skipped``/``errors`` as {name: count}."""

    @classmethod
    def parse(cls, line: str) -> "Summary":
        summary = cls()
        for name, counts in BRACKETS.findall(line):
            summary[name] = {key: int(value) for key, value in COUNT.findall(counts)}
        summary.update((key, int(value)) for key, value in COUNT.findall(BRACKETS.sub("", line)))
        return summary


class Operator:
    """The ``monitor`` command line on one SQLite DB and one config naming the host."""

    def __init__(self, tmp_path: Path, qemu_host, capsys) -> None:
        self.host = qemu_host
        self.db = f"sqlite:///{tmp_path / 'monitor.db'}"
        self.config = tmp_path / "monitor.toml"
        self.config.write_text(f'db = "{self.db}"\n\n[[hosts]]\nname = "{HOST}"\n'
                               f'uri = "{qemu_host.uri}"\n')
        self.tmp_path = tmp_path
        self._capsys = capsys

    def __call__(self, *argv: str) -> str:
        self._capsys.readouterr()
        code = main(list(argv))
        captured = self._capsys.readouterr()
        assert code == 0, f"monitor {' '.join(argv)}: exit {code}: {captured.err}"
        return captured.out

    def load(self, document: dict) -> None:
        path = self.tmp_path / f"load-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(document))
        self("load", str(path), "--db", self.db)

    def start(self, vm_id: str) -> None:
        """The host's name comes from the config's [[hosts]] with this URI."""
        out = self("start", vm_id, "--host", self.host.uri, "--config", str(self.config))
        assert f"on {HOST} " in out, out

    def tick(self, count: int = 1) -> list[Summary]:
        """``monitor run --ticks COUNT``: one worker, its summary per tick."""
        out = self("run", "--config", str(self.config), "--ticks", str(count),
                   "--interval", "0.5")
        lines = SUMMARY.findall(out)
        assert len(lines) == count, out
        return [Summary.parse(line) for line in lines]

    def export(self) -> dict:
        return json.loads(self("export", "--db", self.db))


class GuestVm:
    """A VM of the inventory document: a direct-boot guest with a virtio console."""

    def __init__(self, qemu_host, name: str, machine: str) -> None:
        self.id = str(uuid.uuid4())
        self.console = qemu_host.work / f"{self.id}.console"
        self.machine = machine
        self.vm = {"id": self.id, "name": qemu_host.vm_name(name), "definition": {
            "domain_type": "qemu", "machine": machine, "memory_mib": 192,
            **qemu_host.guest.definition()}}
        self.rows: list[dict] = []
        self.console_id = self.add("console", "console", spec_params={
            "path": str(self.console), "target_type": "virtio"})

    def add(self, type_: str, device: str, **fields) -> str:
        device_id = fields.pop("device_id", None) or str(uuid.uuid4())
        self.rows.append({"device_id": device_id, "vm_id": self.id, "type": type_,
                          "device": device, **fields})
        return device_id

    def document(self) -> dict:
        return {"vms": [self.vm], "devices": self.rows}


def nic_xml(qemu_host, mac: str) -> str:
    return (f"<interface {qemu_host.nic_source()}><mac address='{mac}'/>"
            "<model type='virtio'/></interface>")
