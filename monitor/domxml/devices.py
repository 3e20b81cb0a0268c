"""One child of ``<devices>`` -> ``ReportedDevice``, and its natural keys on demand.

The hot path (``read_device``) reads the tag, the kind, the alias and the address
and nothing else; every device costs one walk over its direct children. Natural
keys are read later, and only for the devices the alias rules leave open, by the
loader the kinds table compiles for the element's kind (``domxml/vocabulary.py``).
"""

from __future__ import annotations

from lxml import etree

from monitor.domxml.attributes import NARROW, attributes
from monitor.domxml.vocabulary import READERS_BY_TAG
from monitor.errors import XmlError
from monitor.model.address import EMPTY_ADDRESS, Address
from monitor.model.alias import NO_ALIAS, Alias
from monitor.model.device import ReportedDevice
from monitor.settings import Limits

DEFAULT_LIMITS = Limits()


def read_devices(devices, limits: Limits) -> tuple[ReportedDevice, ...]:
    """Every element child of ``<devices>``, in order; comments and PIs are skipped."""
    found = []
    append = found.append
    max_devices = limits.max_devices
    for position, element in enumerate(devices.iterchildren(etree.Element)):
        if position == max_devices:
            raise XmlError(f"more than {max_devices} devices in <devices>")
        append(read_device(element, position, limits))
    return tuple(found)


def read_device(element, position: int, limits: Limits = DEFAULT_LIMITS) -> ReportedDevice:
    tag = element.tag
    read = READERS_BY_TAG.get(tag)
    if read is not None:
        reader, device = read(element)
        type_, loader = reader.type, reader.keys
    else:
        type_ = device = tag
        loader = None
    alias = NO_ALIAS
    address = EMPTY_ADDRESS
    max_value = limits.max_value_chars
    # Direct children only: hostdev/source/address is the host side, not the guest's.
    # One plain loop is cheaper than iterchildren(tags) or two find() calls.
    for child in element:
        child_tag = child.tag
        if child_tag == "alias":
            if alias is NO_ALIAS:
                name = child.get("name")
                if name is not None and len(name) > max_value:
                    raise _unstorable(tag, position, "alias", len(name), max_value)
                alias = parse_alias(name)
        elif child_tag == "address" and address is EMPTY_ADDRESS:
            # items() for the few attributes libvirt writes (the cheapest call), the
            # linear reader for more (domxml/attributes.py); both bounded.
            pairs = (child.items() if len(child.attrib) <= NARROW
                     else attributes(child, limits.max_attributes))
            for _, value in pairs:
                if len(value) > max_value:
                    raise _unstorable(tag, position, "address attribute", len(value), max_value)
            address = Address(pairs)
    if len(type_) > max_value or len(device) > max_value:
        raise _unstorable(tag, position, "type", max(len(type_), len(device)), max_value)
    return ReportedDevice(tag, type_, device, alias, address, position, None, loader, element)


def _unstorable(tag: str, position: int, what: str, length: int, max_value: int) -> XmlError:
    """The one-line refusal of a value no row can hold (docs/operations.md "Limits")."""
    return XmlError(f"device #{position} <{tag[:40]}>: its {what} is {length} characters, "
                    f"over the limit of {max_value} (max_value_chars)")


# libvirt's aliases repeat on every poll of every VM (net0, virtio-disk0, pci.1) and an
# Alias is immutable: parse each such name once. A ``ua-`` alias names one device of
# one VM: a fleet has more of them than any bounded memory holds (10,000 VMs, 200,000
# names), so caching them would only churn; they are parsed each time (a regex match).
# Bounded, so a stream of distinct names cannot grow it without limit.
_aliases_by_name: dict[str, Alias] = {}
_MAX_REMEMBERED_ALIASES = 65536


def parse_alias(name: str | None) -> Alias:
    alias = _aliases_by_name.get(name)  # type: ignore[arg-type]
    if alias is None:
        alias = Alias.parse(name)
        if alias.user_uuid is None:
            if len(_aliases_by_name) >= _MAX_REMEMBERED_ALIASES:
                _aliases_by_name.clear()
            _aliases_by_name[name] = alias  # type: ignore[index]
    return alias
