"""A stable name for a VM's devices: sha256 of the canonical ``<devices>`` element.

libvirt has no devices hash, so the libvirt host source computes one from the XML it
dumps (BRIEF section 2). The digest must not change when only the formatting does
(indentation, attribute order, quoting, namespace prefixes declared elsewhere,
comments) and must change when any device does. Exclusive C14N gives the first
three; whitespace-only text is dropped before it, and comments are left out.
"""

from __future__ import annotations

import hashlib

from lxml import etree

from monitor.domxml.parser import parse_tree, vm_domain
from monitor.settings import Limits


def devices_digest(data: bytes, *, limits: Limits | None = None) -> str:
    """Hex sha256 of the canonical form of ``domain/devices`` (or ``domstatus/domain/devices``).

    A domain without ``<devices>`` digests like an empty ``<devices/>``.
    """
    domain = vm_domain(parse_tree(data, limits))
    devices = domain.find("devices")
    if devices is None:
        devices = etree.Element("devices")
    return hashlib.sha256(canonical_devices(devices)).hexdigest()


def canonical_devices(devices) -> bytes:
    """Exclusive C14N of ``devices`` with whitespace-only text removed (mutates the tree)."""
    for element in devices.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    devices.tail = None
    return etree.tostring(devices, method="c14n", exclusive=True, with_comments=False)
