"""The matching rules of docs/matching.md, one table row per situation.

Devices are built directly (no XML): ``dev`` makes a ReportedDevice with its natural
keys, ``row`` a DeviceRow (tests/devices_and_rows.py).
"""

from __future__ import annotations

import pytest

from monitor.matching import Rule, match
from monitor.matching.stable_id import derive_ids
from monitor.model import hostaddress
from monitor.model.address import Address
from monitor.model.alias import Alias
from monitor.model.device import ReportedDevice

from devices_and_rows import VM, dev, numbered, row, uid

def outcome(result) -> dict[int, tuple[str, str | None]]:
    """position -> (rule, row id): how each device was decided."""
    decided = {m.device.position: (m.rule.value, m.row.device_id) for m in result.matches}
    decided.update({n.device.position: ("new-unmanaged", n.device_id) for n in result.new})
    decided.update({d.position: ("foreign", None) for d in result.foreign})
    for conflict in result.conflicts:
        decided.update({d.position: ("conflict", None) for d in conflict.devices})
    return decided


PCI_05 = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x05", "function": "0x0"}
MAPPER = "/dev/mapper/3600a0b80005ad1d7000008bc5a9f0c8f"
IMAGES = "/rhev/data-center/mnt/nfs/5e1a/images/{}/7c1e3b5e-2f0d-4b7c-a111-0c2b6c7a9d31"
MDEV = "8a5d1ad2-0e0b-4b5e-9c7a-3f1e2d4c5b6a"

CASES = [
    pytest.param(
        [dev("disk", alias="ua-" + uid(1), address=PCI_05)],
        [row(uid(1), "disk")],
        {0: ("user-alias", uid(1))},
        id="managed-disk-by-user-alias",
    ),
    pytest.param(
        [dev("disk", alias="ua-" + uid(1).upper())],
        [row(uid(1).upper(), "disk")],
        {0: ("user-alias", uid(1).upper())},
        id="user-alias-uuid-case-ignored",
    ),
    pytest.param(
        numbered(
            dev("disk", alias="virtio-disk0"),
            dev("interface", device="bridge", alias="net0", mac="52:54:00:00:00:01"),
            dev("video", device="qxl", alias="video0"),
            dev("memballoon", "balloon", "memballoon", alias="balloon0"),
            dev("controller", device="usb", alias="usb", index=0),
        ),
        [row(uid(1), "disk", alias="virtio-disk0"),
         row(uid(2), "interface", "bridge", alias="net0"),
         row(uid(3), "video", "qxl", alias="video0"),
         row(uid(4), "balloon", "memballoon", alias="balloon0"),
         row(uid(5), "controller", "usb", alias="usb")],
        {0: ("stored-alias", uid(1)), 1: ("stored-alias", uid(2)),
         2: ("stored-alias", uid(3)), 3: ("stored-alias", uid(4)),
         4: ("stored-alias", uid(5))},
        id="vm-started-before-user-aliases-keeps-every-device",
    ),
    pytest.param(
        [dev("interface", device="bridge", alias="net0", mac="52:54:00:00:00:02")],
        [row(uid(2), "interface", "bridge", alias="net0", is_plugged=False)],
        {0: ("foreign", None)},
        id="stored-alias-never-selects-an-unplugged-row",
    ),
    pytest.param(
        [dev("interface", device="bridge", alias="net0", mac="52:54:00:00:00:02")],
        [row(uid(2), "interface", "bridge", alias="net0",
             spec={"mac_address": "52:54:00:00:00:01"})],
        {0: ("foreign", None)},
        id="stored-alias-vetoed-by-another-mac",
    ),
    pytest.param(
        numbered(dev("interface", device="bridge", alias="net0", mac="52:54:00:00:00:02"),
                 dev("interface", device="bridge", alias="net1")),
        [row(uid(2), "interface", "bridge", alias="net0", spec={"mac_address": "52:54:00:00:00:02"}),
         row(uid(3), "interface", "bridge", alias="net1", spec={"mac_address": "52:54:00:00:00:03"})],
        {0: ("stored-alias", uid(2)), 1: ("stored-alias", uid(3))},
        id="stored-alias-with-the-same-mac-or-a-key-missing-on-one-side",
    ),
    pytest.param(
        numbered(dev("disk", alias="scsi0-0-0-1", serial=uid(9)),
                 dev("disk", alias="scsi0-0-0-2", source="/images/elsewhere.img")),
        [row(uid(1), "disk", alias="scsi0-0-0-1"), row(uid(2), "disk", alias="scsi0-0-0-2")],
        {0: ("foreign", None), 1: ("stored-alias", uid(2))},
        id="stored-alias-vetoed-by-another-serial-never-by-disk-path",
    ),
    pytest.param(
        numbered(
            dev("controller", device="pci", alias="pci.1", index=2,
                model="pcie-root-port"),
            dev("memory", alias="dimm0", node=0, size=1024),
            dev("channel", device="unix", alias="channel0", target_type="virtio",
                target_name="org.example.1"),
            dev("hostdev", device="pci", alias="hostdev0",
                host_address=hostaddress.pci("0", "6", "0", "0")),
            dev("video", device="qxl", alias="video0", address=PCI_05),
        ),
        [row(uid(1), "controller", "pci", alias="pci.1", spec={"index": 1, "model": "pcie-root-port"}),
         row(uid(2), "memory", alias="dimm0", spec={"node": 0, "size": 512}),
         row(uid(3), "channel", "unix", alias="channel0",
             spec={"target_type": "virtio", "target_name": "org.example.0"}),
         row(uid(4), "hostdev", "pci", alias="hostdev0", host_device="pci_0000_05_00_0"),
         row(uid(5), "video", "vga", alias="video0")],
        {0: ("new-unmanaged", None), 1: ("new-unmanaged", None), 2: ("new-unmanaged", None),
         3: ("new-unmanaged", None), 4: ("stored-alias", uid(5))},
        id="stored-alias-vetoed-by-each-equality-key-never-by-singleton",
    ),
    pytest.param(
        [dev("interface", device="bridge", alias="net1", mac="52:54:00:ab:cd:ef")],
        [row(uid(2), "interface", "bridge", spec={"mac_address": "52:54:00:AB:CD:EF"})],
        {0: ("mac", uid(2))},
        id="nic-libvirt-alias-by-mac-other-case",
    ),
    pytest.param(
        [dev("interface", device="bridge", alias="ua-" + uid(9), mac="52:54:00:00:00:07")],
        [row(uid(2), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:07"})],
        {0: ("mac", uid(2))},
        id="natural-key-applies-whatever-alias-the-device-carries",
    ),
    pytest.param(
        [dev("disk", serial=uid(3).upper())],
        [row(uid(3), "disk")],
        {0: ("disk-serial", uid(3))},
        id="disk-without-alias-by-serial",
    ),
    pytest.param(
        [dev("disk", source=IMAGES.format(uid(4)))],
        [row(uid(4), "disk"), row(uid(5), "disk")],
        {0: ("disk-path", uid(4))},
        id="disk-by-id-inside-source-path",
    ),
    pytest.param(
        [dev("disk", device="lun", source=MAPPER)],
        [row(uid(6), "disk", "lun", spec={"lun_id": "3600a0b80005ad1d7000008bc5a9f0c8f"})],
        {0: ("disk-path", uid(6))},
        id="lun-by-lun-id-in-dev-mapper",
    ),
    pytest.param(
        [dev("disk", device="cdrom", alias="ide0-1-0",
             source="/var/run/vdsm/payload/6f1d3e4a.3cf1.img")],
        [row(uid(1), "disk", "cdrom", alias="ua-" + uid(1))],
        {0: ("foreign", None)},
        id="payload-cdrom-without-row-is-foreign",
    ),
    pytest.param(
        [dev("disk", alias="ua-not-a-uuid", serial=uid(5))],
        [row(uid(5), "disk")],
        {0: ("disk-serial", uid(5))},
        id="malformed-user-alias-is-a-plain-alias",
    ),
    pytest.param(
        [dev("disk", alias="ua-1234")],
        [row(uid(5), "disk", alias="ua-1234")],
        {0: ("stored-alias", uid(5))},
        id="malformed-user-alias-by-stored-alias",
    ),
    pytest.param(
        numbered(dev("disk", alias="ua-" + uid(1)), dev("disk", alias="ua-" + uid(1)),
                 dev("disk", alias="ua-" + uid(2))),
        [row(uid(1), "disk"), row(uid(2), "disk")],
        {0: ("conflict", None), 1: ("conflict", None), 2: ("user-alias", uid(2))},
        id="two-devices-same-user-alias-conflict-rest-matched",
    ),
    pytest.param(
        [dev("disk", alias="ua-" + uid(1), serial=uid(1))],
        [row(uid(1), "interface", "bridge")],
        {0: ("conflict", None)},
        id="user-alias-of-another-type-is-a-conflict",
    ),
    pytest.param(
        numbered(dev("interface", device="bridge", mac="52:54:00:00:00:01"),
                 dev("interface", device="bridge", mac="52:54:00:00:00:01")),
        [row(uid(1), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:01"})],
        {0: ("conflict", None), 1: ("conflict", None)},
        id="row-selected-by-two-devices-is-a-conflict",
    ),
    pytest.param(
        [dev("interface", device="bridge", mac="52:54:00:00:00:01")],
        [row(uid(1), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:01"}),
         row(uid(2), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:01"})],
        {0: ("conflict", None)},
        id="device-selecting-two-rows-is-a-conflict",
    ),
    pytest.param(
        [dev("input", device="tablet", address={"type": "usb", "bus": "0", "port": "1"})],
        [row(uid(1), "input", "tablet")],
        {0: ("foreign", None)},
        id="no-alias-never-matches-a-row-with-empty-alias",
    ),
    pytest.param(
        numbered(
            dev("controller", device="pci", index=1, model="pcie-root-port"),
            dev("controller", device="pci", index=2, model="pcie-root-port"),
            dev("controller", device="usb", index=0, model="qemu-xhci"),
            dev("controller", device="virtio-scsi", index=0,
                model="virtio-scsi"),
        ),
        [row(uid(1), "controller", "pci", spec={"index": 2, "model": "pcie-root-port"}),
         row(uid(2), "controller", "pci", spec={"index": "0x1", "model": "pcie-root-port"}),
         row(uid(3), "controller", "usb", spec={"index": 0, "model": "piix3-uhci"}),
         row(uid(4), "controller", "virtio-scsi", spec={"index": 0, "model": "virtio-scsi"})],
        {0: ("controller-index", uid(2)), 1: ("controller-index", uid(1)),
         2: ("new-unmanaged", None), 3: ("controller-index", uid(4))},
        id="controllers-by-type-index-model",
    ),
    pytest.param(
        [dev("hostdev", device="pci", alias="hostdev0",
             host_address=hostaddress.pci("0x0000", "0x05", "0x00", "0x1"))],
        [row(uid(7), "hostdev", "pci", host_device="pci_0000_05_00_1")],
        {0: ("host-address", uid(7))},
        id="host-device-by-host-side-pci-address",
    ),
    pytest.param(
        [dev("hostdev", "mdev", "vfio", host_address=hostaddress.mdev(MDEV.upper()))],
        [row(uid(8), "mdev", "vfio", host_device="mdev_" + MDEV.replace("-", "_"))],
        {0: ("host-address", uid(8))},
        id="mdev-by-uuid",
    ),
    pytest.param(
        numbered(dev("video", device="qxl"), dev("graphics", device="spice"),
                 dev("graphics", device="vnc")),
        [row(uid(1), "video", "qxl"), row(uid(2), "graphics", "vnc"),
         row(uid(3), "graphics", "spice")],
        {0: ("singleton", uid(1)), 1: ("singleton", uid(3)), 2: ("singleton", uid(2))},
        id="video-and-graphics-without-alias",
    ),
    pytest.param(
        [dev("memballoon", "balloon", "memballoon")],
        [row(uid(1), "balloon", "memballoon"), row(uid(2), "balloon", "memballoon")],
        {0: ("foreign", None)},
        id="singleton-not-unique-among-rows",
    ),
    pytest.param(
        numbered(dev("video", device="qxl"), dev("video", device="qxl")),
        [row(uid(1), "video", "qxl")],
        {0: ("foreign", None), 1: ("foreign", None)},
        id="singleton-not-unique-among-devices-is-no-conflict",
    ),
    pytest.param(
        [dev("video", device="vga")],
        [row(uid(1), "video", "qxl")],
        {0: ("foreign", None)},
        id="video-singleton-by-model-type",
    ),
    pytest.param(
        [dev("disk", device="cdrom", address={"type": "drive", "controller": "0", "bus": "1",
                                              "target": "0", "unit": "0"})],
        [row(uid(1), "disk", "cdrom", address={"type": "drive", "controller": "0x0",
                                               "bus": "0x1", "target": "0", "unit": "0"})],
        {0: ("address", uid(1))},
        id="empty-cdrom-by-full-address",
    ),
    pytest.param(
        numbered(dev("hostdev", device="usb", alias="ua-" + uid(9)),
                 dev("hostdev", device="usb", host_address=hostaddress.usb("1", "5"))),
        [],
        {0: ("foreign", None), 1: ("new-unmanaged", None)},
        id="hostdev-with-user-alias-foreign-without-new",
    ),
    pytest.param(
        numbered(dev("emulator"), dev("input", device="mouse", alias="input0"),
                 dev("redirdev", "redir", "spicevmc", alias="redir0"),
                 dev("channel", device="unix", target_type="virtio",
                     target_name="org.qemu.guest_agent.0"),
                 dev("memory", device="memory", node=0, size=1024),
                 dev("rng", device="virtio"), dev("mystery-tag")),
        [],
        {0: ("foreign", None), 1: ("foreign", None), 2: ("new-unmanaged", None),
         3: ("new-unmanaged", None), 4: ("new-unmanaged", None), 5: ("foreign", None),
         6: ("foreign", None)},
        id="only-controller-channel-redir-memory-hostdev-become-rows",
    ),
]


@pytest.mark.parametrize("devices, rows, expected", CASES)
def test_rules(devices, rows, expected):
    decided = outcome(match(VM, devices, rows))
    assert {p: (rule, row_id if rule != "new-unmanaged" else None)
            for p, (rule, row_id) in decided.items()} == expected


def test_conflict_leaves_its_rows_and_devices_out_of_later_rules():
    devices = numbered(dev("disk", alias="ua-" + uid(1), serial=uid(2)),
                       dev("disk", alias="ua-" + uid(1), serial=uid(3)))
    rows = [row(uid(1), "disk"), row(uid(2), "disk"), row(uid(3), "disk")]
    result = match(VM, devices, rows)
    assert [c.rule for c in result.conflicts] == [Rule.USER_ALIAS]
    assert result.conflicted_row_ids == {uid(1)}
    assert result.matches == ()
    assert [r.device_id for r in result.unreported] == [uid(2), uid(3)]


def test_stable_id_finds_a_row_created_from_a_device_without_alias_or_key():
    devices = numbered(dev("redirdev", "redir", "spicevmc"), dev("redirdev", "redir", "spicevmc"))
    first = match(VM, devices, [])
    ids = [n.device_id for n in first.new]
    assert len(set(ids)) == 2
    rows = [row(i, "redir", "spicevmc", is_managed=False) for i in ids]
    second = match(VM, devices, rows)
    assert outcome(second) == {0: ("stable-id", ids[0]), 1: ("stable-id", ids[1])}


def test_derived_ids_tell_identical_devices_apart_by_position_not_input_order():
    devices = numbered(*(dev("memory", node=0, size=512) for _ in range(3)))
    forward = derive_ids(VM, devices)
    backward = derive_ids(VM, list(reversed(devices)))
    assert forward == backward
    assert len(set(forward.values())) == 3


def test_derived_id_skips_ids_of_rows_already_decided():
    device = dev("memory", node=0, size=512)
    plain = derive_ids(VM, [device])[device]
    assert derive_ids(VM, [device], taken={plain})[device] != plain


def test_alias_rules_never_read_natural_keys():
    def explode(source):
        raise AssertionError("natural keys read for a device matched by its alias")

    devices = [ReportedDevice("disk", "disk", "disk", Alias.parse("ua-" + uid(1)), Address(), 0,
                              loader=explode),
               ReportedDevice("interface", "interface", "bridge", Alias.parse("net0"), Address(),
                              1, loader=explode)]
    rows = [row(uid(1), "disk"), row(uid(2), "interface", "bridge", alias="net0")]
    assert outcome(match(VM, devices, rows)) == {0: ("user-alias", uid(1)),
                                                  1: ("stored-alias", uid(2))}


def test_explain_says_why_a_stored_alias_was_vetoed():
    device = dev("interface", device="bridge", alias="net0", mac="52:54:00:00:00:02")
    rows = [row(uid(1), "interface", "bridge", alias="net0", is_plugged=False),
            row(uid(2), "interface", "bridge", alias="net0",
                spec={"mac_address": "52:54:00:00:00:01"})]
    attempts = match(VM, [device], rows, explain=True).trace[device]
    assert [(a.rule.value, a.outcome.value, a.detail) for a in attempts[1:3]] == [
        ("stored-alias", "vetoed", f"row {uid(1)} holds this alias but is unplugged"),
        ("stored-alias", "vetoed", f"row {uid(2)} holds this alias but its mac key "
                                   "52:54:00:00:00:01 differs from 52:54:00:00:00:02")]


def test_explain_records_every_rule_tried():
    device = dev("disk", device="cdrom", alias="ide0-1-0", source="/iso/payload.img")
    result = match(VM, [device], [row(uid(1), "disk", "cdrom")], explain=True)
    tried = [(a.rule.value, a.outcome.value) for a in result.trace[device]]
    assert tried == [("user-alias", "no key"), ("stored-alias", "no candidate"),
                     ("disk-serial", "no key"), ("disk-path", "no candidate"),
                     ("address", "no key"), ("stable-id", "no candidate")]
    assert match(VM, [device], []).trace is None
