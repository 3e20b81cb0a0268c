"""The dump's documents: which VMs' XML the tick fetched, which the dump left out and
which it was not asked for; then each fetched document read on its own, as usable (the
VM it holds, parsed) or unusable (why not).

No I/O: the tick counts, logs and writes what these return (docs/worker.md, "One tick of
one host", steps 5 and 6; docs/architecture.md, "The flow of one tick"). A document is
read in the batch that applies it, just before its VM is correlated, not all of them up
front: docs/performance.md, "The fifth wave".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from monitor.domxml import parse_domain
from monitor.errors import XmlError
from monitor.model.domain import ParsedDomain
from monitor.settings import Limits


class Fetched(NamedTuple):
    """What the dump returned for a VM the tick asked for, not read yet."""

    vm_id: str
    hash: str | None  # the reported hash the tick decided to fetch
    answer: Any  # bytes, text (a remote agent's JSON), or whatever else a host sent


class Usable(NamedTuple):
    """A document that can be applied: the VM it holds, parsed."""

    vm_id: str
    hash: str | None
    xml: bytes
    parsed: ParsedDomain


class Unusable(NamedTuple):
    """A document that cannot be applied: malformed, over a limit, not a document, or
    for another VM. Recorded as the VM's ``last_error`` under its hash."""

    vm_id: str
    hash: str | None
    xml: bytes  # b"" when the host returned no document at all
    reason: str


class Documents(NamedTuple):
    fetched: list[Fetched]  # by VM id
    missing: list[str]  # asked for, left out of the dump; sorted
    unasked: list[str]  # in the dump, not asked for (as text); sorted


def read_documents(asked: Collection[str], hashes: Mapping[str, str | None],
                   xmls: Mapping) -> Documents:
    """Sort the dump ``xmls`` of the VMs ``asked`` for (``hashes``: their reported ones)."""
    documents = Documents([], [], sorted(map(str, xmls.keys() - set(asked))))
    for vm_id in sorted(asked):
        xml = xmls.get(vm_id)
        if xml is None:
            documents.missing.append(vm_id)
        else:
            documents.fetched.append(Fetched(vm_id, hashes[vm_id], xml))
    return documents


def read_document(fetched: Fetched, limits: Limits) -> Usable | Unusable:
    """The document as bytes, and the VM it holds or why it cannot be used."""
    vm_id, hash_, xml = fetched
    if isinstance(xml, str):
        xml = xml.encode("utf-8")  # a remote agent's JSON carries text
    elif not isinstance(xml, bytes):
        return Unusable(vm_id, hash_, b"",
                        f"the host returned a {type(xml).__name__}, not an XML document")
    try:
        parsed = parse_domain(xml, limits=limits)
    except XmlError as error:
        return Unusable(vm_id, hash_, xml, str(error))
    if parsed.uuid != vm_id:
        return Unusable(vm_id, hash_, xml,
                        f"the XML is for VM {parsed.uuid or 'without a <uuid>'}, not {vm_id}")
    return Usable(vm_id, hash_, xml, parsed)
