"""The worst Domain XML inside each limit costs a small multiple of parsing it.

For every limit (docs/operations.md "Limits") a document sits just inside it and is
built to make the readers work hardest: the most attributes on the elements read
whole, the most elements in the parts read in Python, the longest texts, the deepest
nesting, the most devices, the most bytes. Each is read as a tick reads it
(``parse_domain`` with the default limits, metadata included) and must cost at most
10x the lxml parse floor of the same bytes, both measured here in CPU time, best of 3:
the one timing assertion the project allows. A 5 s alarm fails (rather than hangs) a reader
that went quadratic again.

Each document is also pushed one step past its limit, where it must be refused in one
line.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager

import pytest

from monitor.domxml.canonical import devices_digest
from monitor.domxml.floor import lxml_parse_s
from monitor.domxml.parser import parse_domain
from monitor.errors import XmlError
from monitor.settings import Limits

LIMITS = Limits()
RATIO = 10
UUID = "0b6d3a64-5a0e-4f3d-9c6b-1f2e3d4c5b6a"
OVIRT = 'xmlns:ovirt-vm="http://ovirt.org/vm/1.0"'


@contextmanager
def hang_guard():
    """Fail (not hang) if one read takes more than 5 s."""

    def expired(signum, frame):
        raise TimeoutError("reading one document took more than 5 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def domain(devices: str = "", metadata: str = "") -> bytes:
    meta = f"<metadata><ovirt-vm:vm {OVIRT}>{metadata}</ovirt-vm:vm></metadata>" if metadata else ""
    return (f"<domain type='kvm'><name>worst</name><uuid>{UUID}</uuid>{meta}"
            f"<devices>{devices}</devices></domain>").encode()


def fill(unit: str, count: int, budget: int) -> int:
    """How many ``unit`` fit in ``count`` and in ``budget`` bytes."""
    return min(count, budget // len(unit.encode()))


# The documents that fill bytes with many small units stop at 2 MiB: the cost of a unit
# against its parse does not change with their number, and four times the units would
# only make the test slower (the most-bytes document fills the whole limit).
BYTES = min(LIMITS.max_xml_bytes, 2 * 1024 * 1024) - 4096


def wide(tag: str, attributes: int, value: str = "") -> str:
    return f"<{tag} " + " ".join(f'a{i}="{value}"' for i in range(attributes)) + "/>"


def attributes_on_addresses(attributes: int) -> bytes:
    unit = f"<disk type='file' device='disk'>{wide('address', attributes)}</disk>"
    return domain(devices=unit * fill(unit, LIMITS.max_devices, BYTES))


def attributes_on_metadata_devices(attributes: int) -> bytes:
    unit = wide("ovirt-vm:device", attributes)
    count = fill(unit, LIMITS.max_elements - 16, BYTES)
    return domain(metadata=unit * count)


def elements_in_metadata(elements: int) -> bytes:
    return domain(metadata="<a/>" * (elements - 6))


def elements_in_one_device(elements: int) -> bytes:
    return domain(devices="<disk>" + "<a/>" * (elements - 5) + "</disk>")


def elements_in_metadata_mappings(elements: int) -> bytes:
    unit = "<ovirt-vm:custom><a/><b/><c/><d/><e/><f/><g/></ovirt-vm:custom>"
    units, rest = divmod(elements - 6, 8)
    return domain(metadata=unit * units + "<z/>" * rest)


def long_texts(chars: int) -> bytes:
    unit = f"<a>{'x' * chars}</a>"
    return domain(metadata=unit * fill(unit, LIMITS.max_elements, BYTES))


def long_numbers(digits: int) -> bytes:
    unit = f"<a type='int'>{'9' * digits}</a>"
    return domain(metadata=unit * fill(unit, LIMITS.max_elements - 6, BYTES))


def deep_nesting(depth: int) -> bytes:
    # <domain><metadata><vm> are 3 levels; the rest nests as deep as allowed, repeated.
    levels = depth - 3
    unit = "<a>" * levels + "x" + "</a>" * levels
    return domain(metadata=unit * ((LIMITS.max_elements - 6) // levels))


def devices(count: int) -> bytes:
    unit = ("<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
            "<alias name='ua-5e3a1c2b-0f4d-4e5a-8b6c-7d8e9f0a1b2c'/>"
            "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>"
            "</interface>")
    return domain(devices=unit * count)


def long_values(chars: int) -> bytes:
    value = "v" * chars
    unit = (f"<disk type='{value}' device='{value}'><alias name='{value}'/>"
            f"<address type='{value}' bus='{value}' slot='{value}'/></disk>")
    return domain(devices=unit * fill(unit, LIMITS.max_devices, BYTES))


def bytes_of_devices(size: int) -> bytes:
    unit = "<disk type='file' device='disk'><address type='pci' bus='0x00' slot='0x01'/></disk>"
    count = fill(unit, LIMITS.max_devices, size - 4096)
    envelope = len(domain(devices=unit * count + "<!---->"))
    return domain(devices=unit * count + f"<!--{'c' * (size - envelope)}-->")


# (id, builder, the limit's value, the value just past it, what the refusal says)
WORST = [
    ("attributes-on-addresses", attributes_on_addresses, LIMITS.max_attributes, "attributes"),
    ("attributes-on-metadata-devices", attributes_on_metadata_devices, LIMITS.max_attributes,
     "attributes"),
    ("elements-in-metadata", elements_in_metadata, LIMITS.max_elements, "elements"),
    ("elements-in-one-device", elements_in_one_device, LIMITS.max_elements, "elements"),
    ("elements-in-metadata-mappings", elements_in_metadata_mappings, LIMITS.max_elements,
     "elements"),
    ("longest-texts", long_texts, LIMITS.max_text_chars, "characters"),
    ("longest-values", long_values, LIMITS.max_value_chars, "characters"),
    ("deepest-nesting", deep_nesting, LIMITS.max_depth, "deeper"),
    ("most-devices", devices, LIMITS.max_devices, "devices"),
    ("most-bytes", bytes_of_devices, LIMITS.max_xml_bytes, "bytes"),
]


# No limit of their own, but readers once spent quadratic time on them.
EXTRA = [
    pytest.param(long_numbers, 4300, id="numbers-of-4300-digits"),
    pytest.param(long_numbers, 40, id="numbers-of-40-digits"),
]


def _best_of_3(action) -> float:
    """The least CPU time of three runs: the process's own time, so another process
    taking the CPU meanwhile (CI runs tests side by side) does not count."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize(("build", "limit"),
                         [pytest.param(b, v, id=i) for i, b, v, _ in WORST] + EXTRA)
def test_the_worst_document_inside_a_limit_costs_at_most_10x_the_parse(build, limit):
    document = build(limit)
    assert len(document) <= LIMITS.max_xml_bytes
    with hang_guard():
        parsed = parse_domain(document, limits=LIMITS)  # inside every limit: read, not refused
    assert parsed.uuid == UUID
    floor = _best_of_3(lambda: lxml_parse_s([document]))
    read = _best_of_3(lambda: parse_domain(document, limits=LIMITS))
    assert read <= RATIO * floor, (
        f"reading took {read / floor:.1f}x the lxml parse of the same {len(document)} bytes")


@pytest.mark.parametrize(("build", "limit", "says"),
                         [pytest.param(b, v, s, id=i) for i, b, v, s in WORST])
def test_one_step_past_the_limit_is_refused_in_one_line(build, limit, says):
    document = build(limit + 1)
    with hang_guard(), pytest.raises(XmlError) as refused:
        parse_domain(document, limits=LIMITS)
    message = str(refused.value)
    assert says in message
    assert "\n" not in message and len(message) < 200


def wide_elements_in_devices(attributes: int) -> bytes:
    """Every element under <devices> at the attribute limit: what C14N sorts hardest."""
    unit = wide("x", attributes)
    return domain(devices="<disk>" + unit * fill(unit, LIMITS.max_elements - 8, BYTES) + "</disk>")


@pytest.mark.parametrize(("build", "limit"), [
    pytest.param(wide_elements_in_devices, LIMITS.max_attributes, id="attributes-everywhere"),
    pytest.param(elements_in_one_device, LIMITS.max_elements, id="elements-in-one-device"),
    pytest.param(devices, LIMITS.max_devices, id="most-devices"),
    pytest.param(bytes_of_devices, LIMITS.max_xml_bytes, id="most-bytes"),
])
def test_the_devices_digest_of_the_worst_documents_costs_at_most_10x_the_parse(build, limit):
    """What the libvirt source computes for every VM of every poll (canonical.py)."""
    document = build(limit)
    with hang_guard():
        devices_digest(document, limits=LIMITS)
    floor = _best_of_3(lambda: lxml_parse_s([document]))
    digest = _best_of_3(lambda: devices_digest(document, limits=LIMITS))
    assert digest <= RATIO * floor, (
        f"the digest took {digest / floor:.1f}x the lxml parse of the same {len(document)} bytes")


def test_the_devices_digest_refuses_an_element_past_the_attribute_limit():
    with hang_guard(), pytest.raises(XmlError, match="257 attributes, over the limit of 256"):
        devices_digest(wide_elements_in_devices(LIMITS.max_attributes + 1), limits=LIMITS)
