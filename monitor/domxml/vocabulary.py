"""The kinds table (monitor/model/kinds.py) compiled to lxml readers, once, at import.

For every tag the table declares, one ``TagReader`` gives a device element's kind and
``device`` (oVirt's vocabulary, docs/architecture.md "Device kinds") and a loader of
its natural key; every path becomes a ``get``/``find`` closure, never an XPath per
property, and a key loader finds the children its fields read in one pass over the
element (a ``find`` per field cost 1.2 µs each: a disk's key 11.6 µs, now 5.4 µs).
Unknown tags are kept, named after themselves, so nothing libvirt reports is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.model import hostaddress
from monitor.model.hostaddress import HostAddress
from monitor.model.ids import normalize_mac, normalize_number
from monitor.model.kinds import KINDS, NO_KEYS, Field, Kind, Norm

Read = Callable[[Any], Any]


def _attribute_names(attributes: str) -> tuple[str, ...]:
    """``@a|@b`` -> ("a", "b")."""
    return tuple(name.lstrip("@") for name in attributes.split("|"))


def _first_attribute(element, names: tuple[str, ...]) -> str | None:
    """The first non-empty of ``element``'s attributes ``names``."""
    return next((value for value in map(element.get, names) if value), None)


def compile_path(path: str) -> Read:
    """``@a`` / ``x/y`` (text) / ``x/@a`` / ``x/@a|@b`` -> element -> str | None."""
    where, _, attribute = path.partition("@")
    where = where.rstrip("/")
    if not attribute:
        return lambda element: element.findtext(where)
    names = _attribute_names(attribute)
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
        return _first_attribute(child, names) if child is not None else None
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


# A field reader takes the device element and its direct children by tag (the first
# child of each tag a kind reads): a kind's children are found in one pass, not one
# ``find`` per field (``find`` runs lxml's path machinery in Python, ~1.2 µs a call).
FieldRead = Callable[[Any, dict], Any]


def _first_step(path: str) -> tuple[str | None, str]:
    """``x`` or ``x/@a|@b`` -> (``x``, the rest); anything else (``@a``, ``x/y``) is read
    from the element itself: (None, ``path``)."""
    where, slash, rest = path.partition("/")
    if where.startswith("@") or (slash and not rest.startswith("@")):
        return None, path
    return where, rest


def _from_child(tag: str, rest: str) -> FieldRead:
    """What ``compile_path`` reads, from the child already found: ``findtext`` (``""``
    for a child without text), or the first non-empty of its attributes."""
    if not rest:
        def text(element, children):
            child = children.get(tag)
            return None if child is None else (child.text or "")
        return text
    names = _attribute_names(rest)
    if len(names) == 1:
        (name,) = names

        def attribute(element, children):
            child = children.get(tag)
            return None if child is None else child.get(name)
        return attribute

    def first_attribute(element, children):
        child = children.get(tag)
        return _first_attribute(child, names) if child is not None else None
    return first_attribute


def compile_field(field: Field) -> tuple[str | None, FieldRead]:
    """One identity field: the child tag it reads (None: the element alone) and
    (element, children) -> its value in comparison form."""
    tag, rest = _first_step(field.path)
    if field.norm is Norm.PRESENT and tag is not None and not rest:
        return tag, lambda element, children: tag in children
    if field.norm is Norm.HOST_ADDRESS and tag is not None and not rest:
        return tag, lambda element, children: host_address(element, children.get(tag))
    if field.norm is Norm.MIB:
        path = field.path

        def size(element, children):
            found = element.find(path)
            return size_in_mib(found.text, found.get("unit")) if found is not None else None
        return None, size
    norm = _TEXT_NORMS.get(field.norm)
    if norm is None:
        raise ValueError(f"{field.name}: {field.norm.value} cannot read {field.path!r}")
    if tag is not None:
        read = _from_child(tag, rest)
    elif field.path.startswith("@") and "|" not in field.path:  # one call, not two
        name = field.path[1:]
        read = lambda element, children: element.get(name)
    else:
        path_read = compile_path(field.path)
        read = lambda element, children: path_read(element)
    if field.norm is Norm.TEXT:
        return tag, read
    return tag, lambda element, children: norm(read(element, children))


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
    """element -> the kind's keys: its children found in one pass, then each field."""
    compiled = [compile_field(field) for field in kind.fields]
    wanted = frozenset(tag for tag, _read in compiled if tag is not None)
    fields = _fields_reader(tuple(read for _tag, read in compiled), kind.keys)
    if not wanted:  # attributes of the element only (a controller): no children read
        return lambda element: fields(element, None)

    def load(element):
        children: dict[str, Any] = {}
        for child in element:
            tag = child.tag  # a comment's or PI's tag is a function: never wanted
            if tag in wanted and tag not in children:
                children[tag] = child
        return fields(element, children)
    return load


def _fields_reader(readers: tuple[FieldRead, ...], make: type) -> FieldRead:
    """(element, children) -> ``make`` of every field; the usual one or two without a loop."""
    if not readers:
        empty = make()
        return lambda element, children: empty
    if len(readers) == 1:
        (read,) = readers
        return lambda element, children: make(read(element, children))
    if len(readers) == 2:
        first, second = readers
        return lambda element, children: make(first(element, children),
                                              second(element, children))
    return lambda element, children: make(*[read(element, children) for read in readers])


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
