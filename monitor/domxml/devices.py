"""One child of ``<devices>`` -> ``ReportedDevice``, and its natural keys on demand.

The hot path (``read_device``) reads the tag, the kind, the alias and the address
and nothing else; every device costs one walk over its direct children. Natural
keys are read later, and only for the devices the alias rules leave open, by a
loader bound to the element (``find``/``get``, never an XPath per property).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from lxml import etree

from monitor.domxml.vocabulary import SINGLETON_TAGS, kind_of, model_of
from monitor.errors import XmlError
from monitor.model import hostaddress
from monitor.model.address import EMPTY_ADDRESS, Address
from monitor.model.alias import NO_ALIAS, Alias
from monitor.model.device import NaturalKeys, ReportedDevice
from monitor.model.hostaddress import HostAddress
from monitor.model.ids import normalize_mac, normalize_number


def read_devices(devices, max_devices: int) -> tuple[ReportedDevice, ...]:
    """Every element child of ``<devices>``, in order; comments and PIs are skipped."""
    found = []
    append = found.append
    for position, element in enumerate(devices.iterchildren(etree.Element)):
        if position == max_devices:
            raise XmlError(f"more than {max_devices} devices in <devices>")
        append(read_device(element, position))
    return tuple(found)


def read_device(element, position: int) -> ReportedDevice:
    tag = element.tag
    type_, device = kind_of(tag, element)
    alias = NO_ALIAS
    address = EMPTY_ADDRESS
    # Direct children only: hostdev/source/address is the host side, not the guest's.
    # One plain loop is cheaper than iterchildren(tags) or two find() calls.
    for child in element:
        child_tag = child.tag
        if child_tag == "alias":
            if alias is NO_ALIAS:
                alias = parse_alias(child.get("name"))
        elif child_tag == "address" and address is EMPTY_ADDRESS:
            address = Address(child.items())
    reader = _KEY_READERS.get(tag)
    loader = partial(reader, element) if reader is not None else None
    return ReportedDevice(tag, type_, device, alias, address, position, None, loader)


# Aliases repeat on every poll of a VM (and libvirt's across VMs: net0, virtio-disk0),
# and an Alias is immutable: parse each name once. Bounded, so a stream of distinct
# names cannot grow it without limit.
_aliases_by_name: dict[str, Alias] = {}
_MAX_REMEMBERED_ALIASES = 65536


def parse_alias(name: str | None) -> Alias:
    alias = _aliases_by_name.get(name)  # type: ignore[arg-type]
    if alias is None:
        alias = Alias.parse(name)
        if len(_aliases_by_name) >= _MAX_REMEMBERED_ALIASES:
            _aliases_by_name.clear()
        _aliases_by_name[name] = alias  # type: ignore[index]
    return alias


# --- natural keys, one reader per kind --------------------------------------------


def _interface_keys(element) -> NaturalKeys:
    mac = element.find("mac")
    text = mac.get("address") if mac is not None else None
    host = None
    if element.get("type") == "hostdev":
        host = _pci_source(element.find("source/address"))
    return NaturalKeys(mac=normalize_mac(text) or text, host_address=host)


_SOURCE_ATTRIBUTES = ("file", "dev", "dir", "volume", "name", "path")


def _disk_keys(element) -> NaturalKeys:
    source = element.find("source")
    path = None
    if source is not None:
        path = next((source.get(a) for a in _SOURCE_ATTRIBUTES if source.get(a)), None)
    target = element.find("target")
    serial = element.findtext("serial")
    return NaturalKeys(
        serial=serial.strip() if serial else None,
        source=path,
        target_dev=target.get("dev") if target is not None else None,
        target_bus=target.get("bus") if target is not None else None,
        readonly=element.find("readonly") is not None,
    )


def _pci_source(address) -> HostAddress | None:
    if address is None:
        return None
    return hostaddress.pci(
        address.get("domain"), address.get("bus"), address.get("slot"), address.get("function")
    )


def _scsi_source(source) -> HostAddress | None:
    adapter = source.find("adapter")
    address = source.find("address")
    if adapter is None or address is None:
        return None  # iSCSI hostdevs name a remote target, not a host adapter
    host = (adapter.get("name") or "").removeprefix("scsi_host")
    return hostaddress.scsi(host, address.get("bus"), address.get("target"), address.get("unit"))


def _hostdev_keys(element) -> NaturalKeys:
    source = element.find("source")
    if source is None:
        return NaturalKeys()
    kind = element.get("type")
    address = source.find("address")
    host = None
    if kind == "pci":
        host = _pci_source(address)
    elif kind == "usb" and address is not None:
        host = hostaddress.usb(address.get("bus"), address.get("device"))
    elif kind == "scsi":
        host = _scsi_source(source)
    elif kind == "mdev" and address is not None:
        host = hostaddress.mdev(address.get("uuid"))
    return NaturalKeys(host_address=host)


def _controller_keys(element) -> NaturalKeys:
    return NaturalKeys(
        controller_type=element.get("type"),
        controller_index=normalize_number(element.get("index")),
        controller_model=element.get("model"),
    )


def _memory_keys(element) -> NaturalKeys:
    target = element.find("target")
    node = size = None
    if target is not None:
        node = normalize_number(target.findtext("node"))
        size_element = target.find("size")
        if size_element is not None:
            size = size_in_mib(size_element.text, size_element.get("unit"))
    return NaturalKeys(memory_model=element.get("model"), memory_node=node, memory_size_mib=size)


def _channel_keys(element) -> NaturalKeys:
    target = element.find("target")
    if target is None:
        return NaturalKeys()
    return NaturalKeys(
        channel_target_type=target.get("type"), channel_target_name=target.get("name")
    )


def _singleton_keys(tag: str, element) -> NaturalKeys:
    return NaturalKeys(model=model_of(tag, element))


_KEY_READERS: dict[str, Callable[..., NaturalKeys]] = {
    **{tag: partial(_singleton_keys, tag) for tag in SINGLETON_TAGS},
    "interface": _interface_keys,
    "disk": _disk_keys,
    "hostdev": _hostdev_keys,
    "controller": _controller_keys,
    "memory": _memory_keys,
    "channel": _channel_keys,
}


# libvirt's scaled units (virScaleInteger): "KB" is 1000, "KiB" and "k" are 1024.
_UNIT_BYTES = {"b": 1, "bytes": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _UNIT_BYTES[_letter] = _UNIT_BYTES[_letter + "ib"] = 1024**_power
    _UNIT_BYTES[_letter + "b"] = 1000**_power
_MIB = 1024 * 1024


def size_in_mib(text: str | None, unit: str | None) -> int | str | None:
    """A libvirt size in whole MiB (unit KiB when absent); what does not fit stays text.

    A size that is not a whole number of MiB stays text too: a DIMM row stores whole
    MiB, so rounding would make two different sizes look equal.
    """
    if text is None:
        return None
    number = normalize_number(text)
    factor = _UNIT_BYTES.get((unit or "KiB").strip().lower())
    if not isinstance(number, int) or factor is None:
        return text
    size_bytes = number * factor
    return size_bytes // _MIB if size_bytes % _MIB == 0 else text
