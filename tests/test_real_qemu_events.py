"""The event-driven libvirt source against a real libvirt daemon with QEMU (TCG): device
events make the next tick read exactly that VM, a quiet host costs no XML read, and a
restarted libvirtd costs one-line host errors, then a reconnect and a full resync
(docs/worker.md, "Libvirt hosts"; docs/operations.md, "The real-QEMU test").

The ticks run in this process on one long-lived source, as the worker runs them; the
source's connection is wrapped (tests/recording_connection.py) so the test can wait,
with a deadline, until the source's own callback has handled an event.
"""

from __future__ import annotations

import contextlib

import pytest
from conftest import missing
from qemu_host import QemuUnavailable
from qemu_operator import HOST, GuestVm, Operator, nic_xml
from recording_connection import RecordingConnection

from monitor.store import Store
from monitor.tick.host_tick import TickContext, run_tick
from monitor.worker.metrics import TickMetrics

EVENT_TIMEOUT_S = 120.0  # an unplug under TCG completes when the guest answers ACPI


class Watched:
    """One long-lived libvirt source on the QEMU host, its tick context and metrics."""

    def __init__(self, qemu_host, db_url: str) -> None:
        from monitor.hosts.libvirt_source import LibvirtHostSource

        libvirt = qemu_host.libvirt
        self.connections: list[RecordingConnection] = []

        def open_connection(uri: str) -> RecordingConnection:
            connection = RecordingConnection(libvirt, libvirt.open(uri))
            self.connections.append(connection)
            return connection

        self.libvirt = libvirt
        self.source = LibvirtHostSource(qemu_host.uri, HOST, open_connection=open_connection)
        self.store = Store.open(db_url)
        self.metrics = TickMetrics([HOST])
        self.context = TickContext(store=self.store, holder="events-test",
                                   on_tick=self.metrics.observe)

    def tick(self):
        return run_tick(self.source, self.context)

    def wait_for(self, event_id: int, vm_id: str, alias: str | None = None) -> tuple:
        return self.connections[-1].wait_for(event_id, vm_id, alias, EVENT_TIMEOUT_S)

    def counted(self, name: str, **labels) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        wanted = {"host": HOST, **labels}
        for family in text_string_to_metric_families(self.metrics.exposition().decode()):
            for sample in family.samples:
                if sample.name == name and sample.labels == wanted:
                    return sample.value
        raise AssertionError(f"no sample {name} {wanted}")

    def close(self) -> None:
        self.source.close()
        self.store.close()


@pytest.fixture
def watched(qemu_host, tmp_path):
    watching = Watched(qemu_host, f"sqlite:///{tmp_path / 'monitor.db'}")
    yield watching
    watching.close()


def started_guests(operator, qemu_host, *names: str) -> list[GuestVm]:
    guests = []
    for name in names:
        guest = GuestVm(qemu_host, name, "q35")
        for index in range(1, 5):  # room to hot-plug a NIC on Q35 (as tests/test_real_qemu.py)
            guest.add("controller", "pci", is_managed=False,
                      spec_params={"index": index, "model": "pcie-root-port"})
        operator.load(guest.document())
        operator.start(guest.id)
        guests.append(guest)
    return guests


@pytest.fixture
def operator(tmp_path, qemu_host, capsys, watched):
    operator = Operator(tmp_path, qemu_host, capsys)
    assert operator.db == f"sqlite:///{tmp_path / 'monitor.db'}"  # the watched source's DB
    return operator


def test_a_device_event_makes_the_next_tick_read_exactly_that_vm(operator, qemu_host,
                                                                 watched):
    busy, bystander = started_guests(operator, qemu_host, "events-busy", "events-bystander")
    qemu_host.wait_console(busy.console)
    libvirt = watched.libvirt

    first = watched.tick()
    assert first.host_error is None and first.polled >= 2
    assert (dict(first.read), first.resyncs) == ({"new": first.polled}, 1)
    assert first.applied == 2  # both guests reconciled (other domains are no VM of ours)

    quiet = watched.tick()
    assert (sum(quiet.read.values()), quiet.fetched, quiet.rows_written) == (0, 0, 0)

    qemu_host.attach(busy.id, nic_xml(qemu_host, "52:54:00:00:20:01"))
    (alias,) = watched.wait_for(libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, busy.id)
    plugged = watched.tick()
    assert dict(plugged.read) == {"event": 1}  # that VM, and no other
    assert (plugged.fetched, plugged.applied) == (1, 1)
    assert plugged.events["device-added"] == 1

    qemu_host.detach(busy.id, alias)
    watched.wait_for(libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, busy.id, alias)
    unplugged = watched.tick()
    assert dict(unplugged.read) == {"event": 1}
    assert (unplugged.fetched, unplugged.applied) == (1, 1)
    assert unplugged.events["device-removed"] == 1

    again = watched.tick()
    assert (sum(again.read.values()), again.fetched) == (0, 0)
    assert watched.counted("monitor_xml_reads_total", reason="event") == 2
    assert watched.counted("monitor_xml_reads_total", reason="new") == first.polled
    assert watched.counted("monitor_domain_events_total", type="device-added") == 1
    assert watched.counted("monitor_domain_events_total", type="device-removed") == 1
    assert watched.counted("monitor_resyncs_total") == 1
    assert bystander.id in watched.source.poll()  # there all along, never read again
    assert sum(watched.source.take_counts().reads.values()) == 0


def test_a_restarted_libvirtd_is_a_one_line_error_then_a_reconnect_and_a_full_resync(
        operator, qemu_host, watched, capsys):
    (guest,) = started_guests(operator, qemu_host, "events-restart")
    first = watched.tick()
    assert first.host_error is None and guest.id in watched.source.poll()
    watched.source.take_counts()

    capsys.readouterr()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(qemu_host.daemon_stopped())
        except QemuUnavailable as error:  # another test run shares the daemon
            missing(f"stopping libvirtd: {error}", "MONITOR_REQUIRE_QEMU")
        down = watched.tick()
        assert down.host_error == "unreachable"
        assert " HOST-ERROR=unreachable " in down.line()
        # The log line, as the worker prints it (the CLI's handler, set by `monitor start`).
        failures = [line for line in capsys.readouterr().err.splitlines()
                    if "poll failed" in line]
        assert len(failures) == 1, failures
        assert f"WARNING monitor.tick poll failed: host {HOST}: " in failures[0]
        assert failures[0].endswith(f"host={HOST} kind=unreachable")

    back = watched.tick()
    assert back.host_error is None
    assert (back.reconnects, back.resyncs) == (1, 1)
    assert dict(back.read) == {"resync": back.polled}  # every VM, once
    assert len(watched.connections) == 2
    quiet = watched.tick()
    assert sum(quiet.read.values()) == 0
