"""The one XML parser configuration: what every lxml parse in the engine uses.

No DTD is loaded or validated and no entity is resolved (so no billion laughs, no
external entities), no network, no huge trees (libxml2's own size and depth limits
stay on), no ``xml:id`` table; comments and processing instructions are kept, so a
document written back loses nothing (docs/operations.md, the limits). The
parser's own limits on size, device count and depth are checked around it
(``parser.py``).
"""

from __future__ import annotations

from lxml import etree


def new_parser() -> etree.XMLParser:
    """A fresh parser (lxml parsers must not be shared between threads)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )
