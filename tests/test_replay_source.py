"""The replay host sources: a tick's host as recorded, and the demo's endless loop."""

from __future__ import annotations

import pytest

from monitor.errors import FixtureError, HostRefused, HostTimeout, HostUnreachable
from monitor.hosts.fixture import read_fixture
from monitor.hosts.fixture_writer import FixtureWriter
from monitor.hosts.replay import LoopingReplaySource, ReplayHostSource, tick_sources
from monitor.hosts.source import VmReport

VM_A = "aaaaaaaa-0000-4000-8000-000000000001"
VM_B = "bbbbbbbb-0000-4000-8000-000000000002"
XML_A1 = b"<domain><uuid>aaaaaaaa-0000-4000-8000-000000000001</uuid><!-- 1 --></domain>"
XML_A3 = b"<domain><uuid>aaaaaaaa-0000-4000-8000-000000000001</uuid><!-- 3 --></domain>"


@pytest.fixture
def fixture(tmp_path):
    """Tick 1: both hosts answer; 2: only h2; 3: h1 again with new XML, h2 refuses."""
    writer = FixtureWriter(tmp_path)
    writer.write_tick(1, "h1", {VM_A: VmReport("Up", "a1"), VM_B: VmReport("Up", "b1")},
                      {VM_A: XML_A1}, locks={VM_B})
    writer.write_tick(1, "h2", "unreachable")
    writer.write_tick(2, "h2", "timeout")
    writer.write_tick(3, "h1", {VM_A: VmReport("Up", "a3")}, {VM_A: XML_A3})
    writer.write_tick(3, "h2", {VM_B: VmReport("Up", "b3")}, error="refused")
    return read_fixture(tmp_path)


def test_poll_dump_and_locks_as_recorded(fixture):
    source = ReplayHostSource(fixture.ticks[0], "h1")
    assert source.name == "h1"
    assert source.poll() == {VM_A: VmReport("Up", "a1"), VM_B: VmReport("Up", "b1")}
    assert source.dump([VM_A, VM_B]) == {VM_A: XML_A1}  # no file for B: not returned
    assert source.dump([VM_A.upper()]) == {VM_A.upper(): XML_A1}
    assert source.dump(["../h1/" + VM_A]) == {}  # not a VM id: no file can name it
    assert source.held_locks() == frozenset({VM_B})
    source.close()


@pytest.mark.parametrize("tick_index, error", [
    pytest.param(0, HostUnreachable, id="unreachable"),
    pytest.param(1, HostTimeout, id="timeout"),
])
def test_recorded_failure_fails_poll_and_dump(fixture, tick_index, error):
    source = ReplayHostSource(fixture.ticks[tick_index], "h2")
    with pytest.raises(error, match=r"host h2: .* \(recorded in tick 000\d\)"):
        source.poll()
    with pytest.raises(error):
        source.dump([VM_B])


def test_refused_answers_the_poll_and_refuses_the_batch(fixture):
    source = ReplayHostSource(fixture.ticks[2], "h2")
    assert source.poll() == {VM_B: VmReport("Up", "b3")}
    with pytest.raises(HostRefused, match="host h2: refused"):
        source.dump([VM_B])


def test_a_host_not_polled_in_a_tick_has_no_source(fixture):
    assert [source.name for source in tick_sources(fixture.ticks[1])] == ["h2"]
    with pytest.raises(FixtureError, match="h1 was not polled"):
        ReplayHostSource(fixture.ticks[1], "h1")


def test_looping_source_plays_the_host_ticks_again_and_again(fixture):
    source = LoopingReplaySource(fixture, "h1")
    assert source.held_locks() == frozenset({VM_B})  # the locks of the tick polled next
    seen = []
    for _ in range(5):
        reports = source.poll()
        seen.append((source.tick_number, reports[VM_A].hash, source.dump([VM_A])[VM_A]))
    assert seen == [
        (1, "a1", XML_A1), (3, "a3", XML_A3), (1, "a1", XML_A1), (3, "a3", XML_A3),
        (1, "a1", XML_A1),
    ]
    assert source.held_locks() == frozenset()  # tick 3 comes next: no locks


def test_looping_source_replays_recorded_failures(fixture):
    source = LoopingReplaySource(fixture, "h2")
    with pytest.raises(HostUnreachable):
        source.poll()
    with pytest.raises(HostTimeout):
        source.poll()
    assert source.poll() == {VM_B: VmReport("Up", "b3")}
    with pytest.raises(HostUnreachable):
        source.poll()


def test_looping_source_needs_a_tick_with_its_host(fixture):
    with pytest.raises(FixtureError, match="host h9 is polled in no tick"):
        LoopingReplaySource(fixture, "h9")
