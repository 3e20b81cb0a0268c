"""The kinds table (monitor/model/kinds.py) compiled to lxml readers, once, at import.

For every tag the table declares, one ``TagReader`` gives a device element's kind and
``device`` (oVirt's vocabulary, docs/architecture.md "Device kinds") and a loader of
its natural key; every path becomes a ``get``/``find`` closure, never an XPath per
property. Unknown tags are kept, named after themselves, so nothing libvirt reports
is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.model import hostaddress
from monitor.model.hostaddress import HostAddress
from monitor.model.ids import normalize_mac, normalize_number
from monitor.model.kinds import KINDS, NO_KEYS, Field, Kind, Norm

Read = Callable[[Any], Any]


def compile_path(path: str) -> Read:
    """``@a`` / ``x/y`` (text) / ``x/@a`` / ``x/@a|@b`` -> element -> str | None."""
    where, _, attribute = path.partition("@")
    where = where.rstrip("/")
    if not attribute:
        return lambda element: element.findtext(where)
    names = tuple(name.lstrip("@") for name in attribute.split("|"))
    if len(names) == 1:
        name = names[0]
        if not where:
            return lambda element: element.get(name)

        def child_attribute(element):
            child = element.find(where)
            return child.get(name) if child is not None else None
        return child_attribute

    def first_attribute(element):
        child = element.find(where) if where else element
        if child is None:
            return None
        return next((value for value in map(child.get, names) if value), None)
    return first_attribute


# --- normalizations ------------------------------------------------------------------


def _mac(text: str | None) -> str | None:
    return normalize_mac(text) or text


def _stripped(text: str | None) -> str | None:
    return text.strip() if text else None


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


def host_address(element, source) -> HostAddress | None:
    """The host-side address in ``source``, read as the element's ``@type`` says."""
    if source is None:
        return None
    kind = element.get("type")
    address = source.find("address")
    if kind == "pci":
        return _pci_source(address)
    if kind == "usb" and address is not None:
        return hostaddress.usb(address.get("bus"), address.get("device"))
    if kind == "scsi":
        return _scsi_source(source)
    if kind == "mdev" and address is not None:
        return hostaddress.mdev(address.get("uuid"))
    return None


_TEXT_NORMS: dict[Norm, Callable[[Any], Any]] = {
    Norm.TEXT: lambda text: text,
    Norm.STRIPPED: _stripped,
    Norm.MAC: _mac,
    Norm.NUMBER: normalize_number,
}


def compile_field(field: Field) -> Read:
    """One identity field: element -> its value in comparison form."""
    if field.norm is Norm.PRESENT:
        path = field.path
        return lambda element: element.find(path) is not None
    if field.norm is Norm.HOST_ADDRESS:
        path = field.path
        return lambda element: host_address(element, element.find(path))
    if field.norm is Norm.MIB:
        path = field.path

        def size(element):
            found = element.find(path)
            return size_in_mib(found.text, found.get("unit")) if found is not None else None
        return size
    read, norm = compile_path(field.path), _TEXT_NORMS[field.norm]
    if field.norm is Norm.TEXT:
        return read
    if field.path.startswith("@") and "|" not in field.path:  # one call, not two
        name = field.path[1:]
        return lambda element: norm(element.get(name))
    return lambda element: norm(read(element))


# --- one reader per tag --------------------------------------------------------------


def _device_reader(kind: Kind) -> Callable[[Any], str]:
    otherwise = kind.fixed if kind.fixed is not None else kind.tag
    read = compile_path(kind.device) if kind.device else None
    cases = tuple((compile_path(path), value, device) for path, value, device in kind.cases)

    def device(element) -> str:
        for read_case, value, found in cases:
            if read_case(element) == value:
                return found
        return (read(element) if read is not None else None) or otherwise
    return device


def _key_loader(kind: Kind) -> Callable[[Any], Any]:
    readers = tuple(compile_field(field) for field in kind.fields)
    make = kind.keys
    if not readers:
        empty = make()
        return lambda element: empty
    if len(readers) == 1:
        (read,) = readers
        return lambda element: make(read(element))
    if len(readers) == 2:
        first, second = readers
        return lambda element: make(first(element), second(element))
    return lambda element: make(*[read(element) for read in readers])


class KindReader:
    """One kind of a tag, compiled: its ``device`` and its natural-key loader."""

    __slots__ = ("kind", "type", "device", "keys")

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.type = kind.type
        self.device = _device_reader(kind)
        self.keys = _key_loader(kind)


def _attribute(path: str) -> bool:
    return path.startswith("@") and "|" not in path


def _single(reader: KindReader) -> Callable[[Any], tuple[KindReader, str]]:
    """The only kind of its tag; the common ``@attr``/fixed cases without a loop."""
    kind = reader.kind
    otherwise = kind.fixed if kind.fixed is not None else kind.tag
    if not kind.cases and not kind.device:
        pair = (reader, otherwise)
        return lambda element: pair
    if not kind.cases and kind.device.startswith("@") and "|" not in kind.device:
        name = kind.device[1:]
        return lambda element: (reader, element.get(name) or otherwise)
    if len(kind.cases) == 1 and _attribute(kind.cases[0][0]) and (
            not kind.device or _attribute(kind.device)):  # controller, interface
        ((path, value, found),) = kind.cases
        case, name = path[1:], kind.device[1:] or None
        found_pair, fixed_pair = (reader, found), (reader, otherwise)

        def one_case(element):
            if element.get(case) == value:
                return found_pair
            return (reader, element.get(name) or otherwise) if name else fixed_pair
        return one_case
    device = reader.device
    return lambda element: (reader, device(element))


def _tag_reader(readers: list[tuple[tuple[str, str] | None, KindReader]]):
    """The tag's kind and device: the first kind whose ``when`` holds, else the kind
    without ``when``."""
    default = _single(next(reader for when, reader in readers if when is None))
    special = tuple((compile_path(path), value, _single(reader))
                    for when, reader in readers if when is not None for path, value in [when])
    if not special:
        return default

    def choose(element) -> tuple[KindReader, str]:
        for read, value, found in special:
            if read(element) == value:
                return found(element)
        return default(element)
    return choose


def _by_tag() -> dict[str, Callable[[Any], tuple[KindReader, str]]]:
    grouped: dict[str, list[tuple[tuple[str, str] | None, KindReader]]] = {}
    for kind in KINDS:
        grouped.setdefault(kind.tag, []).append((kind.when, KindReader(kind)))
    return {tag: _tag_reader(readers) for tag, readers in grouped.items()}


# tag -> element -> (its kind's compiled reader, its device): one call per device.
READERS_BY_TAG = _by_tag()


def kind_of(tag: str, element) -> tuple[str, str]:
    """The (type, device) pair of one device element; unknown tags name themselves."""
    read = READERS_BY_TAG.get(tag)
    if read is None:
        return (tag, tag)
    reader, device = read(element)
    return reader.type, device


def keys_of(tag: str, element):
    read = READERS_BY_TAG.get(tag)
    return read(element)[0].keys(element) if read is not None else NO_KEYS


# libvirt's children of <devices> (domaincommon.rng): a document whose root is one of
# these is read as a lone device, as libvirt's hot-plug tests and attach-device use it.
DEVICE_TAGS = frozenset(
    ("emulator", "disk", "controller", "lease", "filesystem", "interface", "input", "sound",
     "audio", "hostdev", "graphics", "video", "console", "serial", "parallel", "channel",
     "smartcard", "redirdev", "redirfilter", "hub", "watchdog", "memballoon", "rng", "tpm",
     "shmem", "memory", "iommu", "vsock", "panic", "crypto", "pstore", "nvram")
)
