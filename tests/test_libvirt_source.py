"""The libvirt host source against libvirt's real test driver (no hypervisor needed).

The test driver keeps its state inside the connection's process, so every test opens
one connection on a node file it writes, and changes VMs through that connection.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from testdriver_node import PAUSED, RUNNING, SHUT_OFF, domain_xml, node_xml

from monitor.domxml.canonical import devices_digest
from monitor.errors import HostRefused, HostUnreachable, XmlError

pytestmark = pytest.mark.libvirt

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def libvirt_available(libvirt_module):
    return libvirt_module


@pytest.fixture
def host(libvirt_available, tmp_path):
    """A source on one in-process test-driver connection, and that connection."""
    from monitor.hosts.libvirt_source import LibvirtHostSource

    node = tmp_path / "node.xml"
    node.write_text(node_xml())
    uri = f"test://{node}"
    connection = libvirt_available.open(uri)
    source = LibvirtHostSource(uri, "test-host", connection=connection)
    yield source, connection
    source.close()
    connection.close()


def test_poll_reports_every_domain_with_its_status_and_hash(host):
    source, _ = host
    reports = source.poll()
    assert sorted(reports) == sorted(RUNNING + [PAUSED, SHUT_OFF])
    assert {vm: reports[vm].status for vm in reports} == {
        **{vm: "Up" for vm in RUNNING}, PAUSED: "Paused", SHUT_OFF: "Down"}
    assert all(HEX64.fullmatch(report.hash) for report in reports.values())
    assert len({report.hash for report in reports.values()}) == len(reports)


def test_dump_returns_the_xml_whose_digest_is_the_hash(host):
    source, _ = host
    reports = source.poll()
    xmls = source.dump(RUNNING + ["99999999-0000-4000-8000-000000000009"])
    assert sorted(xmls) == sorted(RUNNING)
    for vm in RUNNING:
        assert devices_digest(xmls[vm]) == reports[vm].hash
        assert f"<uuid>{vm}</uuid>".encode() in xmls[vm]


def test_polling_again_without_changes_keeps_every_hash(host):
    source, _ = host
    assert source.poll() == source.poll()


def test_only_the_changed_vm_changes_its_hash(host):
    source, _ = host
    before = source.poll()
    old_xml = source.dump([RUNNING[0]])[RUNNING[0]]
    channel = """
      <controller type='virtio-serial' index='0'/>
      <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"""
    changed = domain_xml(RUNNING[0], "vm1", "dddddddd-0000-4000-8000-000000000001", channel)
    assert source.redefine_and_restart(changed.encode()) == RUNNING[0]
    assert source.dump([RUNNING[0]])[RUNNING[0]] == old_xml  # what the last poll hashed
    after = source.poll()
    assert after[RUNNING[0]].hash != before[RUNNING[0]].hash
    assert after[RUNNING[0]].status == "Up"
    assert {vm: after[vm] for vm in after if vm != RUNNING[0]} == {
        vm: before[vm] for vm in before if vm != RUNNING[0]}
    new_xml = source.dump([RUNNING[0]])[RUNNING[0]]
    assert b"org.qemu.guest_agent.0" in new_xml
    assert devices_digest(new_xml) == after[RUNNING[0]].hash


def test_a_paused_vm_is_reported_paused(host):
    source, connection = host
    connection.lookupByUUIDString(RUNNING[1]).suspend()
    assert source.poll()[RUNNING[1]].status == "Paused"


def test_start_domain_defines_and_runs_a_new_vm(host):
    source, _ = host
    new_vm = "66666666-0000-4000-8000-000000000006"
    xml = domain_xml(new_vm, "vm6", "dddddddd-0000-4000-8000-000000000006")
    assert source.start_domain(xml.encode()) == new_vm
    report = source.poll()[new_vm]
    assert report.status == "Up"
    assert devices_digest(source.dump([new_vm])[new_vm]) == report.hash


def test_a_refused_definition_is_host_refused(host):
    source, _ = host
    with pytest.raises(HostRefused, match=r"^host test-host: starting a domain failed: "):
        source.start_domain(b"<domain type='test'><name>no-memory</name></domain>")


def test_a_domain_gone_before_its_xml_is_skipped(host):
    source, connection = host
    domain = connection.lookupByUUIDString(RUNNING[2])
    domain.destroy()
    domain.undefine()
    assert source._read(domain) is None  # listed, then gone: not reported
    assert RUNNING[2] not in source.poll()


def test_an_unreachable_host_is_one_line(libvirt_available):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    source = LibvirtHostSource("qemu+tcp://127.0.0.1:1/system", "far-away")
    with pytest.raises(HostUnreachable) as raised:
        source.poll()
    assert str(raised.value).startswith("host far-away: connecting to qemu+tcp://")
    assert "\n" not in str(raised.value)
    source.close()


def test_a_connection_closed_underneath_is_unreachable(libvirt_available):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    connection = libvirt_available.open("test:///default")
    source = LibvirtHostSource("test:///default", "closed", connection=connection)
    connection.close()
    with pytest.raises(HostUnreachable, match=r"^host closed: polling failed: "):
        source.poll()


def test_the_source_opens_its_own_connection_lazily_and_again_after_close(
        libvirt_available, tmp_path):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    node = tmp_path / "node.xml"
    node.write_text(node_xml())
    source = LibvirtHostSource(f"test://{node}", "lonely")
    assert len(source.poll()) == 5
    source.close()
    assert source.dump(RUNNING) == {}  # nothing kept after close
    assert len(source.poll()) == 5
    source.close()


class _FakeDomain:
    """A listed domain with whatever XML a test gives it (libvirt would not write it)."""

    def __init__(self, uuid: str, xml: str) -> None:
        self.uuid, self.xml = uuid, xml

    def XMLDesc(self, flags):
        return self.xml

    def UUIDString(self):
        return self.uuid


class _FakeConnection:
    """What the source asks of a connection: the bulk states, and its callbacks."""

    def __init__(self, domains) -> None:
        self.domains = domains

    def getAllDomainStats(self, stats):  # noqa: N802 (libvirt's spelling)
        return [(domain, {"state.state": 1}) for domain in self.domains]  # running

    def domainEventRegisterAny(self, domain, event_id, callback, opaque):  # noqa: N802
        return event_id

    def domainEventDeregisterAny(self, callback_id):  # noqa: N802
        pass

    def registerCloseCallback(self, callback, opaque):  # noqa: N802
        pass

    def unregisterCloseCallback(self):  # noqa: N802
        pass


def test_a_domain_whose_xml_cannot_be_digested_is_reported_by_its_raw_bytes(
        libvirt_available):
    """A device element with 32,000 attributes took libxml2's C14N 17 s: the digest
    refuses it, the poll goes on, and the dump serves the bytes that were hashed."""
    from monitor.hosts.libvirt_source import LibvirtHostSource

    wide = " ".join(f'a{i}=""' for i in range(32_000))
    hostile = f"<domain><uuid>{RUNNING[0]}</uuid><devices><disk {wide}/></devices></domain>"
    plain = f"<domain><uuid>{RUNNING[1]}</uuid><devices><disk/></devices></domain>"
    connection = _FakeConnection([_FakeDomain(RUNNING[0].upper(), hostile),
                                  _FakeDomain(RUNNING[1], plain)])
    source = LibvirtHostSource("test:///fake", "fake-host", connection=connection)
    with pytest.raises(XmlError, match="32000 attributes, over the limit of 256"):
        devices_digest(hostile.encode())
    reports = source.poll()
    assert reports[RUNNING[0]].hash == "raw-" + hashlib.sha256(hostile.encode()).hexdigest()
    assert reports[RUNNING[1]].hash == devices_digest(plain.encode())
    assert source.dump([RUNNING[0]]) == {RUNNING[0]: hostile.encode()}
