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

from lxml import etree

from monitor.domxml.namespaces import OVIRT_VM, QOS_TAG, VM_TAG
from monitor.model.domain import EMPTY_METADATA, MetadataDevice, MetaValue, VmMetadata

# Elements that hold a mapping or a list even when they are empty (<specParams/>).
_MAPPINGS = frozenset(("custom", "specParams", "vm_custom", "payload"))
_LISTS = frozenset(("volumeChain",))
_MAX_NESTING = 16  # deeper than any oVirt metadata; the parser's limit guards the rest


def read_metadata(metadata) -> VmMetadata:
    """``VmMetadata`` from a ``<metadata>`` element (``None`` -> ``EMPTY_METADATA``)."""
    if metadata is None:
        return EMPTY_METADATA
    vm = metadata.find(VM_TAG)
    qos = metadata.find(QOS_TAG)
    if vm is None and qos is None:
        return EMPTY_METADATA
    values: dict[str, MetaValue] = {}
    custom: dict[str, MetaValue] = {}
    devices: list[MetadataDevice] = []
    for child in _vm_children(vm):
        name = _local_name(child)
        if name == "device":
            devices.append(MetadataDevice(dict(child.attrib), _mapping(child, 1)))
        elif name == "custom":
            custom = _mapping(child, 1)
        else:
            values[name] = _value(child, 1)
    qos_values = _mapping(qos, 1) if qos is not None else {}
    return VmMetadata(values, custom, tuple(devices), qos_values)


def _vm_children(vm):
    if vm is None:
        return
    for child in vm.iterchildren(etree.Element):
        if child.tag[0] != "{" or child.tag.startswith(f"{{{OVIRT_VM}}}"):
            yield child


def _local_name(element) -> str:
    return element.tag.rpartition("}")[2]


def _mapping(element, depth: int) -> dict[str, MetaValue]:
    return {
        _local_name(child): _value(child, depth + 1)
        for child in element.iterchildren(etree.Element)
    }


def _value(element, depth: int) -> MetaValue:
    name = _local_name(element)
    if name in _LISTS:
        return [_mapping(child, depth + 1) for child in element.iterchildren(etree.Element)]
    has_children = next(element.iterchildren(etree.Element), None) is not None
    if name in _MAPPINGS or (has_children and depth < _MAX_NESTING):
        return _mapping(element, depth)
    return read_typed(element.text or "", element.get("type"))


def read_typed(text: str, hint: str | None) -> MetaValue:
    """VDSM's type hint applied to ``text``; what does not fit stays ``text``."""
    stripped = text.strip()
    if hint == "int":
        try:
            return int(stripped)
        except ValueError:
            return text
    if hint == "float":
        try:
            return float(stripped)
        except ValueError:
            return text
    if hint == "bool":
        lowered = stripped.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return text
