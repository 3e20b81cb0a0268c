"""The dump's documents, read: which VMs' XML the tick can apply, which it records as
unusable, which the dump left out and which it was not asked for.

No I/O: the tick counts, logs and writes what this returns (docs/worker.md, "One tick of
one host", step 5; docs/architecture.md, "The flow of one tick").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

from monitor.domxml import parse_domain
from monitor.errors import XmlError
from monitor.model.domain import ParsedDomain
from monitor.settings import Limits


class Fetched(NamedTuple):
    """A usable document: the VM it holds, parsed."""

    vm_id: str
    hash: str | None  # the reported hash the tick decided to fetch
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
    usable: list[Fetched]  # by VM id
    unusable: list[Unusable]  # by VM id
    missing: list[str]  # asked for, left out of the dump; sorted
    unasked: list[str]  # in the dump, not asked for (as text); sorted


def read_documents(asked: Collection[str], hashes: Mapping[str, str | None],
                   xmls: Mapping, limits: Limits) -> Documents:
    """Read the dump ``xmls`` of the VMs ``asked`` for (``hashes``: their reported ones)."""
    documents = Documents([], [], [], sorted(map(str, xmls.keys() - set(asked))))
    for vm_id in sorted(asked):
        xml = xmls.get(vm_id)
        if xml is None:
            documents.missing.append(vm_id)
            continue
        xml, parsed = _read(vm_id, xml, limits)
        if isinstance(parsed, str):
            documents.unusable.append(Unusable(vm_id, hashes[vm_id], xml, parsed))
        else:
            documents.usable.append(Fetched(vm_id, hashes[vm_id], xml, parsed))
    return documents


def _read(vm_id: str, xml, limits: Limits) -> tuple[bytes, ParsedDomain | str]:
    """The document as bytes, and the VM it holds or why it cannot be used."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")  # a remote agent's JSON carries text
    elif not isinstance(xml, bytes):
        return b"", f"the host returned a {type(xml).__name__}, not an XML document"
    try:
        parsed = parse_domain(xml, limits=limits)
    except XmlError as error:
        return xml, str(error)
    if parsed.uuid != vm_id:
        return xml, f"the XML is for VM {parsed.uuid or 'without a <uuid>'}, not {vm_id}"
    return xml, parsed
