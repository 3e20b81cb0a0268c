"""The engine against a real libvirt daemon with QEMU (TCG), through the command line as
an operator runs it: load, start, run, record (docs/operations.md, "The real-QEMU test").

The daemon, the guest and the device events come from the ``qemu_host`` fixture
(tests/qemu_host.py). Every step checks the DB against docs/matching.md and
docs/worker.md, and that a second tick writes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

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
        self("start", vm_id, "--host", self.host.uri, "--host-name", HOST, "--db", self.db)

    def tick(self) -> Summary:
        out = self("run", "--config", str(self.config), "--ticks", "1", "--interval", "0.2")
        lines = SUMMARY.findall(out)
        assert len(lines) == 1, out
        return Summary.parse(lines[0])

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


def rows_of(document: dict, vm_id: str) -> list[dict]:
    return [row for row in document["devices"] if row["vm_id"] == vm_id]


def vm_of(document: dict, vm_id: str) -> dict:
    return next(vm for vm in document["vms"] if vm["id"] == vm_id)


@pytest.fixture
def operator(tmp_path, qemu_host, capsys) -> Operator:
    return Operator(tmp_path, qemu_host, capsys)


def nic_xml(qemu_host, mac: str) -> str:
    return (f"<interface {qemu_host.nic_source()}><mac address='{mac}'/>"
            "<model type='virtio'/></interface>")


def test_a_started_vm_is_reconciled_and_its_hot_plugged_nic_comes_and_goes(operator,
                                                                           qemu_host):
    guest = GuestVm(qemu_host, "first", "q35")
    for index in range(1, 5):  # room to hot-plug on Q35
        guest.add("controller", "pci", is_managed=False,
                  spec_params={"index": index, "model": "pcie-root-port"})
    operator.load(guest.document())
    operator.start(guest.id)
    qemu_host.wait_console(guest.console)

    first = operator.tick()
    assert (first["applied"], first["conflicts"]) == (1, 0)
    assert first["matched"]["user-alias"] == 1  # the console, by its ua- alias
    assert first["matched"]["controller-index"] == 4  # the root ports we wrote
    document = operator.export()
    assert vm_of(document, guest.id)["status"] == "Up"
    rows = rows_of(document, guest.id)
    console = next(row for row in rows if row["device_id"] == guest.console_id)
    assert console["alias"] == f"ua-{guest.console_id}" and console["is_plugged"]
    added = sorted(row["device"] for row in rows if not row["is_managed"])
    assert {"pci", "usb", "virtio-serial"} <= set(added)  # libvirt's own, now rows
    assert first["new"] == len(rows) - 5

    again = operator.tick()
    assert (again["fetched"], again["rows"]) == (0, 0)

    qemu_host.attach(guest.id, nic_xml(qemu_host, "52:54:00:00:10:01"))
    plugged = operator.tick()
    assert (plugged["applied"], plugged["foreign"], plugged["rows"]) == (1, first["foreign"] + 1, 0)
    assert rows_of(operator.export(), guest.id) == rows  # a NIC with no row is foreign

    qemu_host.detach(guest.id, "net0")
    gone = operator.tick()
    assert (gone["applied"], gone["foreign"], gone["rows"]) == (1, first["foreign"], 0)
