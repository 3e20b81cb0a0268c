"""The oVirt ``<metadata>`` of a domain -> ``VmMetadata``.

oVirt writes two elements into libvirt's ``<metadata>``: ``vm`` in
``http://ovirt.org/vm/1.0`` and ``qos`` in ``http://ovirt.org/vm/tune/1.0``. They are
found by namespace URI, whatever prefix libvirt or the engine chose (``ovirt-vm:``,
``ns0:``, ...). Inside ``vm`` the engine (4.2) writes some children without a
namespace at all, so both are read. Other applications' metadata is ignored.

Values carry VDSM's type hints (``type="int"|"float"|"bool"``); a value that does
not fit its hint stays the text it was, never an error.
"""

from __future__ import annotations

import math

from lxml import etree

from monitor.domxml.attributes import attributes
from monitor.domxml.namespaces import OVIRT_VM, QOS_TAG, VM_TAG
from monitor.errors import XmlError
from monitor.model.domain import EMPTY_METADATA, MetadataDevice, MetaValue, VmMetadata
from monitor.model.ids import MAX_NUMBER_CHARS
from monitor.settings import Limits

_VM_PREFIX = f"{{{OVIRT_VM}}}"

# Elements that hold a mapping or a list even when they are empty (<specParams/>).
_MAPPINGS = frozenset(("custom", "specParams", "vm_custom", "payload"))
_LISTS = frozenset(("volumeChain",))
_MAX_NESTING = 16  # deeper than any oVirt metadata; the parser's limit guards the rest


class _Reader:
    """One ``<metadata>`` read once: every element it holds costs one visit.

    The metadata is the one part of a document read element by element in Python, so
    a visit is kept to a few lxml calls (``len()`` counts children in C; a tag's local
    name is cut once per document) and everything else is inlined: this loop sets
    the cost of the worst document inside the limits (tests/test_worst_documents.py).
    Its texts and attributes are bounded by the limits (docs/operations.md "Limits").
    """

    __slots__ = ("limits", "names")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.names: dict[str, str] = {}  # tag -> local name, for this document only

    def local_name(self, tag: str) -> str:
        name = self.names.get(tag)
        if name is None:
            name = self.names[tag] = tag.rpartition("}")[2]
        return name

    def mapping(self, element, depth: int) -> dict[str, MetaValue]:
        """``element``'s children by local name; ``element`` sits at ``depth``."""
        names = self.names
        found: dict[str, MetaValue] = {}
        depth += 1
        for child in element:
            tag = child.tag
            if tag.__class__ is not str:
                continue  # comments and PIs have a function for a tag
            name = names.get(tag) or self.local_name(tag)
            if name in _LISTS or name in _MAPPINGS or (depth < _MAX_NESTING and len(child)):
                found[name] = self.value(child, name, depth)
                continue
            text = child.text
            found[name] = self.text(child, name, text) if text else ""
        return found

    def value(self, element, name: str, depth: int) -> MetaValue:
        if name in _LISTS:
            return [self.mapping(child, depth + 1)
                    for child in element.iterchildren(etree.Element)]
        if name in _MAPPINGS:
            return self.mapping(element, depth)
        if depth < _MAX_NESTING and len(element):
            found = self.mapping(element, depth)
            if found:
                return found  # children that are only comments leave the text
        text = element.text
        return self.text(element, name, text) if text else ""

    def text(self, element, name: str, text: str) -> MetaValue:
        if len(text) > self.limits.max_text_chars:
            raise XmlError(f"metadata <{name[:40]}> holds {len(text)} characters, over the "
                           f"limit of {self.limits.max_text_chars} (max_text_chars)")
        return read_typed(text, element.get("type"))


def read_metadata(metadata, limits: Limits | None = None) -> VmMetadata:
    """``VmMetadata`` from a ``<metadata>`` element (``None`` -> ``EMPTY_METADATA``)."""
    if metadata is None:
        return EMPTY_METADATA
    vm = metadata.find(VM_TAG)
    qos = metadata.find(QOS_TAG)
    if vm is None and qos is None:
        return EMPTY_METADATA
    limits = limits or Limits()
    reader = _Reader(limits)
    values: dict[str, MetaValue] = {}
    custom: dict[str, MetaValue] = {}
    devices: list[MetadataDevice] = []
    names = reader.names
    for child in vm if vm is not None else ():
        tag = child.tag
        if tag.__class__ is not str or (tag[0] == "{" and not tag.startswith(_VM_PREFIX)):
            continue  # a comment, a PI, or another namespace's element inside ours
        name = names.get(tag) or reader.local_name(tag)
        if name == "device":
            attrs = dict(attributes(child, limits.max_attributes))
            devices.append(MetadataDevice(attrs, reader.mapping(child, 1)))
        elif name == "custom":
            custom = reader.mapping(child, 1)
        elif not len(child) and name not in _LISTS and name not in _MAPPINGS:
            text = child.text  # a leaf, as most values are: read here, not in a call
            values[name] = reader.text(child, name, text) if text else ""
        else:
            values[name] = reader.value(child, name, 1)
    qos_values = reader.mapping(qos, 1) if qos is not None else {}
    return VmMetadata(values, custom, tuple(devices), qos_values)


def read_typed(text: str, hint: str | None) -> MetaValue:
    """VDSM's type hint applied to ``text``; what does not fit stays ``text``.

    A float must be finite: ``nan`` or ``inf`` stays text, since JSON has no such
    number and the stored documents must stay valid JSON.
    """
    if hint is None:
        return text
    stripped = text.strip()
    if len(stripped) > MAX_NUMBER_CHARS:
        return text  # no number VDSM writes is this long (int() of it is quadratic)
    if hint == "int":
        try:
            return int(stripped)
        except ValueError:
            return text
    if hint == "float":
        try:
            number = float(stripped)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    if hint == "bool":
        lowered = stripped.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return text
