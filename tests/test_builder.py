"""Run-VM Domain XML: schema-valid, stable, every managed device stamped with its row id.

Each scenario is a small VM built by a function here. The same scenarios go through
libvirt's RelaxNG schema, libvirt's test driver (define + start), and our own parser
(read-back); three of them are golden files compared semantically
(MONITOR_REGENERATE_GOLDEN=1 rewrites them).
"""

from __future__ import annotations

import difflib
import os
import random
import uuid
from pathlib import Path

import pytest
from lxml import etree

from monitor.cli import main
from monitor.domxml.builder import build_domain_xml
from monitor.domxml.device_plan import (
    KIND_ORDER,
    NO_ALIAS_KINDS,
    disk_name,
    missing_root_ports,
    plan_devices,
)
from monitor.domxml.vm_definition import VmDefinition
from monitor.domxml.writers import default_mac
from monitor.errors import DefinitionError
from monitor.model.rows import DeviceRow, VmRecord

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("MONITOR_REGENERATE_GOLDEN") == "1"
NAMESPACE = uuid.UUID("0b6c1c1e-4a55-4d8e-9a57-6a0e3c7b2f10")


def ident(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


class VmBuilder:
    """A VM under construction: ``add`` a row by a short name, its id derived from it."""

    def __init__(self, name: str, **definition) -> None:
        self.vm = VmRecord(id=ident("vm/" + name), name=name, definition=definition)
        self.rows: list[DeviceRow] = []

    def add(self, type: str, device: str, name: str, **fields) -> DeviceRow:
        row = DeviceRow(device_id=ident(f"{self.vm.name}/{name}"), vm_id=self.vm.id,
                        type=type, device=device, **fields)
        self.rows.append(row)
        return row


def pci(slot: int, bus: int = 0, function: int = 0) -> dict[str, str]:
    return {"type": "pci", "domain": "0x0000", "bus": f"0x{bus:02x}", "slot": f"0x{slot:02x}",
            "function": f"0x{function:x}"}


def image(n: int) -> dict[str, str]:
    return {"pool_id": ident(f"pool{n}"), "domain_id": ident(f"sd{n}"),
            "image_id": ident(f"img{n}"), "volume_id": ident(f"vol{n}")}


# --- scenarios -----------------------------------------------------------------------


def minimal() -> VmBuilder:
    vm = VmBuilder("minimal")
    vm.add("disk", "disk", "root")
    return vm


def disks() -> VmBuilder:
    vm = VmBuilder("disks", memory_mib=2048)
    vm.add("controller", "virtio-scsi", "scsi0", spec_params={"index": 0})
    vm.add("controller", "sata", "sata0", spec_params={"index": 0}, is_managed=False,
           address=pci(31, function=2))
    vm.add("disk", "disk", "boot", spec_params={**image(1), "format": "qcow2", "boot_order": 1},
           logical_name="/dev/vda", address=pci(5))
    vm.add("disk", "disk", "data-virtio", spec_params={"path": "/var/lib/data.img"})
    vm.add("disk", "disk", "data-scsi", spec_params={**image(2), "bus": "scsi", "shared": "shared",
                                       "target_dev": "sdb"},
           address={"type": "drive", "controller": "0", "bus": "0", "target": "0", "unit": "1"})
    vm.add("disk", "disk", "data-sata", spec_params={"bus": "sata", "path": "/dev/sdz"})
    vm.add("disk", "cdrom", "cd", spec_params={"path": "/iso/boot.iso", "boot_order": 2})
    vm.add("disk", "lun", "lun", spec_params={"lun_id": "36001405f3e0c4e2a1b0d9c8b7a6f5e4d"})
    vm.add("disk", "disk", "detached", is_plugged=False)
    return vm


def nics() -> VmBuilder:
    vm = VmBuilder("nics")
    vm.add("interface", "bridge", "mgmt", spec_params={"mac_address": "00:1A:4A:16:01:57",
           "network": "ovirtmgmt", "boot_order": 4}, address=pci(3),
           custom_properties={"queues": "4"})
    vm.add("interface", "bridge", "storage", spec_params={"network": "storage",
           "model": "e1000", "link": "down", "filter": "vdsm-no-mac-spoofing"})
    vm.add("interface", "hostdev", "vf", host_device="pci_0000_05_10_1",
           spec_params={"mac_address": "00:1a:4a:16:01:99", "network": "sriov"})
    return vm


def q35_root_ports() -> VmBuilder:
    vm = VmBuilder("q35-ports", machine="pc-q35-7.2")
    vm.add("controller", "pci", "root", spec_params={"index": 0, "model": "pcie-root"},
           is_managed=False)
    for index in range(1, 5):
        address = pci(2, function=index - 1)
        if index == 1:
            address["multifunction"] = "on"
        vm.add("controller", "pci", f"port{index}",
               spec_params={"index": index, "model": "pcie-root-port"}, address=address)
    vm.add("disk", "disk", "root", address=pci(0, bus=1))
    vm.add("interface", "bridge", "nic", address=pci(0, bus=2))
    vm.add("controller", "usb", "xhci", spec_params={"model": "qemu-xhci", "index": 0},
           address=pci(0, bus=3))
    return vm


def hostdevs() -> VmBuilder:
    vm = VmBuilder("hostdevs")
    vm.add("hostdev", "pci", "gpu", host_device="pci_0000_05_00_1", spec_params={"boot_order": 3})
    vm.add("hostdev", "usb", "token", host_device="usb_1_5")
    vm.add("hostdev", "scsi", "tape", host_device="scsi_0_0_2_6")
    vm.add("mdev", "vfio", "vgpu", host_device="mdev_4b20d080_1b54_4048_85b3_a6a62d165c01",
           spec_params={"mdev_type": "nvidia-11"})
    vm.add("hostdev", "pci", "unmanaged-vf", host_device="pci_0000_06_00_2", is_managed=False)
    return vm


def dimms() -> VmBuilder:
    vm = VmBuilder("dimms", memory_mib=2048, max_memory_mib=16384, vcpus=2, max_vcpus=16,
                   cpu_model="Skylake-Client", cpu_cores=2)
    vm.add("memory", "memory", "dimm-a", spec_params={"node": 0, "size": 1024})
    vm.add("memory", "memory", "dimm-b", spec_params={"node": 0, "size": 512},
           is_managed=False)
    return vm


def singletons() -> VmBuilder:
    vm = VmBuilder("singletons")
    vm.add("balloon", "memballoon", "balloon", spec_params={"model": "virtio"}, address=pci(8))
    vm.add("rng", "virtio", "rng", spec_params={"source": "random"})
    vm.add("watchdog", "i6300esb", "watchdog", spec_params={"action": "reset"})
    vm.add("tpm", "tpm", "tpm")
    vm.add("sound", "ich9", "sound")
    vm.add("smartcard", "smartcard", "smartcard")
    vm.add("console", "console", "console", custom_properties={"serial": "true"})
    vm.add("panic", "panic", "panic")
    vm.add("video", "qxl", "video", spec_params={"vram": "65536", "heads": 2})
    vm.add("graphics", "spice", "spice", spec_params={"listen_address": "127.0.0.1"})
    vm.add("graphics", "vnc", "vnc")
    vm.add("input", "tablet", "tablet")
    vm.add("lease", "lease", "lease", spec_params={"sd_id": ident("sd1"), "lease_id": ident("vol1"),
           "path": "/rhev/leases", "offset": 1048576})
    return vm


def channels() -> VmBuilder:
    vm = VmBuilder("channels")
    vm.add("controller", "virtio-serial", "serial0", spec_params={"index": 0, "ports": 16})
    vm.add("channel", "unix", "qga")
    vm.add("channel", "unix", "ovirt", spec_params={"target_name": "ovirt-guest-agent.0"})
    vm.add("channel", "spicevmc", "spice")
    vm.add("channel", "unix", "found-later", is_managed=False,
           spec_params={"target_name": "org.example.0"}, alias="channel3",
           address={"type": "virtio-serial", "controller": "0", "bus": "0", "port": "4"})
    return vm


def redirdevs() -> VmBuilder:
    vm = VmBuilder("redirdevs")
    vm.add("controller", "usb", "usb", spec_params={"model": "qemu-xhci"})
    for n in range(1, 3):
        vm.add("redir", "spicevmc", f"redir{n}",
               address={"type": "usb", "bus": "0", "port": str(n)})
    return vm


def legacy_pc() -> VmBuilder:
    """An i440fx VM as the engine ran them in 4.2: IDE CD-ROM, VirtIO disk, ovirt metadata."""
    vm = VmBuilder("legacy-pc", machine="pc-i440fx-rhel7.6.0", memory_mib=4096, vcpus=2,
                   max_vcpus=16, cpu_model="Nehalem",
                   custom_properties={"sap_agent": "true"},
                   metadata={"startTime": 1521453447.17, "destroy_on_reboot": False},
                   qos={"vcpuLimit": 50})
    vm.add("controller", "ide", "ide", address=pci(1, function=1), is_managed=False)
    vm.add("controller", "usb", "usb", spec_params={"model": "piix3-uhci"},
           address=pci(1, function=2))
    vm.add("controller", "virtio-serial", "vs", spec_params={"index": 0}, address=pci(5))
    vm.add("disk", "cdrom", "cd")
    vm.add("disk", "disk", "root", spec_params={**image(3), "boot_order": 1}, address=pci(6))
    vm.add("interface", "bridge", "nic", spec_params={"mac_address": "00:1a:4a:16:01:00"},
           address=pci(3))
    vm.add("video", "qxl", "video", address=pci(2))
    vm.add("graphics", "spice", "spice", spec_params={"listen_network": "vdsm-ovirtmgmt"})
    vm.add("balloon", "memballoon", "balloon", address=pci(7))
    vm.add("channel", "unix", "qga")
    vm.add("channel", "spicevmc", "spice-channel")
    return vm


def full_q35() -> VmBuilder:
    """Every kind the builder writes, on one Q35 VM."""
    vm = VmBuilder("full-q35", memory_mib=2048, max_vcpus=4, vcpus=2,
                   custom_properties={"hugepages": "2048"}, metadata={"clusterVersion": "4.4"})
    for part in (disks(), nics(), hostdevs(), dimms(), singletons(), channels(), redirdevs()):
        for row in part.rows:
            if row.type == "controller" and row.device == "usb":
                continue  # redirdevs() and q35 share one usb controller below
            vm.rows.append(DeviceRow(**{**_fields(row), "device_id": ident(f"full/{row.device_id}"),
                                        "vm_id": vm.vm.id}))
    vm.add("controller", "usb", "usb", spec_params={"model": "qemu-xhci"})
    return vm


def _fields(row: DeviceRow) -> dict:
    return {name: getattr(row, name) for name in DeviceRow.__slots__}


SCENARIOS = [
    pytest.param(factory, id=factory.__name__)
    for factory in (minimal, disks, nics, q35_root_ports, hostdevs, dimms, singletons,
                    channels, redirdevs, legacy_pc, full_q35)
]


def built(factory) -> tuple[VmBuilder, bytes]:
    vm = factory()
    return vm, build_domain_xml(vm.vm, vm.rows)


def written_rows(vm: VmBuilder) -> list[DeviceRow]:
    return [row for row in vm.rows if row.is_plugged]


def aliased(row: DeviceRow) -> bool:
    return row.is_managed and row.type not in NO_ALIAS_KINDS


def devices_of(xml: bytes) -> list[etree._Element]:
    return [child for child in etree.fromstring(xml).find("devices") if child.tag != "emulator"]


# --- schema, stability, identity -----------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("factory", SCENARIOS)
def test_output_validates_against_libvirt_schema(factory, domain_rng):
    _, xml = built(factory)
    valid = domain_rng.validate(etree.fromstring(xml))
    assert valid, str(domain_rng.error_log.last_error)


@pytest.mark.parametrize("factory", SCENARIOS)
def test_same_rows_in_any_order_give_the_same_bytes(factory):
    vm, xml = built(factory)
    shuffler = random.Random(7)
    for _ in range(5):
        rows = list(vm.rows)
        shuffler.shuffle(rows)
        assert build_domain_xml(vm.vm, rows) == xml


@pytest.mark.parametrize("factory", SCENARIOS)
def test_every_plugged_row_is_written_once_and_aliased_if_managed(factory):
    vm, xml = built(factory)
    elements = devices_of(xml)
    added = missing_root_ports(VmDefinition.from_record(vm.vm), written_rows(vm))
    assert len(elements) == len(written_rows(vm)) + len(added)
    aliases = [el.find("alias").get("name") for el in elements if el.find("alias") is not None]
    expected = sorted("ua-" + row.device_id for row in written_rows(vm) if aliased(row))
    assert sorted(aliases) == expected


@pytest.mark.parametrize("factory", SCENARIOS)
def test_disks_carry_their_device_id_as_serial(factory):
    vm, xml = built(factory)
    serials = {el.findtext("serial") for el in devices_of(xml) if el.tag == "disk"}
    wanted = {row.device_id for row in written_rows(vm)
              if row.type == "disk" and row.device in ("disk", "cdrom")}
    assert serials - {None} == wanted


@pytest.mark.parametrize("factory", SCENARIOS)
def test_stored_addresses_are_written_exactly(factory):
    vm, xml = built(factory)
    by_alias = {el.find("alias").get("name"): el for el in devices_of(xml)
                if el.find("alias") is not None}
    for row in written_rows(vm):
        if not aliased(row):
            continue
        address = by_alias["ua-" + row.device_id].find("address")
        assert (dict(address.attrib) if address is not None else {}) == row.address


def test_unplugged_and_unmanaged_rows():
    vm, xml = built(channels)
    text = xml.decode()
    unmanaged = next(row for row in vm.rows if not row.is_managed)
    assert unmanaged.alias not in text  # libvirt drops non-ua aliases: none is written
    assert 'name="org.example.0"' in text and 'port="4"' in text
    vm, xml = built(disks)
    detached = next(row for row in vm.rows if not row.is_plugged)
    assert detached.device_id not in xml.decode()


def test_a_channel_path_is_written_only_when_the_row_gives_one():
    """A stock host has no VDSM channel folder: without a path libvirt picks its own."""
    vm = VmBuilder("channel-path")
    vm.add("channel", "unix", "qga")
    vm.add("channel", "unix", "given", spec_params={"target_name": "org.example.0",
                                                    "path": "/run/example.sock"})
    sources = {el.find("target").get("name"): dict(el.find("source").attrib) for el in
               etree.fromstring(build_domain_xml(vm.vm, vm.rows)).iterfind("devices/channel")}
    assert sources == {"org.qemu.guest_agent.0": {"mode": "bind"},
                       "org.example.0": {"mode": "bind", "path": "/run/example.sock"}}


def root_ports(xml: bytes) -> list[dict]:
    return [dict(el.attrib, alias=el.find("alias") is not None)
            for el in etree.fromstring(xml).iterfind("devices/controller[@model='pcie-root-port']")]


@pytest.mark.parametrize("definition, stored, expected", [
    pytest.param({}, [], list(range(1, 17)), id="q35-gets-16"),
    pytest.param({}, [(1, "pcie-root-port"), (3, "pcie-root-port"), (2, "pcie-to-pci-bridge")],
                 [1, 3] + list(range(4, 18)), id="stored-ones-count-free-indexes-filled"),
    pytest.param({"pcie_root_ports": 4}, [], [1, 2, 3, 4], id="a-setting-of-the-vm"),
    pytest.param({"pcie_root_ports": 2}, [(5, "pcie-root-port"), (6, "pcie-root-port"),
                                          (7, "pcie-root-port")], [5, 6, 7],
                 id="more-stored-are-kept-none-added"),
    pytest.param({"pcie_root_ports": 0}, [], [], id="none"),
    pytest.param({"machine": "pc-i440fx-rhel7.6.0"}, [], [], id="none-on-i440fx"),
])
def test_q35_gets_its_root_ports_counting_the_stored_ones(definition, stored, expected):
    vm = VmBuilder("ports", **definition)
    for index, model in stored:
        vm.add("controller", "pci", f"pci{index}", is_managed=False,
               spec_params={"index": index, "model": model})
    ports = root_ports(build_domain_xml(vm.vm, vm.rows))
    assert sorted(int(p["index"]) for p in ports) == expected
    assert not any(p["alias"] for p in ports)  # unmanaged: libvirt names them


def test_root_ports_the_first_tick_stores_are_written_back_not_added_again(libvirt_module,
                                                                        tmp_path):
    """Start, one tick (the root ports become unmanaged rows by controller index), then
    the next start's XML has the same 16 root ports and no more."""
    from monitor.commands.start import start_vm
    from monitor.hosts.libvirt_source import LibvirtHostSource
    from monitor.store import Store
    from monitor.tick.host_tick import TickContext, run_tick

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    vm = VmBuilder(f"ports-{uuid.uuid4().hex[:6]}")
    vm.add("disk", "disk", "boot", spec_params={"boot_order": 1})
    with store.transaction() as tx:
        tx.replace_vm(vm.vm, vm.rows)
    connection = libvirt_module.open("test:///default")
    try:
        source = LibvirtHostSource("test:///default", "h", connection=connection)
        first = root_ports(start_vm(store, vm.vm.id, source, "h"))
        summary = run_tick(source, TickContext(store=store, holder="t"))
        with store.transaction() as tx:
            stored = tx.rows([vm.vm.id])[vm.vm.id]
            again = build_domain_xml(tx.vm(vm.vm.id), stored)
    finally:
        connection.lookupByUUIDString(vm.vm.id).destroy()
        connection.close()
    ports = [r for r in stored if r.spec_params.get("model") == "pcie-root-port"]
    assert len(first) == 16 and summary.new >= 16
    assert sorted(r.spec_params["index"] for r in ports) == list(range(1, 17))
    assert not any(r.is_managed for r in ports)
    assert root_ports(again) == first


def test_unknown_kinds_are_left_out():
    vm = minimal()
    vm.add("emulator", "emulator", "odd")
    vm.add("hypervisor-thing", "x", "odder")
    assert build_domain_xml(vm.vm, vm.rows) == build_domain_xml(*_only_known(vm))


def _only_known(vm: VmBuilder):
    return vm.vm, [row for row in vm.rows if row.type in KIND_ORDER]


# --- defaults ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "machine, disks_given, expected",
    [
        pytest.param("q35", [("disk", {}), ("disk", {})], ["vda", "vdb"], id="virtio-in-id-order"),
        pytest.param("q35", [("disk", {"target_dev": "vda"}), ("disk", {})], ["vda", "vdb"],
                     id="stored-name-kept-next-free"),
        pytest.param("q35", [("disk", {}), ("disk", {"target_dev": "vda"})], ["vdb", "vda"],
                     id="stored-name-wins-over-order"),
        pytest.param("q35", [("cdrom", {}), ("disk", {"bus": "scsi"})], ["sda", "sdb"],
                     id="q35-cdrom-on-sata-shares-sd"),
        pytest.param("q35", [("cdrom", {}), ("disk", {"bus": "scsi", "boot_order": 1})],
                     ["sdb", "sda"], id="boot-disk-named-first"),
        pytest.param("q35", [("disk", {"boot_order": 2}), ("disk", {"boot_order": 1}),
                             ("disk", {})], ["vdb", "vda", "vdc"], id="named-in-boot-order"),
        pytest.param("pc", [("cdrom", {}), ("floppy", {})], ["hda", "fda"],
                     id="pc-cdrom-on-ide-floppy-on-fdc"),
        pytest.param("q35", [("lun", {})], ["sda"], id="lun-on-scsi"),
    ],
)
def test_disk_names_and_buses(machine, disks_given, expected):
    vm = VmBuilder("names", machine=machine)
    for n, (device, spec) in enumerate(disks_given):
        vm.add("disk", device, f"d{n}", spec_params=spec)
    definition = VmDefinition.from_record(vm.vm)
    planned = {p.row.device_id: p.target_dev for p in plan_devices(definition, vm.rows)}
    assert [planned[row.device_id] for row in vm.rows] == expected


@pytest.mark.parametrize(
    "index, name", [(0, "vda"), (25, "vdz"), (26, "vdaa"), (701, "vdzz"), (702, "vdaaa")]
)
def test_disk_name_follows_libvirt(index, name):
    assert disk_name("vd", index) == name


def test_nic_mac_is_written_in_libvirts_lower_case():
    vm, xml = built(nics)
    macs = [el.get("address") for el in etree.fromstring(xml).iterfind("devices/interface/mac")]
    assert "00:1a:4a:16:01:57" in macs and all(mac == mac.lower() for mac in macs)


def test_nic_without_mac_gets_a_stable_one_from_its_id():
    vm = VmBuilder("mac")
    row = vm.add("interface", "bridge", "nic")
    mac = etree.fromstring(build_domain_xml(vm.vm, vm.rows)).find("devices/interface/mac")
    assert mac.get("address") == default_mac(row.device_id)
    assert mac.get("address").startswith("00:1a:4a:") and len(mac.get("address")) == 17


@pytest.mark.parametrize(
    "definition, path, expected",
    [
        pytest.param({}, "memory", "1024", id="memory-default"),
        pytest.param({}, "vcpu", "1", id="vcpus-default"),
        pytest.param({}, "os/type", "hvm", id="os-type"),
        pytest.param({"max_vcpus": 4, "vcpus": 2}, "vcpu", "4", id="vcpu-ceiling"),
        pytest.param({"machine": "pc"}, "os/type@machine", "pc", id="machine"),
        pytest.param({}, "os/type@machine", "q35", id="machine-default"),
        pytest.param({}, "devices/emulator", "/usr/bin/qemu-system-x86_64", id="emulator"),
        pytest.param({"max_vcpus": 8, "cpu_cores": 2}, "cpu/topology@sockets", "4", id="sockets"),
        pytest.param({"domain_type": "qemu"}, "@type", "qemu", id="domain-type"),
        pytest.param({"kernel": "/k/vmlinuz"}, "os/kernel", "/k/vmlinuz", id="kernel"),
        pytest.param({"kernel": "/k", "initrd": "/k/initrd.gz"}, "os/initrd", "/k/initrd.gz",
                     id="initrd"),
        pytest.param({"kernel": "/k", "cmdline": "console=ttyS0"}, "os/cmdline",
                     "console=ttyS0", id="cmdline"),
    ],
)
def test_vm_definition_defaults(definition, path, expected):
    vm = VmBuilder("defaults", **definition)
    root = etree.fromstring(build_domain_xml(vm.vm, vm.rows))
    element_path, _, attribute = path.partition("@")
    element = root.find(element_path) if element_path else root
    assert (element.get(attribute) if attribute else element.text) == expected


def test_direct_kernel_boot_follows_the_os_type_in_libvirts_order():
    vm = VmBuilder("direct", kernel="/k/vmlinuz", initrd="/k/initrd.gz", cmdline="quiet")
    os_element = etree.fromstring(build_domain_xml(vm.vm, vm.rows)).find("os")
    assert [child.tag for child in os_element] == ["type", "kernel", "initrd", "cmdline"]
    plain = etree.fromstring(build_domain_xml(VmBuilder("plain").vm, [])).find("os")
    assert [child.tag for child in plain] == ["type"]


def test_dimms_add_to_memory_and_need_a_ceiling_with_slots():
    vm, xml = built(dimms)
    root = etree.fromstring(xml)
    assert root.findtext("memory") == str(2048 + 1024 + 512)
    assert root.find("maxMemory").attrib == {"slots": "16", "unit": "MiB"}
    assert root.find("cpu/numa/cell").get("memory") == "2048"
    assert root.find("cpu/numa/cell").get("cpus") == "0-15"


# --- errors --------------------------------------------------------------------------


def _bad(change):
    def scenario():
        vm = VmBuilder("bad")
        change(vm)
        return vm
    return scenario


@pytest.mark.parametrize(
    "scenario, message",
    [
        pytest.param(_bad(lambda vm: vm.add("hostdev", "pci", "h")), "needs host_device",
                     id="hostdev-without-host-device"),
        pytest.param(_bad(lambda vm: vm.add("hostdev", "pci", "h", host_device="usb_1_2")),
                     "needs host_device", id="hostdev-of-wrong-kind"),
        pytest.param(_bad(lambda vm: vm.add("interface", "bridge", "n",
                                            spec_params={"mac_address": "00:1a:4a"})),
                     "no valid MAC", id="bad-mac"),
        pytest.param(_bad(lambda vm: vm.add("mdev", "vfio", "m")), "mdev_<uuid>",
                     id="mdev-without-uuid"),
        pytest.param(_bad(lambda vm: vm.rows.append(DeviceRow("disk-1", vm.vm.id, "disk", "disk"))),
                     "no UUID", id="managed-row-without-uuid"),
        pytest.param(_bad(lambda vm: [vm.add("disk", "disk", n, spec_params={"target_dev": "vda"})
                                      for n in "ab"]), "two disks", id="duplicate-target-dev"),
        pytest.param(_bad(lambda vm: [vm.add("disk", "disk", n, spec_params={"boot_order": 1})
                                      for n in "ab"]), "boot order 1", id="duplicate-boot-order"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(memory_mib="lots")),
                     "memory_mib must be", id="memory-not-int"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(vcpus=4, max_vcpus=2)),
                     "max_vcpus 2 < vcpus 4", id="ceiling-below-vcpus"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(max_vcpus=3, cpu_cores=2)),
                     "not a multiple", id="topology-does-not-divide"),
        pytest.param(_bad(lambda vm: (vm.vm.definition.update(max_memory_mib=1024),
                                      vm.add("memory", "memory", "d", spec_params={"size": 512}))),
                     "max_memory_mib", id="ceiling-below-memory"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(initrd="/k/initrd.gz")),
                     "need a kernel", id="initrd-without-kernel"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(kernel="")),
                     "kernel must be", id="kernel-empty"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(metadata={"a": [1]})),
                     "definition.metadata", id="metadata-value-not-scalar"),
        pytest.param(_bad(lambda vm: vm.vm.definition.update(custom_properties={"a b": "1"})),
                     "not a valid XML name", id="custom-property-name"),
    ],
)
def test_unusable_input_is_one_definition_error(scenario, message):
    vm = scenario()
    with pytest.raises(DefinitionError, match=message) as error:
        build_domain_xml(vm.vm, vm.rows)
    assert "\n" not in str(error.value)


def test_definition_reads_unknown_keys_as_nothing():
    vm = VmRecord(id=ident("x"), name="x", definition={"future_key": {"a": 1}})
    plain = VmRecord(id=ident("x"), name="x")
    assert VmDefinition.from_record(vm) == VmDefinition.from_record(plain)


# --- libvirt's test driver -----------------------------------------------------------


@pytest.fixture(scope="module")
def test_driver(libvirt_module):
    connection = libvirt_module.open("test:///default")
    yield connection
    connection.close()


@pytest.mark.libvirt
@pytest.mark.parametrize("factory", SCENARIOS)
def test_test_driver_defines_and_starts_it_keeping_user_aliases(factory, test_driver):
    vm, xml = built(factory)
    domain = test_driver.defineXML(xml.decode())
    try:
        domain.create()
        live = etree.fromstring(domain.XMLDesc(0).encode())
        aliases = {el.get("name") for el in live.iterfind("devices/*/alias")}
        assert {"ua-" + row.device_id for row in written_rows(vm) if aliased(row)} <= aliases
        assert live.findtext("uuid") == vm.vm.id
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()


# --- read back by our own parser -----------------------------------------------------


@pytest.fixture(scope="module")
def parse_domain():
    parser = pytest.importorskip("monitor.domxml.parser", reason="the parser is not built yet")
    return parser.parse_domain


@pytest.mark.parametrize("factory", SCENARIOS)
def test_parser_resolves_every_user_alias_to_its_row(factory, parse_domain):
    vm, xml = built(factory)
    parsed = parse_domain(xml)
    rows = {row.device_id: row for row in vm.rows}
    assert parsed.uuid == vm.vm.id
    resolved = {}
    for device in parsed.devices:
        if device.alias.is_user:
            row = rows[device.alias.user_uuid]
            assert device.type == row.type  # else the matcher calls it a conflict
            resolved[row.device_id] = device
    assert set(resolved) == {row.device_id for row in written_rows(vm) if aliased(row)}


@pytest.mark.parametrize("factory", SCENARIOS)
def test_parser_reads_the_metadata_back_with_types(factory, parse_domain):
    vm, xml = built(factory)
    metadata = parse_domain(xml).metadata
    definition = VmDefinition.from_record(vm.vm)
    assert metadata.values == definition.metadata
    assert metadata.custom == definition.custom_properties
    assert metadata.qos == definition.qos
    root = etree.fromstring(xml)
    for row in written_rows(vm):
        if row.type == "disk" and row.spec_params.get("image_id"):
            target = root.find(f"devices/disk[serial='{row.device_id}']/target").get("dev")
            entry = metadata.disk_entry(target)
            assert entry.values["imageID"] == row.spec_params["image_id"]
            assert entry.values["volumeID"] == row.spec_params["volume_id"]


def test_metadata_values_keep_their_types(parse_domain):
    vm = VmBuilder("typed", metadata={"flag": True, "off": False, "count": 3, "ratio": 0.25,
                                      "label": "x"}, qos={"vcpuLimit": 50})
    values = parse_domain(build_domain_xml(vm.vm, vm.rows)).metadata.values
    for key, value in {"flag": True, "off": False, "count": 3, "ratio": 0.25, "label": "x"}.items():
        assert values[key] == value and type(values[key]) is type(value), key


# --- golden files --------------------------------------------------------------------


def canonical(xml: bytes) -> list[str]:
    """C14N (attributes sorted, whitespace text dropped), one element per line."""
    element = etree.fromstring(etree.canonicalize(etree.fromstring(xml), strip_text=True))
    etree.indent(element, space="  ")
    return etree.tostring(element, encoding="unicode").splitlines()


def assert_same_xml(actual: bytes, golden: Path) -> None:
    """Semantically equal, or fail showing the unified diff from the golden file."""
    expected, found = canonical(golden.read_bytes()), canonical(actual)
    if found != expected:
        diff = difflib.unified_diff(expected, found, str(golden.name), "built", lineterm="")
        pytest.fail("built XML differs from the golden file (MONITOR_REGENERATE_GOLDEN=1 "
                    "rewrites it):\n" + "\n".join(diff), pytrace=False)


@pytest.mark.parametrize("factory", [minimal, legacy_pc, full_q35], ids=lambda f: f.__name__)
def test_golden(factory):
    _, xml = built(factory)
    path = GOLDEN / f"builder-{factory.__name__.replace('_', '-')}-out.xml"
    if REGENERATE or not path.exists():
        if not REGENERATE:
            pytest.fail(f"{path.name} is missing: run with MONITOR_REGENERATE_GOLDEN=1")
        path.write_bytes(xml)
    assert_same_xml(xml, path)


def test_a_golden_difference_is_shown_as_a_unified_diff(tmp_path):
    golden = tmp_path / "golden.xml"
    golden.write_bytes(b"<domain><name>a</name><uuid b='1' a='2'/></domain>")
    assert_same_xml(b"<domain>\n  <name>a</name><uuid a='2' b='1'/></domain>", golden)
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_same_xml(b"<domain><name>b</name><uuid a='2' b='1'/></domain>", golden)
    assert "-  <name>a</name>\n+  <name>b</name>" in str(failed.value)


# --- the CLI verb --------------------------------------------------------------------


def test_domxml_verb_prints_the_built_xml(db_url, capsysbinary):
    from monitor.store import Store

    vm = legacy_pc()
    with Store.open(db_url) as store:
        with store.transaction() as tx:
            tx.replace_vm(vm.vm, vm.rows)
    assert main(["domxml", vm.vm.id.upper(), "--db", db_url]) == 0
    assert capsysbinary.readouterr().out == build_domain_xml(vm.vm, vm.rows)


@pytest.mark.parametrize(
    "vm_id, code, message",
    [
        pytest.param(ident("absent"), 2, "no VM with id", id="unknown-vm"),
        pytest.param("not-a-uuid", 2, "is not a UUID", id="bad-id"),
    ],
)
def test_domxml_verb_errors_are_one_line(vm_id, code, message, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    assert main(["domxml", vm_id, "--db", url]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
