"""Every attribute of one element, read in time linear in their number.

lxml's ``items()``, ``values()`` and ``dict(element.attrib)`` look each value up by
name (libxml2's ``xmlGetNsProp`` walks the element's attribute list from its start),
so reading N attributes costs N^2/2 comparisons: 200,000 attributes on one
``<address>`` took minutes. ``keys()`` and the XPath ``@*`` walk the list once and in
the same order, so a wide element is read by zipping the two. A narrow one (every
element libvirt writes) keeps ``items()``, the cheapest call for a handful.

The number of attributes is bounded too (``Limits.max_attributes``,
docs/operations.md "Limits"), counted in C before anything is read.
"""

from __future__ import annotations

from lxml import etree

from monitor.errors import XmlError

_ALL_VALUES = etree.XPath("@*", smart_strings=False)
NARROW = 16  # up to this many, items() is quicker than two walks (and never a limit)


def attributes(element, max_attributes: int) -> list[tuple[str, str]]:
    """``element``'s (name, value) pairs in document order; ``XmlError`` past the limit."""
    count = len(element.attrib)
    if count <= NARROW and count <= max_attributes:
        return element.items()
    if count > max_attributes:
        raise XmlError(f"<{_local_name(element)}> has {count} attributes, over the limit "
                       f"of {max_attributes}")
    return list(zip(element.keys(), _ALL_VALUES(element)))


def _local_name(element) -> str:
    return str(element.tag).rpartition("}")[2][:40]
