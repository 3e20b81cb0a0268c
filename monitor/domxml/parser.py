"""Domain XML bytes -> ``ParsedDomain``, through a parser that refuses hostile input.

Hardening (docs/operations.md, "Limits"; the configuration is domxml/hardened.py): no DOCTYPE at all (so no entities, no external DTD, no
billion laughs), no network, no huge trees, and the project's own limits on size,
device count and nesting depth. Every failure is one ``XmlError`` with one line.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from monitor.domxml.devices import read_device, read_devices
from monitor.domxml.hardened import new_parser
from monitor.domxml.metadata import read_metadata
from monitor.domxml.vocabulary import DEVICE_TAGS
from monitor.errors import UsageError, XmlError
from monitor.inputfile import read_head, read_or_refuse
from monitor.model.domain import EMPTY_METADATA, ParsedDomain
from monitor.model.ids import normalize_uuid
from monitor.settings import Limits

DEFAULT_LIMITS = Limits()

# lxml parsers must not be shared between threads; the worker parses in several.
_local = threading.local()
_LINE_SUFFIX = re.compile(r",? line \d+, column \d+$")


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = new_parser()
    return parser


_depth_checks: dict[int, etree.XPath] = {}


def _too_deep(root, max_depth: int) -> bool:
    """Whether any element sits deeper than ``max_depth`` (the root is depth 1).

    One compiled location path per limit, evaluated in C: cheaper than walking
    every element from Python, and libxml2 itself stops at 256 levels.
    """
    check = _depth_checks.get(max_depth)
    if check is None:
        check = _depth_checks[max_depth] = etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")
    return bool(check(root))


# Counted in C, in one walk over the tree: a few percent of the parse. Only where the
# document is long enough to hold more than the limit: every element takes at least
# four bytes (``<a/>``), so a Domain XML of ~9 KB is never counted.
_COUNT_ELEMENTS = etree.XPath("count(//*)")
_MIN_ELEMENT_BYTES = 4

_DOCTYPE_REFUSED = "XML with a DOCTYPE is refused (no DTDs, no entities)"
_WIDE_DOCTYPES = tuple(
    "<!DOCTYPE".encode(encoding)
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


def _has_doctype(data: bytes) -> bool:
    """A byte scan for a DOCTYPE, in ASCII-compatible encodings and in UTF-16/32.

    A ``<!DOCTYPE`` inside a comment is refused too: harmless, and never in a Domain XML.
    """
    if b"<!DOCTYPE" in data:
        return True
    if b"\x00" in data[:4]:
        return any(pattern in data for pattern in _WIDE_DOCTYPES)
    return False


def parse_tree(data: bytes, limits: Limits | None = None):
    """The root element of ``data``, or an ``XmlError`` if it is too big, hostile or broken."""
    limits = limits or DEFAULT_LIMITS
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > limits.max_xml_bytes:
        raise XmlError(f"XML is {len(data)} bytes, over the limit of {limits.max_xml_bytes}")
    if _has_doctype(data):
        # Refused before parsing: entity bombs and external DTDs never reach libxml2.
        raise XmlError(_DOCTYPE_REFUSED)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        message = _LINE_SUFFIX.sub("", (error.msg or str(error)).splitlines()[0])
        raise XmlError(f"malformed XML at line {error.lineno}: {message}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        # Defense in depth: a DOCTYPE in an encoding the byte scan does not know.
        raise XmlError(_DOCTYPE_REFUSED)
    if _too_deep(root, limits.max_depth):
        raise XmlError(f"XML nests elements deeper than {limits.max_depth} levels")
    if len(data) // _MIN_ELEMENT_BYTES <= limits.max_elements:
        return root  # too short to hold more elements than the limit: nothing to count
    elements = int(_COUNT_ELEMENTS(root))
    if elements > limits.max_elements:
        raise XmlError(f"XML has {elements} elements, over the limit of {limits.max_elements}")
    return root


def vm_domain(root):
    """The VM's ``<domain>`` element: the root itself, or ``domstatus/domain``."""
    if root.tag == "domain":
        return root
    if root.tag == "domstatus":
        domains = root.findall("domain")
        if len(domains) > 1:
            raise XmlError(f"<domstatus> has {len(domains)} <domain> elements, not one")
        if domains:
            return domains[0]
        raise XmlError("<domstatus> has no <domain> element")
    raise XmlError(f"root element <{root.tag}> is not <domain> or <domstatus>")


def parse_domain(data: bytes, *, limits: Limits | None = None) -> ParsedDomain:
    """Read a ``<domain>``, a ``<domstatus>`` (libvirt's status file) or a lone device.

    In a ``<domstatus>`` the VM's devices are ``domstatus/domain/devices``; the
    top-level ``<devices>`` there is qemu's private data, not the VM's.
    """
    limits = limits or DEFAULT_LIMITS
    root = parse_tree(data, limits)
    tag = root.tag
    if tag == "domain" or tag == "domstatus":
        return _read_domain(vm_domain(root), tag, limits)
    if tag in DEVICE_TAGS:
        return ParsedDomain(None, None, (read_device(root, 0, limits),), EMPTY_METADATA, "device")
    raise XmlError(
        f"root element <{tag}> is not <domain>, <domstatus> or a device element"
    )


# The children of <domain> the engine reads. libvirt writes each at most once; a second
# one would leave the reader to pick (an empty second <devices> unplugged every row).
_READ_CHILDREN = ("uuid", "name", "devices", "metadata")


def _read_domain(domain, source_kind: str, limits: Limits) -> ParsedDomain:
    uuid = name = None
    devices = ()
    metadata = EMPTY_METADATA
    seen = set()
    for child in domain.iterchildren(*_READ_CHILDREN):
        tag = child.tag
        if tag in seen:
            raise XmlError(f"<{domain.tag}> has two <{tag}> elements (libvirt writes one)")
        seen.add(tag)
        if tag == "uuid":
            uuid = normalize_uuid(child.text)
        elif tag == "name":
            name = child.text
            if name is not None and len(name) > limits.max_value_chars:
                raise XmlError(f"<name> is {len(name)} characters, over the limit of "
                               f"{limits.max_value_chars} (max_value_chars)")
        elif tag == "devices":
            devices = read_devices(child, limits)
        else:
            metadata = read_metadata(child, limits)
    return ParsedDomain(uuid, name, devices, metadata, source_kind)


def parse_file(path: str, *, limits: Limits | None = None) -> ParsedDomain:
    """``parse_domain`` of a file; errors name the file, still on one line."""
    limits = limits or DEFAULT_LIMITS
    data = read_xml_file(path, limits)
    try:
        return parse_domain(data, limits=limits)
    except XmlError as error:
        raise XmlError(f"{path}: {error}") from None


def read_xml_file(path: str, limits: Limits | None = None) -> bytes:
    """The bytes of ``path``, reading at most one byte past the size limit."""
    limits = limits or DEFAULT_LIMITS
    return read_or_refuse(lambda: read_head(path, limits.max_xml_bytes), path, UsageError)
