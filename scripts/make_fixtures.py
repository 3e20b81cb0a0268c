#!/usr/bin/env python3
"""Generate the scenario fixtures under fixtures/ (and the demo recording).

Each scenario is a VM inventory and a few ticks. The XML of each tick is what
run-VM would send (``monitor.domxml.builder``) made live as libvirt would return it
(``monitor.domxml.simulate``: libvirt aliases for the devices without a user alias,
addresses); the hash is the devices digest of that XML. expected.json is written
afterwards by ``monitor replay DIR --write-expected`` and reviewed by hand.

    python3 scripts/make_fixtures.py            # rewrite fixtures/ (not expected.json)
    python3 scripts/make_fixtures.py NAME ...   # only these scenarios
"""

from __future__ import annotations

import shutil
import sys
import uuid
from dataclasses import replace
from pathlib import Path

from monitor.domxml import devices_digest
from monitor.domxml.builder import build_domain_xml
from monitor.domxml.simulate import make_live
from monitor.hosts.fixture_writer import FixtureWriter
from monitor.hosts.source import VmReport
from monitor.model.rows import DeviceRow, VmRecord
from monitor.store.inventory import build_document

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = uuid.UUID("6f1c0b8e-2d7a-4c55-9a0e-4b1f3c2d5e6a")


def uid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def vm_record(name: str, host: str = "host-a", status: str = "Up") -> VmRecord:
    return VmRecord(id=uid("vm", name), name=name, host=host, status=status,
                    definition={"memory_mib": 2048, "vcpus": 2, "machine": "q35"})


def row(vm: VmRecord, key: str, type_: str, device: str, managed: bool = True,
        plugged: bool = True, **spec) -> DeviceRow:
    return DeviceRow(device_id=uid(vm.name, key), vm_id=vm.id, type=type_, device=device,
                     spec_params=dict(spec), is_managed=managed, is_plugged=plugged,
                     is_readonly=device == "cdrom")


def managed_rows(vm: VmRecord) -> list[DeviceRow]:
    """What the manager knows of a Q35 VM before it runs: its managed devices."""
    return [
        row(vm, "disk0", "disk", "disk", bus="virtio", boot_order=1),
        row(vm, "cdrom", "disk", "cdrom"),
        row(vm, "nic0", "interface", "bridge", mac_address="00:1A:4A:16:01:" + vm.id[-2:]),
        row(vm, "usb", "controller", "usb", index=0, model="qemu-xhci"),
        row(vm, "video", "video", "qxl"),
        row(vm, "graphics", "graphics", "spice"),
        row(vm, "balloon", "balloon", "memballoon"),
        row(vm, "rng", "rng", "virtio"),
    ]


def libvirt_added(vm: VmRecord, ports: int = 4) -> list[DeviceRow]:
    """Devices libvirt (and the host agent) add on start; the manager has no row for them."""
    added = [row(vm, "pcie-root", "controller", "pci", False, index=0, model="pcie-root")]
    added += [row(vm, f"port{i}", "controller", "pci", False, index=i, model="pcie-root-port")
              for i in range(1, ports + 1)]
    added += [
        row(vm, "sata0", "controller", "sata", False, index=0),
        row(vm, "vserial0", "controller", "virtio-serial", False, index=0),
        row(vm, "ga-channel", "channel", "unix", False, target_name="org.qemu.guest_agent.0"),
        row(vm, "spice-channel", "channel", "spicevmc", False, target_name="com.redhat.spice.0"),
    ]
    return added


def live_xml(vm: VmRecord, rows: list[DeviceRow], *, layout: int = 0,
             domain_id: int = 1) -> bytes:
    plugged = [replace(r, is_plugged=True, address={}) for r in rows]
    return make_live(build_domain_xml(vm, plugged), domain_id=domain_id, layout=layout,
                     reassign=True)


def without_user_aliases(rows: list[DeviceRow]) -> list[DeviceRow]:
    """A VM started before user aliases: rendered as unmanaged, libvirt names them."""
    return [replace(r, is_managed=False) for r in rows]


class Scenario:
    def __init__(self, name: str, *, root: Path | None = None) -> None:
        self.root = root or REPO / "fixtures" / name
        if self.root.exists():
            for child in self.root.iterdir():
                if child.name != "expected.json":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.writer = FixtureWriter(self.root)
        self.tick = 0

    def inventory(self, vms: list[VmRecord], rows: list[DeviceRow]) -> None:
        by_vm: dict[str, list[DeviceRow]] = {}
        for r in rows:
            by_vm.setdefault(r.vm_id, []).append(r)
        self.writer.write_inventory(build_document(vms, by_vm))

    def next_tick(self) -> int:
        self.tick += 1
        return self.tick

    def host(self, host: str, reports: dict[str, tuple[str, bytes | str | None]],
             *, locks=None, dump_omits=()) -> None:
        """Reports {vm_id: (status, xml or a literal hash or None)}; XML is dumped."""
        polled: dict[str, VmReport] = {}
        xmls: dict[str, bytes] = {}
        for vm_id, (status, xml) in reports.items():
            if isinstance(xml, bytes):
                polled[vm_id] = VmReport(status, devices_digest(xml) if _well_formed(xml)
                                         else "sha256-of-broken-" + vm_id[:8])
                if vm_id not in dump_omits:
                    xmls[vm_id] = xml
            else:
                polled[vm_id] = VmReport(status, xml)
        self.writer.write_tick(self.tick, host, polled, xmls, locks)

    def host_error(self, host: str, kind: str) -> None:
        self.writer.write_tick(self.tick, host, kind)


def _well_formed(xml: bytes) -> bool:
    return not xml.endswith(b"<!-- truncated -->")


def truncated(xml: bytes) -> bytes:
    return xml[: len(xml) // 2] + b"<!-- truncated -->"


# --- the scenarios -----------------------------------------------------------------


def vm_start() -> None:
    """VM start: every managed device by user alias; libvirt's controllers and channels
    become unmanaged rows; the second tick (same hash) writes nothing."""
    s = Scenario("vm-start")
    vm = vm_record("start", status="Powering up")
    rows = managed_rows(vm)
    s.inventory([vm], rows)
    xml = live_xml(vm, rows + libvirt_added(vm))
    s.next_tick(); s.host("host-a", {vm.id: ("Up", xml)})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", xml)})


def disk_hotplug() -> None:
    """A second disk, unplugged in the DB, is hot-plugged: it comes back by its user
    alias with an address; nothing else changes."""
    s = Scenario("disk-hotplug")
    vm = vm_record("hotplug")
    rows = managed_rows(vm)
    disk1 = row(vm, "disk1", "disk", "disk", plugged=False, bus="virtio")
    s.inventory([vm], rows + [disk1])
    base = rows + libvirt_added(vm)
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, base))})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, base + [disk1]))})


def hotplug_lock() -> None:
    """A hot-plug holds the VM's devices lock during tick 2: the tick skips the VM and
    keeps its hash; tick 3 (same report) applies it."""
    s = Scenario("hotplug-lock")
    vm = vm_record("locked")
    rows = managed_rows(vm)
    disk1 = row(vm, "disk1", "disk", "disk", plugged=False, bus="virtio")
    s.inventory([vm], rows + [disk1])
    base = rows + libvirt_added(vm)
    after = live_xml(vm, base + [disk1])
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, base))})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", after)}, locks=[vm.id])
    s.next_tick(); s.host("host-a", {vm.id: ("Up", after)})


def nic_unplug_replug() -> None:
    """The managed NIC is hot-unplugged (row unplugged, address cleared, alias kept),
    then plugged again: the same row comes back, no duplicate."""
    s = Scenario("nic-unplug-replug")
    vm = vm_record("nic")
    rows = managed_rows(vm)
    s.inventory([vm], rows)
    base = libvirt_added(vm)
    without_nic = [r for r in rows if r.type != "interface"]
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, rows + base))})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, without_nic + base))})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, rows + base, layout=1))})


def dimm_hotplug() -> None:
    """Memory hot-plug: a managed DIMM (user alias) and one the manager has no row for
    (unmanaged, derived id); then both are unplugged (managed: unplugged; unmanaged:
    deleted)."""
    s = Scenario("dimm-hotplug")
    vm = replace(vm_record("dimm"), definition={"memory_mib": 2048, "vcpus": 2,
                                                "machine": "q35", "max_memory_mib": 8192})
    rows = managed_rows(vm)
    dimm = row(vm, "dimm0", "memory", "memory", plugged=False, node=0, size=1024)
    foreign_dimm = row(vm, "dimm-unmanaged", "memory", "memory", False, node=0, size=512)
    s.inventory([vm], rows + [dimm])
    base = rows + libvirt_added(vm)
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, base))})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, base + [dimm, foreign_dimm]))})
    s.next_tick(); s.host("host-a", {vm.id: ("Up", live_xml(vm, base, layout=1))})


def pre_user_aliases() -> None:
    """A VM started before user aliases: its rows hold libvirt's names (virtio-disk0,
    net0, video0, balloon0, usb, ...) and every device keeps its row by stored alias."""
    s = Scenario("pre-user-aliases")
    vm = vm_record("legacy")
    rows = managed_rows(vm)
    stored = {"disk0": "virtio-disk0", "cdrom": "sata0-0-0", "nic0": "net0", "usb": "usb",
              "video": "video0", "balloon": "balloon0", "rng": "rng0"}
    named = [replace(r, alias=stored.get(_key(vm, r), "")) for r in rows]
    s.inventory([vm], named)
    xml = live_xml(vm, without_user_aliases(rows) + libvirt_added(vm))
    s.next_tick(); s.host("host-a", {vm.id: ("Up", xml)})


def _key(vm: VmRecord, r: DeviceRow) -> str:
    for key in ("disk0", "cdrom", "nic0", "usb", "video", "graphics", "balloon", "rng"):
        if uid(vm.name, key) == r.device_id:
            return key
    return ""


def migration() -> None:
    """Live migration from host-a to host-b: Migration Source / Migration Destination,
    then Up on host-b with new addresses; the VM's host changes, its XML is applied;
    host-a's late report is ignored."""
    s = Scenario("migration")
    vm = vm_record("migrating")
    rows = managed_rows(vm) + libvirt_added(vm)
    s.inventory([vm], managed_rows(vm))
    before = live_xml(vm, rows)
    after = live_xml(vm, rows, layout=1, domain_id=7)
    s.next_tick(); s.host("host-a", {vm.id: ("Up", before)})
    s.next_tick()
    s.host("host-a", {vm.id: ("Migration Source", before)})
    s.host("host-b", {vm.id: ("Migration Destination", None)})
    s.next_tick()
    s.host("host-a", {})
    s.host("host-b", {vm.id: ("Up", after)})
    s.next_tick()
    s.host("host-a", {vm.id: ("Down", before)})


def agent_restart() -> None:
    """The host agent restarts: every hash changes, the XML is the same. No device row is
    written; the hashes advance."""
    s = Scenario("agent-restart")
    vms = [vm_record(f"restart{i}") for i in range(3)]
    inventory_rows = [r for vm in vms for r in managed_rows(vm)]
    s.inventory(vms, inventory_rows)
    xmls = {vm.id: live_xml(vm, managed_rows(vm) + libvirt_added(vm)) for vm in vms}
    s.next_tick(); s.host("host-a", {vm.id: ("Up", xmls[vm.id]) for vm in vms})
    s.next_tick()
    polled = {vm.id: VmReport("Up", "agent-restart-" + devices_digest(xmls[vm.id])[:16])
              for vm in vms}
    s.writer.write_tick(s.tick, "host-a", polled, xmls)


def malformed_xml() -> None:
    """One malformed XML and one XML of another VM among good ones: those two get
    last_error_hash/last_error (never hash) and are not fetched again while their hash
    stays; the good ones apply. Tick 3 brings a good XML for the broken VM."""
    s = Scenario("malformed-xml")
    good, broken, wrong = (vm_record(n) for n in ("good", "broken", "wrong-uuid"))
    vms = [good, broken, wrong]
    s.inventory(vms, [r for vm in vms for r in managed_rows(vm)])
    xml = {vm.id: live_xml(vm, managed_rows(vm) + libvirt_added(vm)) for vm in vms}
    bad = truncated(xml[broken.id])
    s.next_tick()
    s.host("host-a", {good.id: ("Up", xml[good.id]), broken.id: ("Up", bad),
                      wrong.id: ("Up", "hash-of-a-stray-document")})
    (s.root / "ticks/0001/host-a").mkdir(parents=True, exist_ok=True)
    (s.root / "ticks/0001/host-a" / f"{wrong.id}.xml").write_bytes(xml[good.id])
    s.next_tick()
    s.host("host-a", {good.id: ("Up", xml[good.id]), broken.id: ("Up", bad),
                      wrong.id: ("Up", "hash-of-a-stray-document")})
    s.next_tick()
    s.host("host-a", {good.id: ("Up", xml[good.id]), broken.id: ("Up", xml[broken.id]),
                      wrong.id: ("Up", xml[wrong.id])})


def host_timeout() -> None:
    """host-a times out in tick 1 and refuses the dump in tick 2; host-b is not delayed.
    host-a's VM is applied in tick 3. A VM left out of a dump is retried next tick."""
    s = Scenario("host-timeout")
    a, b, c = vm_record("on-a"), vm_record("on-b", host="host-b"), vm_record("on-b2", host="host-b")
    vms = [a, b, c]
    s.inventory(vms, [r for vm in vms for r in managed_rows(vm)])
    xml = {vm.id: live_xml(vm, managed_rows(vm) + libvirt_added(vm)) for vm in vms}
    s.next_tick()
    s.host_error("host-a", "timeout")
    s.host("host-b", {b.id: ("Up", xml[b.id]), c.id: ("Up", xml[c.id])}, dump_omits={c.id})
    s.next_tick()
    s.host("host-a", {a.id: ("Up", xml[a.id])})
    _refuse(s, "host-a")
    s.host("host-b", {b.id: ("Up", xml[b.id]), c.id: ("Up", xml[c.id])})
    s.next_tick()
    s.host("host-a", {a.id: ("Up", xml[a.id])})


def vm_vanished() -> None:
    """VMs their host stops reporting (a transient VM destroyed there). ``gone`` is Down
    after two successful polls of host-a without it (ticks 2 and 5): host-a's failed
    poll (tick 3) and a tick that does not poll host-a (tick 4) neither count nor reset.
    ``flaky`` misses one poll, is reported again, misses one more: still Up. ``source``
    (Migration Source) is left to the hand-over and ``launching`` (WaitForLaunch, never
    reported) stays as it is. ``restarted``, stored Down on host-a, is reported Up by
    host-b in tick 4: it moves there and its XML is applied."""
    s = Scenario("vm-vanished")
    gone, stays, flaky = vm_record("gone"), vm_record("stays"), vm_record("flaky")
    source = vm_record("source", status="Migration Source")
    launching = vm_record("launching", status="WaitForLaunch")
    restarted = vm_record("restarted", status="Down")
    vms = [gone, stays, flaky, source, launching, restarted]
    s.inventory(vms, [r for vm in vms for r in managed_rows(vm)])
    xml = {vm.id: live_xml(vm, managed_rows(vm) + libvirt_added(vm)) for vm in vms}

    def on_a(*running: VmRecord) -> dict:
        return {vm.id: ("Up", xml[vm.id]) for vm in running}

    s.next_tick(); s.host("host-a", on_a(gone, stays, flaky)); s.host("host-b", {})
    s.next_tick(); s.host("host-a", on_a(stays)); s.host("host-b", {})
    s.next_tick(); s.host_error("host-a", "timeout"); s.host("host-b", {})
    s.next_tick(); s.host("host-b", {restarted.id: ("Up", xml[restarted.id])})
    s.next_tick(); s.host("host-a", on_a(stays, flaky)); s.host("host-b", {})
    s.next_tick(); s.host("host-a", on_a(stays))
    s.host("host-b", {restarted.id: ("Up", xml[restarted.id])})


def _refuse(s: Scenario, host: str) -> None:
    """Rewrite this tick's answer of ``host`` as 'answered the poll, refused the dump'."""
    path = s.writer.tick_dir(s.tick) / f"{host}.json"
    import json
    document = json.loads(path.read_text())
    document["error"] = "refused"
    path.write_text(json.dumps(document, sort_keys=True, indent=2) + "\n")
    shutil.rmtree(s.writer.tick_dir(s.tick) / host, ignore_errors=True)


def demo() -> None:
    """The recording `monitor run` plays with no configuration, in a loop: two hosts;
    a VM start; a NIC unplugged and plugged again; a disk hot-plugged and unplugged;
    a VM migrating from host-a to host-b and back."""
    s = Scenario("demo", root=REPO / "monitor" / "demo" / "recording")
    web, db, mover = vm_record("web"), vm_record("db", host="host-b"), vm_record("mover")
    vms = [web, db, mover]
    disk1 = row(db, "disk1", "disk", "disk", plugged=False, bus="virtio")
    s.inventory(vms, [r for vm in vms for r in managed_rows(vm)] + [disk1])
    full = {vm.id: managed_rows(vm) + libvirt_added(vm) for vm in vms}
    web_xml = live_xml(web, full[web.id])
    web_no_nic = live_xml(web, [r for r in full[web.id] if r.type != "interface"])
    db_xml = live_xml(db, full[db.id])
    db_plugged = live_xml(db, full[db.id] + [disk1])
    mover_a = live_xml(mover, full[mover.id])
    mover_b = live_xml(mover, full[mover.id], layout=1, domain_id=9)
    plays = [
        ({web.id: ("Up", web_xml), mover.id: ("Up", mover_a)},
         {db.id: ("Up", db_xml)}),
        ({web.id: ("Up", web_no_nic), mover.id: ("Migration Source", mover_a)},
         {db.id: ("Up", db_plugged), mover.id: ("Migration Destination", None)}),
        ({web.id: ("Up", web_xml)},
         {db.id: ("Up", db_plugged), mover.id: ("Up", mover_b)}),
        ({web.id: ("Up", web_xml), mover.id: ("Migration Destination", None)},
         {db.id: ("Up", db_xml), mover.id: ("Migration Source", mover_b)}),
        ({web.id: ("Up", web_xml), mover.id: ("Up", mover_a)},
         {db.id: ("Up", db_xml)}),
    ]
    for on_a, on_b in plays:
        s.next_tick()
        s.host("host-a", on_a)
        s.host("host-b", on_b)


def many_vms(root: Path, count: int = 30, versions: int = 1) -> list[VmRecord]:
    """Not under fixtures/: the crash, DB-fault and two-worker tests write it to a tmp dir.

    ``count`` VMs on host-a, each loaded with its managed rows and the hash
    ``inventory``; tick k (1..versions) reports version k of every VM: the same managed
    devices (user aliases) with k + 1 PCIe root ports and another layout, so no two
    versions have the same XML (``pcie_root_ports`` 0: the builder adds no port of its
    own). The rows a version leaves do not depend on the version applied before it, so
    a test knows the rows each hash must come with.
    """
    s = Scenario("many-vms", root=root)
    vms = [replace(vm_record(f"many{i:03d}"), hash="inventory",
                   definition={**vm_record(f"many{i:03d}").definition, "pcie_root_ports": 0})
           for i in range(count)]
    s.inventory(vms, [r for vm in vms for r in managed_rows(vm)])
    for version in range(1, versions + 1):
        s.next_tick()
        s.host("host-a", {
            vm.id: ("Up", live_xml(vm, managed_rows(vm) + libvirt_added(vm, ports=version + 1),
                                   layout=version % 2))
            for vm in vms
        })
    return vms


def many_hosts(root: Path, hosts: int = 30, per_host: int = 2,
               versions: int = 3) -> list[VmRecord]:
    """Not under fixtures/: the lease tests write it to a tmp dir.

    ``per_host`` VMs on each of ``hosts`` hosts (``host-000``...), built as ``many_vms``
    builds its VMs: tick k (1..versions) reports version k of every VM on its host, so
    a worker playing the fixture in a loop applies every VM on every tick.
    """
    s = Scenario("many-hosts", root=root)
    names = [f"host-{number:03d}" for number in range(hosts)]
    vms = [replace(vm_record(f"{host}-vm{i}", host=host), hash="inventory")
           for host in names for i in range(per_host)]
    s.inventory(vms, [r for vm in vms for r in managed_rows(vm)])
    for version in range(1, versions + 1):
        s.next_tick()
        for host in names:
            s.host(host, {
                vm.id: ("Up", live_xml(vm, managed_rows(vm) + libvirt_added(vm, ports=version + 1),
                                       layout=version % 2))
                for vm in vms if vm.host == host
            })
    return vms


SCENARIOS = {
    "vm-start": vm_start, "disk-hotplug": disk_hotplug, "hotplug-lock": hotplug_lock,
    "nic-unplug-replug": nic_unplug_replug, "dimm-hotplug": dimm_hotplug,
    "pre-user-aliases": pre_user_aliases, "migration": migration,
    "agent-restart": agent_restart, "malformed-xml": malformed_xml,
    "host-timeout": host_timeout, "vm-vanished": vm_vanished, "demo": demo,
}


def main(names: list[str]) -> int:
    for name in names or SCENARIOS:
        SCENARIOS[name]()
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
