"""The parse step of a tick (monitor/tick/documents.py): the dump's answer sorted into the
fetched documents, the missing and the unasked VMs; each fetched document then read as
usable or unusable with its reason, without a store (docs/worker.md, "One tick of one
host", steps 5 and 6)."""

from __future__ import annotations

from monitor.settings import Limits
from monitor.tick.documents import Fetched, Unusable, Usable, read_document, read_documents

from demo_host import FIRST, SECOND, demo_answer

OTHER, GONE = "0" * 8 + "-0000-0000-0000-" + "0" * 12, "1" * 8 + "-0000-0000-0000-" + "1" * 12


def test_each_document_is_usable_unusable_missing_or_unasked():
    _reports, xmls = demo_answer()
    asked = {FIRST, SECOND, GONE, "text", "number"}
    hashes = {vm_id: f"h-{vm_id}" for vm_id in asked}
    answer = {FIRST: xmls[FIRST].decode("utf-8"),  # text, as a remote agent's JSON carries
              SECOND: xmls[FIRST],  # FIRST's document under SECOND's id
              "text": "<domain", "number": 7, OTHER: xmls[SECOND]}

    documents = read_documents(asked, hashes, answer)

    assert documents.fetched == [Fetched(vm_id, f"h-{vm_id}", answer[vm_id])
                                 for vm_id in sorted([FIRST, SECOND, "text", "number"])]
    assert (documents.missing, documents.unasked) == ([GONE], [OTHER])
    read = {item.vm_id: read_document(item, Limits()) for item in documents.fetched}
    usable = read.pop(FIRST)
    assert isinstance(usable, Usable)
    assert (usable.vm_id, usable.hash, usable.xml, usable.parsed.uuid) == (
        FIRST, f"h-{FIRST}", xmls[FIRST], FIRST)
    assert all(isinstance(bad, Unusable) for bad in read.values())
    assert read["number"] == Unusable("number", "h-number", b"",
                                      "the host returned a int, not an XML document")
    assert read[SECOND].reason == f"the XML is for VM {FIRST}, not {SECOND}"
    assert read[SECOND].xml == xmls[FIRST] and read["text"].xml == b"<domain"
    assert read["text"].reason.startswith("malformed XML at line 1")
