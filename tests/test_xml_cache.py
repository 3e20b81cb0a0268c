"""The event-driven source's bookkeeping (monitor/hosts/xml_cache.py): which domains a
poll reads and why, what it keeps, when it resyncs. Pure: a hand-moved clock, no libvirt.
"""

from __future__ import annotations

import threading

import pytest

from monitor.hosts.xml_cache import Document, ReadReason, XmlCache, reads_for

NEW, EVENT, RESYNC = ReadReason.NEW, ReadReason.EVENT, ReadReason.RESYNC


@pytest.mark.parametrize(("present", "cached", "dirty", "resync", "expected"), [
    pytest.param("ab", "ab", "", False, {}, id="quiet-host-reads-nothing"),
    pytest.param("abc", "ab", "", False, {"c": NEW}, id="a-new-domain-is-read"),
    pytest.param("ab", "ab", "b", False, {"b": EVENT}, id="a-dirty-domain-is-read"),
    pytest.param("ab", "ab", "", True, {"a": RESYNC, "b": RESYNC}, id="resync-reads-all"),
    pytest.param("ab", "a", "b", True, {"a": RESYNC, "b": NEW}, id="new-before-event"),
    pytest.param("ab", "ab", "a", True, {"a": EVENT, "b": RESYNC}, id="event-before-resync"),
    pytest.param("a", "ab", "b", False, {}, id="a-dirty-domain-gone-is-not-read"),
    pytest.param("", "", "", True, {}, id="empty-host"),
])
def test_reads_for(present, cached, dirty, resync, expected):
    assert reads_for(list(present), set(cached), set(dirty), resync) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def doc(vm: str, version: int = 1) -> Document:
    return Document(f"<domain>{vm}{version}</domain>".encode(), f"{vm}-{version}")


def poll(cache: XmlCache, present: str, version: int = 1) -> dict[str, ReadReason]:
    """One poll as the source does it: plan, read every planned VM, settle."""
    plan = cache.plan(present)
    cache.settle(plan, set(present), {vm: doc(vm, version) for vm in plan.reads})
    return plan.reads


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock) -> XmlCache:
    return XmlCache(300.0, clock)


def test_the_first_poll_reads_everything_then_nothing(cache):
    assert poll(cache, "abc") == {"a": NEW, "b": NEW, "c": NEW}
    assert poll(cache, "abc") == {}
    assert cache.document("b") == doc("b")
    reads, events, resyncs = cache.take_counts()
    assert (reads, events, resyncs) == ({"new": 3}, {}, 1)
    assert cache.take_counts() == ({}, {}, 0)  # each count is reported once


def test_an_event_makes_the_next_poll_read_exactly_that_vm(cache):
    poll(cache, "abc")
    cache.take_counts()
    cache.mark_dirty("b", "device-added")
    cache.mark_dirty("b", "device-removed")
    assert poll(cache, "abc", version=2) == {"b": EVENT}
    assert cache.document("b") == doc("b", 2) and cache.document("a") == doc("a", 1)
    assert cache.take_counts() == ({"event": 1}, {"device-added": 1, "device-removed": 1}, 0)
    assert poll(cache, "abc") == {}


def test_a_change_marked_without_an_event_counts_no_event(cache):
    poll(cache, "a")
    cache.take_counts()
    cache.mark_dirty("a")
    assert poll(cache, "a") == {"a": EVENT}
    assert cache.take_counts() == ({"event": 1}, {}, 0)


def test_an_event_during_the_reads_is_kept_for_the_next_poll(cache):
    poll(cache, "ab")
    cache.mark_dirty("a", "lifecycle")
    plan = cache.plan("ab")
    cache.mark_dirty("a", "lifecycle")  # arrives after the plan took the dirty set
    cache.settle(plan, {"a", "b"}, {"a": doc("a", 2)})
    assert poll(cache, "ab", version=3) == {"a": EVENT}
    assert cache.document("a") == doc("a", 3)


def test_resync_every_interval_on_the_monotonic_clock(cache, clock):
    poll(cache, "ab")
    clock.now += 299.9
    assert poll(cache, "ab") == {}
    clock.now += 0.1
    assert poll(cache, "ab") == {"a": RESYNC, "b": RESYNC}
    clock.now += 200
    assert poll(cache, "ab") == {}  # counted from the last resync, not the first
    clock.now += 100
    assert poll(cache, "ab") == {"a": RESYNC, "b": RESYNC}
    assert cache.take_counts()[2] == 3


def test_resync_soon_reads_everything_once(cache):
    poll(cache, "ab")
    cache.resync_soon()  # a reconnect, or a failed poll
    assert poll(cache, "ab") == {"a": RESYNC, "b": RESYNC}
    assert poll(cache, "ab") == {}


def test_a_planned_poll_that_fails_is_redone_by_a_resync(cache):
    poll(cache, "ab")
    cache.mark_dirty("a", "lifecycle")
    cache.plan("ab")  # taken, then the host failed: never settled
    cache.resync_soon()
    assert poll(cache, "ab") == {"a": RESYNC, "b": RESYNC}


def test_domains_gone_are_forgotten_and_new_again_if_they_return(cache):
    poll(cache, "abc")
    assert poll(cache, "ab") == {}
    assert cache.document("c") is None
    assert poll(cache, "abc") == {"c": NEW}


def test_a_domain_gone_between_listing_and_read_is_forgotten(cache):
    poll(cache, "ab")
    cache.mark_dirty("b", "lifecycle")
    plan = cache.plan("ab")
    cache.settle(plan, {"a", "b"}, {})  # b's XML read found no domain
    assert cache.document("b") is None and cache.document("a") == doc("a")
    assert cache.take_counts()[0] == {"new": 2}  # nothing was read for b


def test_forget_drops_every_document_and_reads_all_as_new(cache):
    poll(cache, "ab")
    cache.forget()
    assert cache.document("a") is None
    assert poll(cache, "ab") == {"a": NEW, "b": NEW}


def test_the_interval_must_not_be_negative():
    with pytest.raises(ValueError, match="must not be negative"):
        XmlCache(-1)


def test_an_interval_of_zero_reads_every_vm_on_every_poll(clock):
    cache = XmlCache(0, clock)
    poll(cache, "ab")
    assert poll(cache, "ab") == {"a": RESYNC, "b": RESYNC}
    assert poll(cache, "ab") == {"a": RESYNC, "b": RESYNC}  # the clock did not even move


def test_events_from_another_thread_are_never_lost(cache):
    """Marks from the event thread race with polls; every marked VM is read once after."""
    vms = [f"vm{n:04d}" for n in range(2000)]
    poll(cache, vms)
    cache.take_counts()
    read: set[str] = set()
    marker = threading.Thread(target=lambda: [cache.mark_dirty(vm, "lifecycle") for vm in vms])
    marker.start()
    while marker.is_alive():
        read |= set(poll(cache, vms))
    marker.join()
    read |= set(poll(cache, vms))
    assert read == set(vms)
    reads, events, _ = cache.take_counts()
    assert events == {"lifecycle": len(vms)} and reads["event"] >= len(vms)
