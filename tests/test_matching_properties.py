"""Properties of correlation over generated VMs (docs/matching.md).

Values come from small pools so that aliases, keys and addresses collide often: the
interesting cases are the ambiguous ones.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.legacy import convert, decide
from monitor.matching import match
from monitor.matching.policy import SINGLETON_KINDS
from monitor.model import hostaddress
from monitor.model.domain import EMPTY_METADATA, ParsedDomain

from devices_and_rows import KINDS, VM, apply_in_memory, dev, row, uid

IDS = [uid(n) for n in range(1, 9)]
ALIASES = ["", "", "ua-" + IDS[0], "ua-" + IDS[1], "ua-" + IDS[2], "net0", "x1"]
ADDRESSES = [None, None, {"type": "pci", "slot": "0x01"}, {"type": "pci", "slot": "2"}]
MACS = ["52:54:00:00:00:01", "52:54:00:00:00:02"]
HOSTDEVS = ["pci_0000_05_00_1", "pci_0000_05_00_2"]
small = st.integers(0, 2)
UNMANAGED = {"controller", "channel", "redir", "memory", "hostdev"}  # the only unmanaged rows


@st.composite
def reported(draw, position: int):
    kind = draw(st.sampled_from(sorted(KINDS)))
    tag, type_, device = KINDS[kind]
    keys = {}
    if kind == "disk":
        keys = {"serial": draw(st.sampled_from([None, *IDS[:3]])),
                "source": draw(st.sampled_from([None, f"/images/{IDS[3]}/v", "/dev/mapper/36"]))}
    elif kind == "interface":
        keys = {"mac": draw(st.sampled_from(MACS))}
    elif kind == "controller":
        keys = {"index": draw(small), "model": "pcie-root-port"}
    elif kind == "channel":
        keys = {"target_type": "virtio",
                "target_name": draw(st.sampled_from(["a", "b"]))}
    elif kind == "memory":
        keys = {"node": 0, "size": draw(st.sampled_from([512, 1024]))}
    elif kind == "hostdev":
        keys = {"host_address": hostaddress.parse_node_device_name(
            draw(st.sampled_from(HOSTDEVS)))}
    return dev(tag, type_, device, alias=draw(st.sampled_from(ALIASES)),
               address=draw(st.sampled_from(ADDRESSES)), position=position, **keys)


def libvirt_accepts(devices) -> bool:
    """What libvirt guarantees in one domain: unique aliases and addresses, unique MACs,
    controller indexes, host devices and channel names, one graphics of a type. Identical
    DIMMs, redirdevs and disks (two CD-ROMs on one ISO) are allowed."""
    seen = set()
    for device in devices:
        unique = [("alias", device.alias.name), ("address", device.address.key)]
        if device.type in ("interface", "controller", "hostdev", "channel"):
            unique.append((device.type, device.keys))
        if device.type in SINGLETON_KINDS:
            unique.append(("singleton", device.type))
        for key in unique:
            if key[1] and key in seen:
                return False
            seen.add(key)
    return True


@st.composite
def stored(draw, device_id: str):
    kind = draw(st.sampled_from(sorted(KINDS)))
    _, type_, device = KINDS[kind]
    spec = {}
    if kind == "disk":
        spec = draw(st.sampled_from([{}, {"lun_id": "36"}]))
    elif kind == "interface":
        spec = {"mac_address": draw(st.sampled_from([m.upper() for m in MACS]))}
    elif kind == "controller":
        spec = {"index": draw(small), "model": "pcie-root-port"}
    elif kind == "channel":
        spec = {"target_type": "virtio", "target_name": draw(st.sampled_from(["a", "b"]))}
    elif kind == "memory":
        spec = {"node": 0, "size": draw(st.sampled_from([512, 1024]))}
    return row(device_id, type_, device, alias=draw(st.sampled_from(ALIASES)),
               address=draw(st.sampled_from(ADDRESSES)), spec=spec,
               is_managed=type_ not in UNMANAGED or draw(st.booleans()),
               is_plugged=draw(st.booleans()),
               host_device=draw(st.sampled_from([None, *HOSTDEVS])) if kind == "hostdev" else None)


@st.composite
def vms(draw):
    count = draw(st.integers(0, 8))
    devices: list = []
    for _ in range(count):
        candidate = draw(reported(len(devices)))
        if libvirt_accepts([*devices, candidate]):
            devices.append(candidate)
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=8))
    return devices, [draw(stored(device_id)) for device_id in ids]


def canonical(result) -> tuple:
    """The result in a form independent of object identity and input order."""
    return (
        tuple((m.device.position, m.row.device_id, m.rule) for m in result.matches),
        tuple((n.device.position, n.device_id) for n in result.new),
        tuple(d.position for d in result.foreign),
        tuple((c.rule, tuple(d.position for d in c.devices),
               tuple(r.device_id for r in c.rows), c.reason) for c in result.conflicts),
        tuple(r.device_id for r in result.unreported),
    )


PROPERTIES = settings(derandomize=True, max_examples=200, deadline=None)


@PROPERTIES
@given(vms())
def test_every_device_accounted_once_and_no_row_claimed_twice(vm):
    devices, rows = vm
    result = match(VM, devices, rows)
    accounted = ([m.device for m in result.matches] + [n.device for n in result.new]
                 + list(result.foreign) + [d for c in result.conflicts for d in c.devices])
    assert sorted(d.position for d in accounted) == list(range(len(devices)))
    claimed = ([m.row.device_id for m in result.matches]
               + [r.device_id for c in result.conflicts for r in c.rows]
               + [r.device_id for r in result.unreported])
    assert sorted(claimed) == sorted(r.device_id for r in rows)
    new_ids = [n.device_id for n in result.new]
    assert len(set(new_ids)) == len(new_ids) and not set(new_ids) & set(claimed)
    assert all(m.device.type == m.row.type for m in result.matches)


@PROPERTIES
@given(vms(), st.randoms(use_true_random=False))
def test_shuffled_devices_and_rows_give_the_same_result(vm, rng: random.Random):
    devices, rows = vm
    shuffled_devices, shuffled_rows = list(devices), list(rows)
    rng.shuffle(shuffled_devices)
    rng.shuffle(shuffled_rows)
    assert canonical(match(VM, shuffled_devices, shuffled_rows)) == canonical(
        match(VM, devices, rows))


@PROPERTIES
@given(vms())
def test_applying_the_same_report_twice_writes_nothing(vm):
    devices, rows = vm
    parsed = ParsedDomain(VM, "vm", tuple(devices), EMPTY_METADATA, "domain")
    after = apply_in_memory(rows, decide(convert(VM, parsed, rows), rows))
    again = decide(convert(VM, parsed, after), after)
    assert again.rows_written == 0, again
