"""The event-driven libvirt source on libvirt's test driver: what a poll reads, and when.

The test driver emits lifecycle events (define, start, destroy, undefine) but no device
events, so these tests change VMs by lifecycle and check the cache, the resync and the
reconnect logic (docs/worker.md, "When a VM's XML is read"). The source's connection is
wrapped so that a test can wait until the source's own callback has handled an event
(libvirt refuses a second callback for the same event on one connection).

Reopening a ``test:///path.xml`` URI gives a fresh state, so the reconnect tests run on
``test:///default`` (one state per process) and hand the source its connections through
``open_connection``.
"""

from __future__ import annotations

import threading

import pytest
from recording_connection import RecordingConnection
from testdriver_node import PAUSED, RUNNING, SHUT_OFF, domain_xml, node_xml

from monitor.domxml.canonical import devices_digest
from monitor.errors import HostUnreachable
from monitor.hosts.source import PollCounts

pytestmark = pytest.mark.libvirt

ALL = sorted(RUNNING + [PAUSED, SHUT_OFF])
CHANNEL = """
      <controller type='virtio-serial' index='0'/>
      <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"""


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Connections:
    """``open_connection`` for the source: real connections to ``test:///default`` (one
    state per process), each kept, and a switch that makes the next opens fail as an
    unreachable host does."""

    def __init__(self, libvirt) -> None:
        self.libvirt = libvirt
        self.opened: list[RecordingConnection] = []
        self.refuse = False

    def __call__(self, uri: str):
        if self.refuse:  # a real refusal: nothing listens on port 1
            return self.libvirt.open("qemu+tcp://127.0.0.1:1/system")
        connection = RecordingConnection(self.libvirt, self.libvirt.open("test:///default"))
        self.opened.append(connection)
        return connection

    def close_all(self) -> None:
        for connection in self.opened:
            connection.close_quietly()


@pytest.fixture
def node(libvirt_module, tmp_path):
    """A quiet host: a source sharing the test's connection to a node file (a second
    connection to it would see a fresh state), after its first poll read every VM."""
    from monitor.hosts.libvirt_source import LibvirtHostSource

    path = tmp_path / "node.xml"
    path.write_text(node_xml())
    connection = RecordingConnection(libvirt_module, libvirt_module.open(f"test://{path}"))
    clock = Clock()
    source = LibvirtHostSource(f"test://{path}", "node", connection=connection,
                               resync_interval_s=60.0, clock=clock)
    source.poll()
    source.take_counts()
    yield source, connection, clock
    source.close()
    connection.close_quietly()


def reads(counts: PollCounts) -> dict[str, int]:
    return dict(counts.reads)


def test_the_first_poll_reads_every_vm_as_new_in_one_resync(libvirt_module, tmp_path):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    path = tmp_path / "node.xml"
    path.write_text(node_xml())
    source = LibvirtHostSource(f"test://{path}", "fresh")
    try:
        assert sorted(source.poll()) == ALL
        counts = source.take_counts()
        assert (reads(counts), counts.resyncs, counts.reconnects) == ({"new": 5}, 1, 0)
    finally:
        source.close()


def test_a_quiet_host_reads_no_xml(node):
    source, _, _ = node
    first = source.poll()
    second = source.poll()
    assert first == second and sorted(second) == ALL
    counts = source.take_counts()
    assert (reads(counts), dict(counts.events), counts.resyncs) == ({}, {}, 0)
    assert source.dump(ALL).keys() == set(ALL)  # still served, from what was read


def test_a_change_is_read_once_its_event_arrived(node, libvirt_module):
    source, connection, _ = node
    before = source.poll()
    connection.defineXML(domain_xml(RUNNING[0], "vm1", "dddddddd-0000-4000-8000-000000000001",
                                    CHANNEL))
    domain = connection.lookupByUUIDString(RUNNING[0])
    domain.destroy()
    domain.create()
    connection.wait_for_lifecycle(RUNNING[0], libvirt_module.VIR_DOMAIN_EVENT_STARTED)
    after = source.poll()
    counts = source.take_counts()
    assert reads(counts) == {"event": 1}
    assert counts.events["lifecycle"] >= 3  # defined, stopped, started
    assert after[RUNNING[0]].hash != before[RUNNING[0]].hash
    assert {vm: after[vm] for vm in ALL if vm != RUNNING[0]} == {
        vm: before[vm] for vm in ALL if vm != RUNNING[0]}
    xml = source.dump([RUNNING[0]])[RUNNING[0]]
    assert b"org.qemu.guest_agent.0" in xml and devices_digest(xml) == after[RUNNING[0]].hash
    source.poll()
    assert reads(source.take_counts()) == {}


def test_statuses_come_from_the_bulk_call_not_the_events(node):
    source, connection, _ = node
    connection.lookupByUUIDString(RUNNING[1]).suspend()
    assert source.poll()[RUNNING[1]].status == "Paused"  # whether its event came or not
    connection.lookupByUUIDString(RUNNING[1]).resume()
    assert source.poll()[RUNNING[1]].status == "Up"


def test_a_new_domain_is_read_as_new(node, libvirt_module):
    source, connection, _ = node
    new_vm = "66666666-0000-4000-8000-000000000006"
    connection.defineXML(domain_xml(new_vm, "vm6", "dddddddd-0000-4000-8000-000000000006"))
    connection.lookupByUUIDString(new_vm).create()
    connection.wait_for_lifecycle(new_vm, libvirt_module.VIR_DOMAIN_EVENT_STARTED)
    report = source.poll()[new_vm]
    assert reads(source.take_counts()) == {"new": 1}
    assert report.status == "Up"
    assert devices_digest(source.dump([new_vm])[new_vm]) == report.hash


def test_an_undefined_domain_is_no_longer_reported_nor_dumped(node, libvirt_module):
    source, connection, _ = node
    connection.lookupByUUIDString(SHUT_OFF).undefine()
    connection.wait_for_lifecycle(SHUT_OFF, libvirt_module.VIR_DOMAIN_EVENT_UNDEFINED)
    assert SHUT_OFF not in source.poll()
    assert reads(source.take_counts()) == {}
    assert source.dump([SHUT_OFF]) == {}


def test_a_full_resync_every_interval(node):
    source, _, clock = node
    clock.now += 59.0
    source.poll()
    assert reads(source.take_counts()) == {}
    clock.now += 1.0
    reported = source.poll()
    counts = source.take_counts()
    assert (reads(counts), counts.resyncs) == ({"resync": 5}, 1)
    assert sorted(reported) == ALL


def test_close_deregisters_the_callbacks_and_forgets_the_xml(node, libvirt_module):
    source, connection, _ = node
    source.close()
    assert source.dump(ALL) == {}
    # With the source's lifecycle callback gone, the test may register one of its own:
    # once it saw the event, the source's would have too.
    seen = threading.Event()
    callback_id = connection.domainEventRegisterAny(
        None, libvirt_module.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda _c, domain, event, _d, _o: domain.UUIDString().lower() == RUNNING[2]
        and seen.set(), None)
    connection.lookupByUUIDString(RUNNING[2]).destroy()
    assert seen.wait(10.0), "the test's own callback saw no event"
    connection.domainEventDeregisterAny(callback_id)
    assert source.take_counts().events == {}  # the source's callbacks were gone
    assert sorted(source.poll()) == ALL  # the shared connection is still open
    assert reads(source.take_counts()) == {"new": 5}


def test_changes_made_through_the_source_are_read_without_waiting(node):
    source, _, _ = node
    before = source.poll()[RUNNING[0]]
    source.redefine_and_restart(domain_xml(RUNNING[0], "vm1",
                                           "dddddddd-0000-4000-8000-000000000001", CHANNEL))
    assert source.poll()[RUNNING[0]].hash != before.hash
    assert source.take_counts().reads["event"] == 1


def test_two_sources_on_one_connection_both_get_the_events(node, libvirt_module):
    """libvirt takes one callback per event type per connection: the sources share it."""
    from monitor.hosts.libvirt_source import LibvirtHostSource

    source, connection, _ = node
    other = LibvirtHostSource(source.uri, "other", connection=connection)
    other.poll()
    other.take_counts()
    connection.lookupByUUIDString(RUNNING[0]).destroy()
    connection.wait_for_lifecycle(RUNNING[0], libvirt_module.VIR_DOMAIN_EVENT_STOPPED)
    for each in (source, other):
        each.poll()
        assert reads(each.take_counts()) == {"event": 1}
    other.close()  # the other source's handlers go; the first one's stay
    connection.lookupByUUIDString(RUNNING[0]).create()
    connection.wait_for_lifecycle(RUNNING[0], libvirt_module.VIR_DOMAIN_EVENT_STARTED)
    source.poll()
    assert reads(source.take_counts()) == {"event": 1}


@pytest.fixture
def connections(libvirt_module):
    opener = Connections(libvirt_module)
    yield opener
    opener.close_all()


def default_source(connections, uri="test:///default", name="default-host"):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    return LibvirtHostSource(uri, name, open_connection=connections)


def test_a_dropped_connection_is_one_line_then_a_reconnect_and_a_full_resync(connections):
    source = default_source(connections)
    try:
        listed = source.poll()
        assert reads(source.take_counts()) == {"new": len(listed)}
        connections.opened[0].close_quietly()  # the connection dies underneath
        connections.refuse = True  # and the host does not answer for a while
        with pytest.raises(HostUnreachable) as dropped:
            source.poll()
        assert str(dropped.value).startswith("host default-host: polling failed: ")
        with pytest.raises(HostUnreachable) as refused:
            source.poll()
        assert str(refused.value).startswith(
            "host default-host: connecting to test:///default failed: ")
        assert "\n" not in str(dropped.value) + str(refused.value)
        connections.refuse = False
        again = source.poll()
        counts = source.take_counts()
        assert len(connections.opened) == 2
        assert again.keys() == listed.keys()
        assert (reads(counts), counts.resyncs, counts.reconnects) == (
            {"resync": len(listed)}, 1, 1)
        source.poll()
        assert reads(source.take_counts()) == {}
    finally:
        source.close()


def test_the_close_callback_makes_the_next_poll_reconnect_and_resync(connections):
    source = default_source(connections)
    try:
        listed = source.poll()
        source.take_counts()
        first = connections.opened[0]
        assert first.close_callback is not None
        first.close_callback(first, 0, None)  # libvirt: the connection closed (EOF)
        assert source.poll().keys() == listed.keys()
        counts = source.take_counts()
        assert len(connections.opened) == 2 and counts.reconnects == 1
        assert reads(counts) == {"resync": len(listed)}
    finally:
        source.close()


def test_close_closes_an_owned_connection_and_the_next_poll_opens_one(connections):
    source = default_source(connections)
    source.poll()
    source.close()
    with pytest.raises(Exception, match="(?i)invalid|closed"):
        connections.opened[0].getURI()
    source.poll()
    assert len(connections.opened) == 2
    source.close()


@pytest.mark.parametrize(("uri", "keepalive"), [
    ("test:///default", None),
    ("qemu:///system", (5, 3)),
    ("qemu+ssh://root@host1/system", (5, 3)),
])
def test_keepalive_on_every_uri_but_the_test_driver(connections, uri, keepalive):
    source = default_source(connections, uri=uri)
    try:
        source.poll()
        assert connections.opened[0].keepalive == keepalive
    finally:
        source.close()


def metric(metrics, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_the_tick_summary_and_metrics_count_reads_events_and_resyncs(
        node, libvirt_module, tmp_path):
    from monitor.store import Store
    from monitor.tick.host_tick import TickContext, run_tick
    from monitor.worker.metrics import TickMetrics

    source, connection, _ = node
    metrics = TickMetrics(["node"])
    store = Store.open(f"sqlite:///{tmp_path / 'monitor.db'}")
    context = TickContext(store=store, holder="test", on_tick=metrics.observe)
    source.close()  # from nothing: the first tick reads every VM
    first = run_tick(source, context)
    assert (dict(first.read), first.resyncs) == ({"new": 5}, 1)
    assert " polled=5 read=5 " in first.line()
    quiet = run_tick(source, context)
    assert " read=0 " in quiet.line() and quiet.resyncs == 0
    connection.lookupByUUIDString(RUNNING[0]).destroy()
    connection.wait_for_lifecycle(RUNNING[0], libvirt_module.VIR_DOMAIN_EVENT_STOPPED)
    changed = run_tick(source, context)
    assert dict(changed.read) == {"event": 1} and changed.events["lifecycle"] >= 1
    assert metric(metrics, "monitor_xml_reads_total", host="node", reason="new") == 5
    assert metric(metrics, "monitor_xml_reads_total", host="node", reason="event") == 1
    assert metric(metrics, "monitor_resyncs_total", host="node") == 1
    assert metric(metrics, "monitor_reconnects_total", host="node") == 1  # after close()
    assert metric(metrics, "monitor_domain_events_total", host="node",
                  type="lifecycle") == changed.events["lifecycle"]
    store.close()
