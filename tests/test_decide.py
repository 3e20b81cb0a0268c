"""What a report writes (docs/matching.md), pass after pass, applied to rows in memory.

Every pass also checks idempotence: deciding again on the rows after applying the
changes yields empty changes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitor.legacy import convert, decide
from monitor.model import hostaddress
from monitor.model.changes import VmChanges
from monitor.model.domain import EMPTY_METADATA, MetadataDevice, ParsedDomain, VmMetadata
from monitor.model.rows import DeviceRow

from devices_and_rows import VM, apply_in_memory, dev, numbered, row, uid


def domain(devices, metadata=EMPTY_METADATA) -> ParsedDomain:
    return ParsedDomain(VM, "vm", tuple(devices), metadata, "domain")


def one_pass(rows, devices, metadata=EMPTY_METADATA):
    """Decide and apply one report; check that the same report again writes nothing."""
    parsed = domain(devices, metadata)
    changes = decide(convert(VM, parsed, rows), rows)
    after = apply_in_memory(rows, changes)
    again = decide(convert(VM, parsed, after), after)
    assert again.rows_written == 0, f"not idempotent: {again}"
    return changes, after


def by_id(rows) -> dict[str, DeviceRow]:
    return {r.device_id: r for r in rows}


PCI_3 = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x03", "function": "0x0"}
PCI_4 = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x04", "function": "0x0"}


def test_a_match_writes_plugged_address_alias_and_guest_name_only():
    disk = row(uid(1), "disk", address=PCI_3, spec={"lun_id": "x"}, is_plugged=False,
               is_readonly=True, custom_properties={"k": "v"})
    metadata = VmMetadata({}, {}, (MetadataDevice({"devtype": "disk", "name": "vda"},
                                                  {"guestName": "/dev/vda"}),), {})
    device = dev("disk", alias="ua-" + uid(1), address=PCI_4, target_dev="vda")
    changes, after = one_pass([disk], [device], metadata)
    assert [u.device_id for u in changes.updates] == [uid(1)]
    assert after == [replace(disk, is_plugged=True, address=PCI_4, alias="ua-" + uid(1),
                             logical_name="/dev/vda")]


def test_alias_and_logical_name_kept_when_not_reported():
    disk = row(uid(1), "disk", alias="virtio-disk0", logical_name="/dev/vda", address=PCI_3)
    changes, after = one_pass([disk], [dev("disk", serial=uid(1), address=PCI_4)])
    assert after == [replace(disk, address=PCI_4)]


def test_an_address_equal_after_normalization_is_not_rewritten():
    stored = {"type": "pci", "domain": "0", "bus": "0", "slot": "3", "function": "0"}
    disk = row(uid(1), "disk", address=stored, alias="ua-" + uid(1))
    changes, _ = one_pass([disk], [dev("disk", alias="ua-" + uid(1), address=PCI_3)])
    assert changes == VmChanges(VM)


def test_host_device_written_for_host_devices():
    hostdev = row(uid(7), "hostdev", "pci", alias="ua-" + uid(7))
    device = dev("hostdev", device="pci", alias="ua-" + uid(7),
                 host_address=hostaddress.pci("0", "5", "0", "1"))
    _, after = one_pass([hostdev], [device])
    assert after[0].host_device == "pci_0000_05_00_1"


@pytest.mark.parametrize("replugged", [
    pytest.param(dev("interface", device="bridge", alias="ua-" + uid(2), address=PCI_4,
                     mac="52:54:00:00:00:02"), id="back-with-user-alias"),
    pytest.param(dev("interface", device="bridge", alias="net3", address=PCI_4,
                     mac="52:54:00:00:00:02"), id="back-with-libvirt-alias-by-mac"),
])
def test_managed_nic_unplugged_then_replugged_keeps_its_row(replugged):
    nic = row(uid(2), "interface", "bridge", alias="ua-" + uid(2), address=PCI_3,
              spec={"mac_address": "52:54:00:00:00:02"})
    changes, rows = one_pass([nic], [])
    assert rows == [replace(nic, is_plugged=False, address={})]
    changes, rows = one_pass(rows, [replugged])
    assert changes.inserts == () and len(rows) == 1
    assert rows[0].is_plugged and rows[0].address == PCI_4


def test_libvirt_reusing_an_alias_never_plugs_a_row_whose_device_is_gone():
    """Seen on a real host: a NIC matched by MAC stores libvirt's ``net0``; the guest
    unplugs it; an unrelated NIC attached next gets ``net0`` from libvirt."""
    nic = row(uid(2), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:02"})
    _, rows = one_pass([nic], [dev("interface", device="bridge", alias="net0", address=PCI_3,
                                   mac="52:54:00:00:00:02")])
    assert rows == [replace(nic, alias="net0", address=PCI_3)]
    _, rows = one_pass(rows, [])
    assert rows == [replace(nic, is_plugged=False, address={}, alias="")]
    unrelated = dev("interface", device="bridge", alias="net0", address=PCI_4,
                    mac="52:54:00:00:00:99")
    changes, rows = one_pass(rows, [unrelated])
    assert changes == VmChanges(VM) and not rows[0].is_plugged
    assert convert(VM, domain([unrelated]), rows).result.foreign == (unrelated,)


def test_unplugging_clears_a_libvirt_alias_and_keeps_a_user_alias():
    libvirt_named = row(uid(1), "disk", alias="scsi0-0-0-1", address=PCI_3)
    user_named = row(uid(2), "disk", alias="ua-" + uid(2), address=PCI_4)
    unplugged_named = row(uid(3), "disk", alias="net9", is_plugged=False)
    _, rows = one_pass([libvirt_named, user_named, unplugged_named], [])
    assert [(r.alias, r.is_plugged, r.address) for r in rows] == [
        ("", False, {}), ("ua-" + uid(2), False, {}), ("", False, {})]


def test_an_update_says_whether_it_changes_the_alias():
    """The store leaves a kept alias out of its UPDATE (model/changes.py)."""
    renamed = row(uid(1), "disk", alias="virtio-disk0", address=PCI_3)
    moved = row(uid(2), "disk", alias="ua-" + uid(2), address=PCI_3)
    unplugged_libvirt = row(uid(3), "disk", alias="scsi0-0-0-1", address=PCI_4)
    unplugged_user = row(uid(4), "disk", alias="ua-" + uid(4), address=PCI_4)
    changes, _ = one_pass([renamed, moved, unplugged_libvirt, unplugged_user], [
        dev("disk", serial=uid(1), alias="ua-" + uid(1), address=PCI_3),
        dev("disk", alias="ua-" + uid(2), address=PCI_4),
    ])
    assert [(u.device_id, u.alias_changed) for u in changes.updates] == [
        (uid(1), True), (uid(2), False), (uid(3), True), (uid(4), False)]


@pytest.mark.parametrize("kind", ["graphics", "console", "tpm", "mdev", "balloon"])
def test_rows_that_cannot_be_identified_are_never_unplugged(kind):
    kept = row(uid(1), kind, alias="ua-" + uid(1), address=PCI_3)
    changes, _ = one_pass([kept], [])
    assert changes == VmChanges(VM)


def test_unreported_rows_managed_unplugged_unmanaged_deleted():
    managed = row(uid(1), "disk", alias="ua-" + uid(1), address=PCI_3)
    unmanaged = row(uid(2), "controller", "pci", is_managed=False,
                    spec={"index": 1, "model": "pcie-root-port"})
    changes, after = one_pass([managed, unmanaged], [])
    assert changes.deletes == (uid(2),)
    assert after == [replace(managed, is_plugged=False, address={})]


def test_dimm_hot_plug_then_unplug():
    disk = row(uid(1), "disk", alias="ua-" + uid(1))
    base = [dev("disk", alias="ua-" + uid(1))]
    dimm = dev("memory", alias="dimm0", address={"type": "dimm", "slot": "0"},
               node=0, size=1024, position=1)
    changes, rows = one_pass([disk], numbered(*base, dimm))
    (inserted,) = changes.inserts
    assert (inserted.type, inserted.is_managed, inserted.spec_params) == (
        "memory", False, {"node": 0, "size": 1024})
    changes, rows = one_pass(rows, base)
    assert changes.deletes == (inserted.device_id,) and rows == [disk]


def _unmanaged_devices(with_alias: bool, slot: str):
    alias = (lambda name: name) if with_alias else (lambda name: "")
    return numbered(
        dev("disk", alias="ua-" + uid(1), address={**PCI_3, "slot": slot}),
        dev("controller", device="pci", alias=alias("pci.1"), index=1,
            model="pcie-root-port"),
        dev("controller", device="pci", alias=alias("pci.2"), index=2,
            model="pcie-root-port"),
        dev("channel", device="unix", alias=alias("channel0"), target_type="virtio",
            target_name="org.qemu.guest_agent.0"),
        dev("channel", device="spicevmc", alias=alias("channel1"), target_type="virtio",
            target_name="com.redhat.spice.0"),
        dev("redirdev", "redir", "spicevmc", alias=alias("redir0")),
        dev("redirdev", "redir", "spicevmc", alias=alias("redir1")),
    )


@pytest.mark.parametrize("with_alias", [pytest.param(True, id="libvirt-aliases"),
                                        pytest.param(False, id="no-aliases")])
def test_unmanaged_rows_keep_their_ids_over_three_hash_changes(with_alias):
    rows = [row(uid(1), "disk", alias="ua-" + uid(1))]
    changes, rows = one_pass(rows, _unmanaged_devices(with_alias, "0x03"))
    first_ids = sorted(r.device_id for r in rows)
    assert len(changes.inserts) == 6
    for slot in ("0x04", "0x05", "0x06"):
        changes, rows = one_pass(rows, _unmanaged_devices(with_alias, slot))
        assert (changes.inserts, changes.deletes) == ((), ())
        assert [u.device_id for u in changes.updates] == [uid(1)]
        assert sorted(r.device_id for r in rows) == first_ids


def test_conflict_rows_left_alone_rest_applied():
    rows = [row(uid(1), "disk", alias="ua-" + uid(1), address=PCI_3),
            row(uid(2), "disk", alias="ua-" + uid(2), address=PCI_3),
            row(uid(3), "disk", alias="ua-" + uid(3), address=PCI_3)]
    devices = numbered(dev("disk", alias="ua-" + uid(1), address=PCI_4),
                       dev("disk", alias="ua-" + uid(1), address=PCI_4),
                       dev("disk", alias="ua-" + uid(2), address=PCI_4))
    converted = convert(VM, domain(devices), rows)
    changes = decide(converted, rows)
    assert converted.conflicted_row_ids == {uid(1)}
    assert [(u.device_id, u.is_plugged) for u in changes.updates] == [
        (uid(2), True), (uid(3), False)]
    after = by_id(apply_in_memory(rows, changes))
    assert after[uid(1)] == rows[0]


def test_emulator_and_input_never_become_rows():
    changes, rows = one_pass([], numbered(dev("emulator"), dev("input", device="tablet",
                                                                 alias="input0")))
    assert changes == VmChanges(VM) and rows == []
