"""Domain XML, read and written: the only package that imports lxml.

``parse_domain`` turns libvirt's XML into typed values (``ParsedDomain``), with a
hardened parser; ``devices_digest`` names a VM's ``<devices>`` by a stable hash.
"""

from monitor.domxml.canonical import devices_digest
from monitor.domxml.parser import parse_domain, parse_file

__all__ = ["devices_digest", "parse_domain", "parse_file"]
