"""The demo recording's host-a as a scripted host, and a store loaded with the demo
inventory: what the tests of hostile host answers share (tests/test_hostile_hosts.py,
tests/test_logged_once.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.hosts.fixture import read_fixture
from monitor.hosts.source import VmReport
from monitor.store import Store
from monitor.store.inventory import load_document, read_document

DEMO = Path(__file__).resolve().parent.parent / "monitor" / "demo" / "recording"
FIRST, SECOND = "2c2ed32f-28fb-5716-a588-cbe726fb3dd1", "9b4d3cf8-d5db-5fa4-9488-c6d7e4444a13"
ELSEWHERE = "14beb6cb-c7fe-5a9a-a891-e3318a6a81d9"  # a VM of host-b


class ScriptedHost:
    """A host whose poll and dump answer whatever the test says, garbage included."""

    def __init__(self, name: str, reports, xmls) -> None:
        self.name, self.reports, self.xmls = name, reports, xmls
        self.dumped: list[list[str]] = []

    def poll(self):
        return self.reports

    def dump(self, vm_ids):
        self.dumped.append(list(vm_ids))
        return self.xmls

    def held_locks(self):
        return frozenset()

    def close(self) -> None:
        pass


def demo_answer() -> tuple[dict[str, VmReport], dict[str, bytes]]:
    """host-a's first tick of the demo recording: two VMs and their Domain XML."""
    answer = read_fixture(DEMO).ticks[0].answer("host-a")
    xmls = {vm_id: answer.xml_path(vm_id).read_bytes() for vm_id in answer.reports}
    return dict(answer.reports), xmls


@pytest.fixture
def store(db_url):
    store = Store.open(db_url)
    load_document(store, read_document(DEMO / "inventory.json"))
    yield store
    store.close()
