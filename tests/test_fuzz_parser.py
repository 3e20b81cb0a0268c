"""Mutated corpus documents through the parser and the pure pipeline after it.

Every input, however broken, either parses to a ``ParsedDomain`` or raises
``XmlError`` with a one-line message; nothing else. A document that parses goes on
through what a tick does with it (natural keys loaded, correlated with the rows of the
unmutated document, the DB changes decided), which must not raise either.

The mutations start from real files of the shared corpus: byte flips, truncations,
inserted text, element shuffles, deletions and duplications, attribute deletions and
hostile values, deep nesting, huge attributes, DOCTYPE and entity injections, other
encodings. Hypothesis runs derandomized with a fixed budget per mutation, so CI sees
the same inputs every time and this file stays within seconds. Each input runs under
a 5 s alarm: a parser that hangs fails instead of stalling CI.
"""

from __future__ import annotations

import random
import signal
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from monitor.domxml.parser import parse_domain
from monitor.errors import XmlError
from monitor.legacy import convert, decide
from monitor.model.domain import ParsedDomain
from monitor.model.kinds import KINDS_BY_TYPE, stored_spec_params
from monitor.model.rows import DeviceRow
from monitor.settings import Limits

pytestmark = pytest.mark.corpus

VM = "6f1d3e4a-0000-4000-8000-00000000c0de"
FOLDERS = ("libvirt/status", "libvirt/hotplug", "libvirt/xml2xml", "libvirt/xmlconf-in", "vdsm")
# Small limits, so that the fuzzer crosses them often (the defaults are tested elsewhere).
LIMITS = Limits(max_xml_bytes=256 * 1024, max_devices=64, max_depth=24)
FUZZ = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW_FUZZ = settings(FUZZ, max_examples=80)  # each input is large: fewer of them
# Only for building mutations of trusted corpus files, never for what is under test.
PLAIN = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@pytest.fixture(scope="module")
def documents(corpus) -> list[bytes]:
    """Every corpus document that the parser accepts as it is, in a stable order."""
    found = []
    for folder in FOLDERS:
        for path in sorted((corpus / folder).rglob("*.xml")):
            data = path.read_bytes()
            try:
                parse_domain(data, limits=LIMITS)
            except XmlError:
                continue
            found.append(data)
    assert len(found) > 1500
    return found


@contextmanager
def hang_guard(seconds: int = 5):
    def expired(signum, frame):
        raise TimeoutError(f"one input took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rows_of(original: bytes) -> list[DeviceRow]:
    """Rows a manager could hold for the unmutated document: one per device it reports."""
    rows = []
    for device in parse_domain(original, limits=LIMITS).devices:
        spec = stored_spec_params(KINDS_BY_TYPE.get(device.type), device.keys)
        device_id = device.alias.user_uuid or f"00000000-0000-4000-8000-{device.position:012d}"
        if any(row.device_id == device_id for row in rows):
            continue
        rows.append(DeviceRow(device_id=device_id, vm_id=VM, type=device.type,
                              device=device.device, address=dict(device.address.attrs),
                              alias=device.alias.name, spec_params=spec,
                              is_managed=device.position % 2 == 0))
    return rows


def survives(data: bytes, original: bytes) -> ParsedDomain | XmlError:
    """The one property: a ParsedDomain that the pure pipeline digests, or an XmlError."""
    rows = rows_of(original)
    with hang_guard():
        try:
            parsed = parse_domain(data, limits=LIMITS)
        except XmlError as error:
            message = str(error)
            assert message and "\n" not in message, repr(message)
            return error
        assert isinstance(parsed, ParsedDomain)
        assert len(parsed.devices) <= LIMITS.max_devices
        for device in parsed.devices:
            assert device.keys is not None  # the lazy loader runs on the hostile element
        decide(convert(VM, parsed, rows), rows)
    return parsed


def pick(data: st.DataObject, documents: list[bytes]) -> bytes:
    return documents[data.draw(st.integers(0, len(documents) - 1), label="document")]


# --- byte-level mutations ---------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_flipped_bytes(documents, data):
    original = pick(data, documents)
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.sampled_from([0, 0x26, 0x3C, 0x3E, 0x22, 0x80, 0xFF,
                                                 mutated[at] ^ 0x20]))
    survives(bytes(mutated), original)


@FUZZ
@given(data=st.data())
def test_truncated(documents, data):
    original = pick(data, documents)
    cut = data.draw(st.integers(0, len(original)), label="cut")
    survives(original[:cut], original)


@FUZZ
@given(data=st.data())
def test_random_unicode_spliced_in(documents, data):
    original = pick(data, documents)
    at = data.draw(st.integers(0, len(original)), label="at")
    text = data.draw(st.text(min_size=1, max_size=40), label="text")
    encoded = text.encode("utf-8", "surrogatepass")
    survives(original[:at] + encoded + original[at:], original)


# --- tree-level mutations -----------------------------------------------------------


def tree(original: bytes):
    return etree.fromstring(original, PLAIN)


def elements(root) -> list:
    return [element for element in root.iter() if isinstance(element.tag, str)]


HOSTILE_VALUES = [
    "", " ", "ua-", "ua-" + "0" * 36, "ua-ZZZZZZZZ-0000-4000-8000-000000000000",
    "0x", "0xZZ", "-1", "99999999999999999999999999", "1e400", "NaN", "\u202e\u0000",
    "52:54:00:00:00:01", "52-54-00-00-00-01", "\U0001F600" * 50, "&amp;", "<", "x" * 5000,
]


def mutate_tree(root, rng: random.Random, draw_value) -> None:
    """One structural change at a random element."""
    everything = elements(root)
    element = rng.choice(everything)
    parent = element.getparent()
    action = rng.choice(["shuffle", "delete", "duplicate", "drop-attr", "set-attr",
                         "move", "text", "strip-children"])
    if action == "shuffle":
        children = list(element)
        rng.shuffle(children)
        element[:] = children
    elif action == "delete" and parent is not None:
        parent.remove(element)
    elif action == "duplicate" and parent is not None:
        parent.insert(parent.index(element), _copy(element))
    elif action == "drop-attr" and element.attrib:
        del element.attrib[rng.choice(sorted(element.attrib))]
    elif action == "set-attr":
        name = rng.choice(sorted(element.attrib) or ["name", "index", "type", "address"])
        element.set(name, draw_value())
    elif action == "move" and parent is not None:
        target = rng.choice(everything)
        if element not in target.iterancestors() and target is not element:
            target.append(element)
    elif action == "text":
        element.text = draw_value()
    elif action == "strip-children":
        element[:] = []


def _copy(element):
    from copy import deepcopy

    return deepcopy(element)


def xml_safe(text: str) -> str:
    """What lxml lets us put in an attribute or text: no control characters or surrogates."""
    return "".join(c for c in text if c in "\t\n\r" or (" " <= c <= "\ud7ff")
                   or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000")


@FUZZ
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_elements_and_attributes_shuffled_deleted_and_rewritten(documents, data, rng):
    original = pick(data, documents)
    root = tree(original)

    def draw_value() -> str:
        return xml_safe(data.draw(st.one_of(st.sampled_from(HOSTILE_VALUES),
                                            st.text(max_size=20)), label="value"))

    for _ in range(data.draw(st.integers(1, 6), label="changes")):
        mutate_tree(root, rng, draw_value)
    survives(etree.tostring(root), original)


@SLOW_FUZZ
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_deep_nesting(documents, data, rng):
    original = pick(data, documents)
    root = tree(original)
    depth = data.draw(st.sampled_from([LIMITS.max_depth - 3, LIMITS.max_depth - 1,
                                       LIMITS.max_depth, LIMITS.max_depth + 1, 255, 257,
                                       600]), label="depth")
    anchor = rng.choice(elements(root))
    for _ in range(depth):
        anchor = etree.SubElement(anchor, rng.choice(["disk", "address", "x", "devices"]))
    survives(etree.tostring(root), original)


@SLOW_FUZZ
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_huge_attribute_values_and_many_devices(documents, data, rng):
    original = pick(data, documents)
    root = tree(original)
    size = data.draw(st.sampled_from([1000, 100_000, LIMITS.max_xml_bytes + 1]),
                     label="size")
    rng.choice(elements(root)).set(data.draw(st.sampled_from(["name", "alias", "x"])),
                                   "A" * size)
    devices = root.find(".//devices")
    if devices is not None and len(devices) and data.draw(st.booleans(), label="many"):
        copies = data.draw(st.sampled_from([LIMITS.max_devices - 1, LIMITS.max_devices + 1]))
        template = rng.choice(list(devices))
        devices.extend(_copy(template) for _ in range(copies))
    survives(etree.tostring(root), original)


# --- injections and encodings -------------------------------------------------------

INJECTIONS = [
    b'<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    b'<!DOCTYPE domain SYSTEM "file:///etc/passwd">',
    b'<!DOCTYPE domain [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    b"<!ENTITY x 'y'>",
    b"&xxe;", b"&a;", b"&#0;", b"&#x110000;", b"&#xD800;", b"&lt;&gt;&amp;&quot;&apos;",
    b"<![CDATA[<disk/>]]>", b"<?php echo 1; ?>", b"<!-- <!DOCTYPE x> -->",
    b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>',
    b'<?xml-stylesheet href="http://127.0.0.1:9/x.xsl"?>',
    b"\xef\xbb\xbf", b"\x00", b"]]>",
]


@FUZZ
@given(data=st.data())
def test_doctype_and_entity_injections(documents, data):
    original = pick(data, documents)
    injection = data.draw(st.sampled_from(INJECTIONS), label="injection")
    at = data.draw(st.sampled_from(["start", "after-root-tag", "anywhere"]), label="where")
    if at == "start":
        mutated = injection + original
    elif at == "after-root-tag":
        end = original.find(b">", original.find(b"<domain") if b"<domain" in original else 0)
        mutated = original[:end + 1] + injection + original[end + 1:]
    else:
        position = data.draw(st.integers(0, len(original)))
        mutated = original[:position] + injection + original[position:]
    result = survives(mutated, original)
    if b"<!DOCTYPE" in injection:
        assert isinstance(result, XmlError)


ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "ascii"]


@FUZZ
@given(data=st.data())
def test_other_encodings_with_and_without_a_declaration(documents, data):
    original = pick(data, documents)
    encoding = data.draw(st.sampled_from(ENCODINGS), label="encoding")
    text = original.decode("utf-8")
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2:]
    declare = data.draw(st.sampled_from([None, encoding, "utf-8", "no-such-encoding"]),
                        label="declared")
    if declare is not None:
        text = f'<?xml version="1.0" encoding="{declare}"?>' + text
    if data.draw(st.booleans(), label="doctype"):
        text = text.replace("<domain", '<!DOCTYPE domain [<!ENTITY e "e">]><domain', 1)
    mutated = text.encode(encoding, "replace")
    result = survives(mutated, original)
    if "<!DOCTYPE" in text:
        assert isinstance(result, XmlError)


def test_the_fuzzer_reaches_both_outcomes(documents):
    """A guard on the harness itself: some mutations parse and some are refused."""
    original = documents[0]
    assert isinstance(survives(original, original), ParsedDomain)
    assert isinstance(survives(original[: len(original) // 2], original), XmlError)

