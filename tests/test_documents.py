"""The parse step of a tick (monitor/tick/documents.py): the dump's answer in, the usable
documents, the unusable ones with their reasons, the missing and the unasked VMs out,
without a store (docs/worker.md, "One tick of one host", step 5)."""

from __future__ import annotations

from monitor.settings import Limits
from monitor.tick.documents import Unusable, read_documents

from demo_host import FIRST, SECOND, demo_answer

OTHER, GONE = "0" * 8 + "-0000-0000-0000-" + "0" * 12, "1" * 8 + "-0000-0000-0000-" + "1" * 12


def test_each_document_is_usable_unusable_missing_or_unasked():
    _reports, xmls = demo_answer()
    asked = {FIRST, SECOND, GONE, "text", "number"}
    hashes = {vm_id: f"h-{vm_id}" for vm_id in asked}
    answer = {FIRST: xmls[FIRST].decode("utf-8"),  # text, as a remote agent's JSON carries
              SECOND: xmls[FIRST],  # FIRST's document under SECOND's id
              "text": "<domain", "number": 7, OTHER: xmls[SECOND]}

    documents = read_documents(asked, hashes, answer, Limits())

    [usable] = documents.usable
    assert (usable.vm_id, usable.hash, usable.xml, usable.parsed.uuid) == (
        FIRST, f"h-{FIRST}", xmls[FIRST], FIRST)
    by_id = {bad.vm_id: bad for bad in documents.unusable}
    assert [bad.vm_id for bad in documents.unusable] == sorted(["number", SECOND, "text"])
    assert by_id["number"] == Unusable("number", "h-number", b"",
                                       "the host returned a int, not an XML document")
    assert by_id[SECOND].reason == f"the XML is for VM {FIRST}, not {SECOND}"
    assert by_id[SECOND].xml == xmls[FIRST] and by_id["text"].xml == b"<domain"
    assert (documents.missing, documents.unasked) == ([GONE], [OTHER])
