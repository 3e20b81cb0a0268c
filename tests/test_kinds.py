"""The kinds table, read and written from one declaration (docs/architecture.md,
"Device kinds"): for every kind and every identity field, a row built into Domain XML
and parsed back gives a device whose key equals the row's key.

Rows are generated from the table itself (its kinds, their ``devices``, their fields and
normalizations), so a kind added to the table is covered without touching this file.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.domxml import parse_domain
from monitor.domxml.builder import build_domain_xml
from monitor.matching.policy import POLICY, Lookup
from monitor.model.hostaddress import parse_node_device_name
from monitor.model.ids import normalize_mac, normalize_number
from monitor.model.kinds import KINDS, Kind, Norm, row_value
from monitor.model.rows import DeviceRow, VmRecord

VM = VmRecord(id="5a1f3b2c-0000-4000-8000-00000000c1d5", name="kinds", definition={})
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)


@st.composite
def macs(draw) -> str:
    octets = draw(st.lists(st.integers(0, 255), min_size=5, max_size=5))
    text = ":".join(f"{octet:02x}" for octet in [0x52, *octets])  # unicast
    return draw(st.sampled_from([text, text.upper(), text.replace(":", "-")]))


def numbers(low: int, high: int):
    """A stored number as JSON may hold it: an int, its decimal or its hex text."""
    return st.integers(low, high).flatmap(
        lambda n: st.sampled_from([n, str(n), hex(n)]))


def host_devices(device: str):
    """A node-device name the writer of ``device`` can write (an SR-IOV NIC is PCI)."""
    byte = st.integers(0, 255)
    if device == "usb":
        return st.builds(lambda b, d: f"usb_{b}_{d}", st.integers(1, 9), st.integers(1, 99))
    if device == "scsi":
        return st.builds(lambda *p: "scsi_{}_{}_{}_{}".format(*p), *[st.integers(0, 9)] * 4)
    if device == "vfio":
        return st.uuids().map(lambda u: "mdev_" + str(u).replace("-", "_"))
    return st.builds(lambda b, s, f: f"pci_0000_{b:02x}_{s:02x}_{f:x}", byte,
                     st.integers(0, 31), st.integers(0, 7))


VALUES = {
    Norm.TEXT: WORD,
    Norm.MAC: macs(),
    Norm.NUMBER: numbers(0, 30),
    Norm.MIB: st.integers(1, 65536),
    Norm.PRESENT: st.booleans(),
}


# A disk is found by its id inside its source path (the disk-path rule): a stored path
# holds it, as oVirt's image paths do.
IN_PATH = {("disk", "source"): lambda row_id: WORD.map(lambda w: f"/images/{w}/{row_id}.img")}


@st.composite
def rows_of(draw, kind: Kind) -> DeviceRow:
    """A managed, plugged row of ``kind`` with every identity field given."""
    device = draw(st.sampled_from(kind.devices))
    row_id = str(draw(st.uuids()))
    spec: dict = {}
    columns: dict = {"host_device": draw(host_devices(device))}
    for field in kind.fields:
        if field.stored == "device_id" or field.norm is Norm.HOST_ADDRESS:
            continue  # the row's id (a disk serial) and host_device are drawn above/below
        within = IN_PATH.get((kind.type, field.name))
        value = draw(within(row_id) if within else VALUES[field.norm])
        for path, case_value, case_device in kind.cases:  # the value that names the device
            if path == field.path and device == case_device:
                value = case_value
        if field.spec is not None:
            spec[field.spec] = value
        else:
            columns[field.stored] = value
    if device in ("cdrom", "floppy"):
        columns["is_readonly"] = True  # libvirt's removable media are always read-only
    return DeviceRow(device_id=row_id, vm_id=VM.id, type=kind.type,
                     device=device, spec_params=spec, **columns)


# The row's stored value in the form the parser gives for the XML the builder wrote.
NORMALIZE = {
    Norm.TEXT: str,
    Norm.STRIPPED: lambda value: str(value).strip(),
    Norm.MAC: normalize_mac,
    Norm.NUMBER: normalize_number,
    Norm.MIB: normalize_number,
    Norm.PRESENT: bool,
    Norm.HOST_ADDRESS: parse_node_device_name,
}


def built_device(row: DeviceRow, kind: Kind):
    parsed = parse_domain(build_domain_xml(VM, [row]))
    if kind.user_alias:
        found = [d for d in parsed.devices if d.alias.user_uuid == row.device_id]
    else:
        found = [d for d in parsed.devices if d.type == kind.type]
    assert len(found) == 1, f"{kind.type}: {len(found)} devices written for one row"
    return found[0]


@pytest.mark.parametrize("kind", KINDS, ids=[kind.type for kind in KINDS])
@settings(derandomize=True, max_examples=30, deadline=None)
@given(data=st.data())
def test_build_then_parse_gives_the_rows_key(kind: Kind, data):
    row = data.draw(rows_of(kind))
    device = built_device(row, kind)
    assert (device.tag, device.type) == (kind.tag, kind.type)
    fields = [field for field in kind.fields if field.written_for(row.device)]
    for field in fields:
        assert getattr(device.keys, field.name) == NORMALIZE[field.norm](
            row_value(row, field)), field.name
    for step in POLICY:
        if step.rule.value not in kind.rules:
            continue
        device_key, row_key = step.device_key(device), step.row_key(row)
        if device_key is None and len(fields) < len(kind.fields):
            continue  # the rule reads a field not written for this device (a LUN's serial)
        assert device_key is not None and row_key is not None, step.rule.value
        if step.lookup is Lookup.INSIDE:
            assert any(part in device_key for part in row_key), step.rule.value
        else:
            assert device_key == row_key, step.rule.value


def test_every_kind_is_written_and_read_under_its_tag():
    """The vocabulary round trip with no field given: the defaults are read back too."""
    for kind in KINDS:
        row = DeviceRow(device_id=str(uuid.uuid5(uuid.NAMESPACE_URL, kind.type)), vm_id=VM.id,
                        type=kind.type, device=kind.devices[0],
                        host_device="mdev_" + "1" * 8 + "_1111_1111_1111_" + "1" * 12
                        if kind.type == "mdev" else "pci_0000_05_00_1" if kind.devices[0] == "pci"
                        else None)
        device = built_device(row, kind)
        assert (device.tag, device.type) == (kind.tag, kind.type)
