"""The legacy full-list dict (docs/matching.md, "The legacy dict") and the JSON-lines adapter."""

from __future__ import annotations

import io
import json

import pytest

from monitor.adapters import JsonLinesAdapter
from monitor.legacy import convert
from monitor.matching.stable_id import derive_ids
from monitor.model import hostaddress
from monitor.model.domain import EMPTY_METADATA, MetadataDevice, ParsedDomain, VmMetadata

from devices_and_rows import VM, dev, numbered, row, uid

PCI_3 = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x03", "function": "0x0"}
CHAIN = [{"volumeID": uid(11), "path": "/images/a/b"}, {"volumeID": uid(12), "path": "/c"}]
METADATA = VmMetadata({}, {}, (
    MetadataDevice({"mac_address": "52:54:00:00:00:01"}, {"network": "ovirtmgmt"}),
    MetadataDevice({"devtype": "disk", "name": "vda"},
                   {"imageID": uid(1), "guestName": "/dev/vda", "volumeChain": CHAIN}),
), {})


def domain(devices, metadata=EMPTY_METADATA) -> ParsedDomain:
    return ParsedDomain(VM, "vm", tuple(devices), metadata, "domain")


def test_matched_device_carries_reported_values_row_spec_params_and_rule():
    device = dev("disk", alias="ua-" + uid(1), address=PCI_3, target_dev="vda")
    rows = [row(uid(1), "disk", spec={"lun_id": "l1"})]
    legacy = convert(VM, domain([device], METADATA), rows).legacy
    assert legacy == {
        "vmId": VM,
        "devices": [{"deviceId": uid(1), "type": "disk", "device": "disk", "address": PCI_3,
                     "alias": "ua-" + uid(1), "specParams": {"lun_id": "l1"},
                     "matchedBy": "user-alias", "imageID": uid(1), "volumeChain": CHAIN}],
        "guestDiskMapping": {uid(1): {"name": "/dev/vda"}},
    }


def test_no_guest_names_means_no_mapping():
    device = dev("disk", alias="ua-" + uid(1), target_dev="vdb")
    legacy = convert(VM, domain([device], METADATA), [row(uid(1), "disk")]).legacy
    assert legacy["guestDiskMapping"] is None
    assert "imageID" not in legacy["devices"][0]


@pytest.mark.parametrize("device, spec_params", [
    pytest.param(dev("controller", device="pci", index=3,
                     model="pcie-root-port"),
                 {"index": 3, "model": "pcie-root-port"}, id="controller"),
    pytest.param(dev("controller", device="ide", index="0x0"), {"index": 0},
                 id="controller-without-model"),
    pytest.param(dev("memory", node=1, size=2048), {"node": 1, "size": 2048},
                 id="memory"),
    pytest.param(dev("channel", device="unix", target_type="virtio",
                     target_name="org.qemu.guest_agent.0"),
                 {"target_type": "virtio", "target_name": "org.qemu.guest_agent.0"},
                 id="channel"),
    pytest.param(dev("redirdev", "redir", "spicevmc", alias="redir0"), {}, id="redir"),
])
def test_new_unmanaged_spec_params_derived_from_the_natural_key(device, spec_params):
    (legacy,) = convert(VM, domain([device]), []).legacy["devices"]
    assert legacy["specParams"] == spec_params
    assert legacy["matchedBy"] == "new-unmanaged"
    assert legacy["deviceId"] == derive_ids(VM, [device])[device]


def test_host_devices_carry_their_node_device_name():
    device = dev("hostdev", device="pci", alias="hostdev0",
                 host_address=hostaddress.pci("0x0000", "0x05", "0x00", "0x1"))
    (legacy,) = convert(VM, domain([device]), []).legacy["devices"]
    assert legacy["hostdev"] == "pci_0000_05_00_1"


def test_foreign_and_conflicts_travel_beside_the_list_and_emit_as_json_lines():
    devices = numbered(dev("disk", alias="ua-" + uid(1)), dev("disk", alias="ua-" + uid(1)),
                       dev("emulator"), dev("disk", alias="ua-" + uid(2)))
    converted = convert(VM, domain(devices), [row(uid(1), "disk"), row(uid(2), "disk")])
    assert [d["deviceId"] for d in converted.legacy["devices"]] == [uid(2)]
    assert [d.tag for d in converted.foreign] == ["emulator"]
    stream = io.StringIO()
    JsonLinesAdapter(stream).handle(VM, converted)
    (line,) = stream.getvalue().splitlines()
    emitted = json.loads(line)
    assert emitted["vmId"] == VM and emitted["conflictedRowIds"] == [uid(1)]
    assert [f["tag"] for f in emitted["foreign"]] == ["emulator"]
    assert [(c["rule"], [d["position"] for d in c["devices"]], c["rowIds"])
            for c in emitted["conflicts"]] == [("user-alias", [0, 1], [uid(1)])]


def test_legacy_list_follows_xml_order():
    devices = numbered(dev("controller", device="usb", index=0),
                       dev("disk", alias="ua-" + uid(1)),
                       dev("interface", device="bridge", mac="52:54:00:00:00:01"))
    rows = [row(uid(1), "disk"),
            row(uid(2), "interface", "bridge", spec={"mac_address": "52:54:00:00:00:01"})]
    legacy = convert(VM, domain(reversed(devices)), list(reversed(rows))).legacy
    assert [d["matchedBy"] for d in legacy["devices"]] == [
        "new-unmanaged", "user-alias", "mac"]
