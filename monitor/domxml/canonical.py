"""A stable name for a VM's devices: sha256 of the canonical ``<devices>`` element.

libvirt has no devices hash, so the libvirt host source computes one from the XML it
dumps (docs/architecture.md, "Host sources"). The digest must not change when only the formatting does
(indentation, attribute order, quoting, namespace prefixes declared elsewhere,
comments) and must change when any device does. Exclusive C14N gives the first
three; whitespace-only text is dropped before it, and comments are left out.
"""

from __future__ import annotations

import hashlib

from lxml import etree

from monitor.domxml.parser import DEFAULT_LIMITS, parse_tree, vm_domain
from monitor.errors import XmlError
from monitor.settings import Limits


def devices_digest(data: bytes, *, limits: Limits | None = None) -> str:
    """Hex sha256 of the canonical form of ``domain/devices`` (or ``domstatus/domain/devices``).

    A domain without ``<devices>`` digests like an empty ``<devices/>``.
    """
    limits = limits or DEFAULT_LIMITS
    domain = vm_domain(parse_tree(data, limits))
    devices = domain.find("devices")
    if devices is None:
        devices = etree.Element("devices")
    return hashlib.sha256(canonical_devices(devices, limits.max_attributes)).hexdigest()


def canonical_devices(devices, max_attributes: int) -> bytes:
    """Exclusive C14N of ``devices`` with whitespace-only text removed (mutates the tree).

    libxml2's C14N sorts each element's attributes by insertion into a list, in time
    quadratic in their number (32,000 on one element took 17 s), so every element here
    is held to ``max_attributes`` first (counted in C, docs/operations.md "Limits").
    """
    for element in devices.iter():
        if len(element.attrib) > max_attributes:
            raise XmlError(f"<{str(element.tag)[:40]}> has {len(element.attrib)} attributes, "
                           f"over the limit of {max_attributes}")
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    devices.tail = None
    return etree.tostring(devices, method="c14n", exclusive=True, with_comments=False)
