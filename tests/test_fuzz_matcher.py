"""Adversarial devices and rows through match, convert and decide.

``test_matching_properties`` generates VMs libvirt would accept, against rows a sane
manager holds. This file drops both assumptions: a garbage host may report duplicate
aliases, duplicate MACs and identical addresses, ``ua-`` aliases naming rows of another
type; the DB may hold rows whose ``spec_params`` carry strings where numbers belong,
``None``, lists, nested objects, addresses with non-string values, ids differing only by
case. Whatever comes in, the pure core must not raise, must account for every device
exactly once, must not claim a row twice, and must decide changes the store can apply
(each row touched once, no insert over an existing id).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.legacy import convert, decide
from monitor.matching import match
from monitor.model.domain import EMPTY_METADATA, ParsedDomain

from devices_and_rows import KINDS, VM, apply_in_memory, dev, row, uid

IDS = [uid(n) for n in range(1, 7)]
# Row ids: canonical, upper case (another row to the DB), and not UUIDs at all.
ROW_IDS = [*IDS, IDS[0].upper(), IDS[1].upper(), "not-a-uuid", "0", " " + IDS[2]]
ALIASES = ["", "", "ua-" + IDS[0], "ua-" + IDS[1], "ua-" + IDS[2].upper(), "ua-" + IDS[5],
           "ua-not-a-uuid", "ua-", "net0", "net0", "x1", "\u00e9\u202e", " "]
# Garbage stored where the policy reads a key: every type JSON can hold, and then some.
GARBAGE = [None, "", " ", "zz", "0x", "0xZZ", "-1", "1.5", 0, 1, -1, 2**70, 1.5,
           float("nan"), True, False, [], [1], {}, {"a": {"b": 1}}, ("t",), b"\xff"]
MACS = ["52:54:00:00:00:01", "52:54:00:00:00:01", "52-54-00-00-00-01", "52:54:00:00:00:0Z"]
ADDRESSES = [None, {}, {"type": "pci", "slot": "0x01"}, {"type": "pci", "slot": "1"},
             {"type": "drive", "unit": "zz"}, {"slot": ""}]
BAD_ADDRESSES = [*ADDRESSES, {"type": None}, {"slot": 1}, {"bus": {"nested": 1}},
                 {"unit": [0]}, {"type": 1.5}]
HOSTDEVS = [None, "pci_0000_05_00_1", "pci_zz", "usb_1_2", "mdev_" + IDS[3], "", "x"]


def garbage_or(*good):
    return st.sampled_from([*good, *GARBAGE])


# The natural keys a device of each kind may report, the stored keys a row may carry.
DEVICE_KEYS = {
    "disk": {"serial": [None, "", IDS[0], IDS[4].upper(), "serial"],
             "source": [None, "", f"/images/{IDS[3]}/v", "/dev/mapper/36", "/"]},
    "interface": {"mac": [None, *MACS]},
    "controller": {"index": [None, 0, 1, "0x1", "zz", ""],
                   "model": [None, "", "pcie-root-port"]},
    "memory": {"node": [None, 0, "zz"], "size": [None, 512, "513.5KiB", ""]},
    "channel": {"target_type": [None, "virtio", ""],
                "target_name": [None, "a", ""]},
}
ROW_KEYS = {
    "disk": {"lun_id": ["36"]},
    "interface": {"mac_address": MACS},
    "controller": {"index": [0, "1", "0x1"], "model": ["pcie-root-port"]},
    "memory": {"node": [0], "size": [512, "512"]},
    "channel": {"target_type": ["virtio"], "target_name": ["a"]},
}
KIND_NAMES = sorted(KINDS)


def draw_keys(draw, table: dict, kind: str, garbage: bool) -> dict:
    return {name: draw(garbage_or(*good) if garbage else st.sampled_from(good))
            for name, good in table.get(kind, {}).items()}


@st.composite
def reported(draw, position: int):
    kind = draw(st.sampled_from(KIND_NAMES))
    tag, type_, device = KINDS[kind]
    keys = draw_keys(draw, DEVICE_KEYS, kind, garbage=False)
    if draw(st.integers(0, 9)) == 0:  # a lying tag: the keys are the type's, none here
        type_, keys = draw(st.sampled_from(["disk", "interface", "unknown", ""])), {}
    return dev(tag, type_, device, alias=draw(st.sampled_from(ALIASES)),
               address=draw(st.sampled_from(ADDRESSES)), position=position, **keys)


@st.composite
def stored(draw, device_id: str):
    kind = draw(st.sampled_from(KIND_NAMES))
    _, type_, device = KINDS[kind]
    spec = draw_keys(draw, ROW_KEYS, kind, garbage=True)
    if draw(st.integers(0, 3)) == 0:  # a key of another kind, garbage too
        spec.update(draw_keys(draw, ROW_KEYS, draw(st.sampled_from(sorted(ROW_KEYS))), True))
    return row(device_id, type_, device,
               alias=draw(st.sampled_from(ALIASES)),
               address=draw(st.sampled_from(BAD_ADDRESSES)), spec=spec,
               is_managed=draw(st.booleans()), is_plugged=draw(st.booleans()),
               host_device=draw(st.sampled_from(HOSTDEVS)))


@st.composite
def hostile_vms(draw):
    devices = [draw(reported(position)) for position in range(draw(st.integers(0, 10)))]
    ids = draw(st.lists(st.sampled_from(ROW_IDS), unique=True, max_size=8))
    return devices, [draw(stored(device_id)) for device_id in ids]


HOSTILE = settings(derandomize=True, max_examples=250, deadline=None, database=None)


def assert_every_device_once_and_no_row_twice(result, devices, rows) -> None:
    accounted = ([m.device.position for m in result.matches]
                 + [n.device.position for n in result.new]
                 + [d.position for d in result.foreign]
                 + [d.position for c in result.conflicts for d in c.devices])
    assert sorted(accounted) == list(range(len(devices)))
    claimed = ([m.row.device_id for m in result.matches]
               + [r.device_id for c in result.conflicts for r in c.rows]
               + [r.device_id for r in result.unreported])
    assert sorted(claimed) == sorted(r.device_id for r in rows)
    assert all(m.device.type == m.row.type for m in result.matches)
    new_ids = [n.device_id for n in result.new]
    assert len(set(new_ids)) == len(new_ids)


def assert_changes_can_be_applied(converted, changes, rows) -> None:
    legacy_ids = [entry["deviceId"] for entry in converted.legacy["devices"]]
    assert len(set(legacy_ids)) == len(legacy_ids)
    existing = {r.device_id for r in rows}
    touched = [u.device_id for u in changes.updates] + list(changes.deletes)
    assert len(set(touched)) == len(touched) and set(touched) <= existing
    assert not existing & {r.device_id for r in changes.inserts}
    assert not set(touched) & converted.conflicted_row_ids
    apply_in_memory(rows, changes)


@HOSTILE
@given(hostile_vms())
def test_hostile_devices_and_rows_through_match_convert_decide(vm):
    """One generated VM, every property: generation is the cost, so it is shared."""
    devices, rows = vm
    result = match(VM, devices, rows)
    assert_every_device_once_and_no_row_twice(result, devices, rows)
    explained = match(VM, devices, rows, explain=True)
    assert explained._replace(trace=None) == result
    assert set(explained.trace) == set(devices)
    parsed = ParsedDomain(VM, "vm", tuple(devices), EMPTY_METADATA, "domain")
    converted = convert(VM, parsed, rows)
    assert_changes_can_be_applied(converted, decide(converted, rows), rows)


def test_the_generators_reach_the_adversarial_cases():
    """A guard on the harness: hostile rows and duplicates are generated and survive."""
    rows = [row(IDS[0], "disk", spec={"mac_address": {"a": 1}, "lun_id": [1]},
                address={"bus": {"nested": 1}}),
            # an empty MAC is no key, so it cannot veto the stored alias: both NICs select it
            row(IDS[0].upper(), "interface", alias="net0", spec={"mac_address": ""}),
            row(IDS[1], "controller", spec={"index": 1.5, "model": {}}),
            row(IDS[2], "memory", spec={"size": [512], "node": "zz"}),
            row(IDS[3], "channel", spec={"target_type": {}, "target_name": ["a"]})]
    devices = [dev("interface", device="bridge", alias="net0", mac=MACS[0], position=0),
               dev("interface", device="bridge", alias="net0", mac=MACS[0], position=1),
               dev("disk", alias="ua-" + IDS[1], position=2),
               dev("controller", device="pci", index=1, position=3)]
    result = match(VM, devices, rows)
    assert [c.rule.value for c in result.conflicts] == ["user-alias", "stored-alias"]
