"""The engine against a real libvirt daemon with QEMU (TCG), through the command line as
an operator runs it: load, start, run, record (docs/operations.md, "The real-QEMU test").

The daemon, the guest and the device events come from the ``qemu_host`` fixture
(tests/qemu_host.py). Every step checks the DB against docs/matching.md and
docs/worker.md, and that a second tick writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import missing
from qemu_host import QemuUnavailable, wait_until
from qemu_operator import HOST, GuestVm, Operator, Summary, nic_xml


def rows_of(document: dict, vm_id: str) -> list[dict]:
    return [row for row in document["devices"] if row["vm_id"] == vm_id]


def vm_of(document: dict, vm_id: str) -> dict:
    return next(vm for vm in document["vms"] if vm["id"] == vm_id)


@pytest.fixture
def operator(tmp_path, qemu_host, capsys) -> Operator:
    return Operator(tmp_path, qemu_host, capsys)


def disk_xml(path: Path, target: str, serial: str | None = None) -> str:
    identity = f"<serial>{serial}</serial><alias name='ua-{serial}'/>" if serial else ""
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/>"
            f"<source file='{path}'/><target dev='{target}' bus='virtio'/>{identity}</disk>")


CHANNEL_XML = ("<channel type='unix'><source mode='bind'/>"
               "<target type='virtio' name='org.monitor.test.0'/></channel>")
DIMM_XML = ("<memory model='dimm'><target><size unit='MiB'>128</size><node>0</node>"
            "</target></memory>")
USB_REDIR_XML = ("<redirdev bus='usb' type='tcp'>"  # a USB device, redirected from loopback
                 "<source mode='bind' host='127.0.0.1' service='0'/></redirdev>")
PCI_ADDRESS = {"type", "domain", "bus", "slot", "function"}


class RowChanges(NamedTuple):
    inserted: list[dict]
    deleted: list[dict]
    updated: dict[str, dict[str, tuple]]  # device id -> field -> (before, after)


def row_changes(before: dict, after: dict) -> RowChanges:
    old = {row["device_id"]: row for row in before["devices"]}
    new = {row["device_id"]: row for row in after["devices"]}
    updated = {}
    for device_id in old.keys() & new.keys():
        fields = {key: (old[device_id][key], value)
                  for key, value in new[device_id].items() if old[device_id][key] != value}
        if fields:
            updated[device_id] = fields
    return RowChanges([new[i] for i in sorted(new.keys() - old.keys())],
                      [old[i] for i in sorted(old.keys() - new.keys())], updated)


class Scenario:
    """Steps on the live host, each followed by ticks; the DB's changes since the last."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.document = operator.export()

    def ticks(self, what: str, count: int = 2) -> tuple[list[Summary], RowChanges]:
        """``count`` ticks of one worker; the last writes nothing."""
        summaries = self.operator.tick(count)
        last = summaries[-1]
        assert (last["fetched"], last["rows"]) == (0, 0), f"{what}: the last tick wrote {last}"
        after = self.operator.export()
        changes = row_changes(self.document, after)
        self.document = after
        return summaries, changes

    def step(self, what: str) -> tuple[Summary, RowChanges]:
        summaries, changes = self.ticks(what)
        return summaries[0], changes


def only(changes: RowChanges, device_id: str) -> dict[str, tuple]:
    """The one row a step changed, and how; nothing inserted or deleted."""
    assert (changes.inserted, changes.deleted, list(changes.updated)) == ([], [], [device_id]), \
        changes
    return changes.updated[device_id]


def nothing(changes: RowChanges) -> None:
    assert changes == RowChanges([], [], {}), changes


def one_new_unmanaged(changes: RowChanges, type_: str, device: str) -> dict:
    assert (changes.deleted, changes.updated, len(changes.inserted)) == ([], {}, 1), changes
    row = changes.inserted[0]
    assert (row["type"], row["device"], row["is_managed"], row["is_plugged"]) == (
        type_, device, False, True)
    return row


def one_deleted(changes: RowChanges, row: dict) -> None:
    assert changes == RowChanges([], [row], {}), changes


def fleet(qemu_host, work: Path) -> tuple[GuestVm, GuestVm, dict[str, str]]:
    """A Q35 VM with a disk row and a NIC row not plugged yet, and an i440fx VM with a
    CD-ROM; the ids of those rows."""
    q35 = GuestVm(qemu_host, "q35", "q35")
    q35.vm["definition"].update(max_memory_mib=1024, memory_slots=4)  # room for a DIMM
    ids = {
        "disk": q35.add("disk", "disk", is_plugged=False,
                        spec_params={"path": str(work / "disk.img")}),
        "nic": q35.add("interface", "bridge", is_plugged=False,
                       spec_params={"mac_address": "52:54:00:00:0a:01"}),
    }
    pc = GuestVm(qemu_host, "pc", "pc")
    ids["cdrom"] = pc.add("disk", "cdrom", spec_params={"path": str(work / "one.iso")})
    for name in ("disk.img", "other.img", "one.iso", "two.iso"):
        with open(work / name, "wb") as image:
            image.truncate(1 << 20)
    return q35, pc, ids


def test_an_operator_runs_a_real_host(operator, qemu_host):
    """load, start, run; then every kind of hot-plug and unplug, change-media, a
    recording while the host changes, a destroy, and a libvirtd restart."""
    work = qemu_host.work
    q35, pc, ids = fleet(qemu_host, work)
    operator.load({"vms": [q35.vm, pc.vm], "devices": q35.rows + pc.rows})
    for guest in (q35, pc):
        operator.start(guest.id)
    for guest in (q35, pc):
        qemu_host.wait_console(guest.console)
    scenario = Scenario(operator)

    # Started: both Up, every managed row plugged with its user alias, libvirt's own
    # controllers new unmanaged rows (the Q35 one's 16 root ports among them, which the
    # builder added: room to hot-plug, docs/run-vm.md); the rows not started stay.
    started, changes = scenario.step("start")
    assert (started["applied"], started["conflicts"]) == (2, 0), started
    assert {vm["status"] for vm in scenario.document["vms"]} == {"Up"}
    assert not changes.deleted
    assert {row["type"] for row in changes.inserted} == {"controller"}
    root_ports = [row for row in changes.inserted
                  if row["spec_params"].get("model") == "pcie-root-port"]
    assert len(root_ports) == 16 and {row["vm_id"] for row in root_ports} == {q35.id}
    assert all(not row["is_managed"] and row["is_plugged"] for row in changes.inserted)
    for guest, row_id in ((q35, q35.console_id), (pc, pc.console_id), (pc, ids["cdrom"])):
        assert changes.updated[row_id]["alias"] == ("", f"ua-{row_id}")
    assert set(changes.updated[ids["cdrom"]]) == {"alias", "address"}
    assert ids["disk"] not in changes.updated and ids["nic"] not in changes.updated

    # A disk with a row, hot-plugged with its user alias, then unplugged (PCIe: the
    # guest answers): plugged with libvirt's address, then unplugged, alias kept.
    disk = ids["disk"]
    qemu_host.attach(q35.id, disk_xml(work / "disk.img", "vdb", serial=disk))
    plugged, changes = scenario.step("disk with a row plugged")
    assert plugged["matched"]["user-alias"] >= 1
    fields = only(changes, disk)
    assert fields["is_plugged"] == (False, True) and fields["alias"] == ("", f"ua-{disk}")
    assert set(fields["address"][1]) == PCI_ADDRESS
    qemu_host.detach(q35.id, f"ua-{disk}")
    _, changes = scenario.step("disk with a row unplugged")
    assert only(changes, disk) == {"is_plugged": (True, False),
                                   "address": (fields["address"][1], {})}

    # A disk with no row, on i440fx (ACPI hot-plug): foreign while it is there.
    qemu_host.attach(pc.id, disk_xml(work / "other.img", "vdb"))
    with_disk, changes = scenario.step("disk without a row plugged")
    nothing(changes)
    qemu_host.detach(pc.id, "virtio-disk1")
    without_disk, changes = scenario.step("disk without a row unplugged")
    nothing(changes)
    assert with_disk["foreign"] == without_disk["foreign"] + 1
    assert with_disk["applied"] == without_disk["applied"] == 1

    # A NIC with a row, by MAC; unplugged it forgets libvirt's alias, which libvirt
    # then hands to an unrelated NIC: that one is foreign, the row stays unplugged.
    nic = ids["nic"]
    qemu_host.attach(q35.id, nic_xml(qemu_host, "52:54:00:00:0a:01"))
    plugged, changes = scenario.step("NIC with a row plugged")
    assert plugged["matched"]["mac"] == 1
    fields = only(changes, nic)
    assert fields["is_plugged"] == (False, True) and fields["alias"] == ("", "net0")
    qemu_host.detach(q35.id, "net0")
    _, changes = scenario.step("NIC with a row unplugged")
    assert only(changes, nic) == {"is_plugged": (True, False), "alias": ("net0", ""),
                                  "address": (fields["address"][1], {})}
    qemu_host.attach(q35.id, nic_xml(qemu_host, "52:54:00:00:0a:02"))
    other, changes = scenario.step("another NIC given the same alias")
    nothing(changes)
    assert "mac" not in other["matched"]
    qemu_host.detach(q35.id, "net0")
    gone, changes = scenario.step("the other NIC unplugged")
    nothing(changes)
    assert other["foreign"] == gone["foreign"] + 1

    # A channel, a DIMM and a USB device with no row: new unmanaged rows while there.
    for vm_id, xml, type_, device, alias in (
            (q35.id, CHANNEL_XML, "channel", "unix", "channel0"),
            (q35.id, DIMM_XML, "memory", "memory", "dimm0"),
            (pc.id, USB_REDIR_XML, "redir", "tcp", "redir0")):
        qemu_host.attach(vm_id, xml)
        _, changes = scenario.step(f"{type_} plugged")
        row = one_new_unmanaged(changes, type_, device)
        assert row["alias"] == alias and row["vm_id"] == vm_id
        qemu_host.detach(vm_id, alias)
        _, changes = scenario.step(f"{type_} unplugged")
        one_deleted(changes, row)

    # change-media: a new hash, the same rows.
    qemu_host.change_media(pc.id, f"ua-{ids['cdrom']}", work / "two.iso")
    changed, changes = scenario.step("change-media")
    assert (changed["applied"], changed["rows"]) == (1, 0)
    nothing(changes)


    # monitor record while the host changes: replayed into a fresh DB, the recording
    # gives what the live DB holds once the worker ticked, every field but hash_time.
    recording = record_while_changing(operator, qemu_host, [
        lambda: (qemu_host.attach(q35.id, disk_xml(work / "disk.img", "vdb", serial=disk)),
                 qemu_host.attach(q35.id, CHANNEL_XML),
                 qemu_host.attach(q35.id, nic_xml(qemu_host, "52:54:00:00:0a:01"))),
        lambda: (qemu_host.detach(q35.id, "channel0"), qemu_host.detach(q35.id, "net0"),
                 qemu_host.change_media(pc.id, f"ua-{ids['cdrom']}", work / "one.iso")),
        lambda: (qemu_host.attach(q35.id, nic_xml(qemu_host, "52:54:00:00:0a:02")),
                 qemu_host.attach(q35.id, DIMM_XML), qemu_host.attach(pc.id, USB_REDIR_XML)),
        lambda: (qemu_host.detach(q35.id, "net0"), qemu_host.detach(q35.id, "dimm0")),
    ])
    _, changes = scenario.step("after the recording")
    assert set(changes.updated) == {disk} and not changes.deleted
    assert set(changes.updated[disk]) == {"is_plugged", "address"}
    assert [(row["vm_id"], row["type"]) for row in changes.inserted] == [(pc.id, "redir")]
    replayed = f"sqlite:///{operator.tmp_path / 'replayed.db'}"
    operator("replay", str(recording), "--db", replayed)
    known = [arg for vm in scenario.document["vms"] for arg in ("--vm", vm["id"])]
    # (a daemon shared with another test run also serves that run's VMs: not ours)
    replayed_document = json.loads(operator("export", "--db", replayed, *known))
    nothing(row_changes(replayed_document, scenario.document))
    assert without_hash_time(replayed_document) == without_hash_time(scenario.document)
    keep = os.environ.get("MONITOR_QEMU_RECORDING")
    if keep:  # how fixtures/qemu-hotplug was made (docs/operations.md)
        shutil.copytree(recording, keep)

    # A destroyed VM (transient: gone from the host) is Down after two polls without it.
    qemu_host.domain(pc.id).destroy()
    summaries, changes = scenario.ticks("destroyed", count=3)
    assert [summary["vanished"] for summary in summaries] == [0, 1, 0]
    nothing(changes)
    statuses = {vm["id"]: vm["status"] for vm in scenario.document["vms"]}
    assert statuses == {q35.id: "Up", pc.id: "Down"}

    # A libvirtd restart: QEMU's processes go on, the daemon reports them again. Last,
    # as only a daemon no other test run shares can be restarted (always so in CI).
    try:
        qemu_host.restart_daemon()
    except QemuUnavailable as error:
        missing(f"restarting libvirtd: {error}", "MONITOR_REQUIRE_QEMU")
    _, changes = scenario.step("libvirtd restarted")
    nothing(changes)
    assert {vm["id"]: vm["status"] for vm in scenario.document["vms"]} == statuses


def without_hash_time(document: dict) -> dict:
    return {**document, "vms": [{k: v for k, v in vm.items() if k != "hash_time"}
                                for vm in document["vms"]]}


def record_while_changing(operator: Operator, qemu_host, changes: list) -> Path:
    """``monitor record`` for one tick more than ``changes``; change n runs once tick n
    is written (the recorder's poll and dump are done), well before tick n+1."""
    out = operator.tmp_path / "recording"
    ticks = len(changes) + 1
    recorder = subprocess.Popen(
        [sys.executable, "-m", "monitor", "record", "--host", qemu_host.uri,
         "--host-name", HOST, "--out", str(out), "--ticks", str(ticks), "--interval", "4",
         "--db", operator.db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for number, change in enumerate(changes, start=1):
            written = out / "ticks" / f"{number:04d}" / f"{HOST}.json"
            wait_until(60, f"tick {number} of the recording",
                       lambda: written.exists() or recorder.poll() is not None)
            change()
        stdout, stderr = recorder.communicate(timeout=120)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    assert recorder.returncode == 0, stderr
    assert f"recorded {ticks} ticks of {HOST}" in stdout
    return out


