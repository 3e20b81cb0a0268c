"""The benchmark's yardsticks: parsing the same XML and doing nothing else.

* ``lxml_parse_s``: libxml2 building the tree, the physical floor of any engine that
  reads the whole document. The parser is set up as the engine's (no entities, no
  network, no id table), so the floor measures parsing alone, not a cheaper or a
  dearer parser.
* ``python_walk_s``: the parse plus the least any reader written in Python on lxml must
  do per device: visit every child of every device element (each visit makes a Python
  proxy object) and read its alias name and its address attributes. It is the floor of
  the Python parts: what ``parse_domain`` costs beyond it is ours to shorten, what it
  costs below it only code outside Python could (docs/performance.md).
* ``xmltodict_parse_s``: what a user might write instead, a dict of the document.

They live here because lxml and xmltodict belong to ``monitor.domxml`` (.importlinter).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import xmltodict
from lxml import etree

from monitor.domxml.hardened import new_parser

_PARSER = new_parser()


def lxml_parse_s(documents: Sequence[bytes]) -> float:
    """Seconds to ``etree.fromstring`` every document (and free the tree), nothing else."""
    parse = etree.fromstring
    started = time.perf_counter()
    for document in documents:
        parse(document, _PARSER)
    return time.perf_counter() - started


def python_walk_s(documents: Sequence[bytes]) -> float:
    """Seconds to parse every document and read each device's alias and address."""
    parse = etree.fromstring
    started = time.perf_counter()
    for document in documents:
        devices = parse(document, _PARSER).find("devices")
        for element in devices if devices is not None else ():
            alias = address = None
            for child in element:
                tag = child.tag
                if tag == "alias":
                    alias = child.get("name")
                elif tag == "address":
                    address = child.items()
            del alias, address
    return time.perf_counter() - started


def xmltodict_parse_s(documents: Sequence[bytes]) -> float:
    """Seconds to ``xmltodict.parse`` every document."""
    parse = xmltodict.parse
    started = time.perf_counter()
    for document in documents:
        parse(document)
    return time.perf_counter() - started
