"""A tick runs with Python's cyclic collector paused, and builds no reference cycle for
it to find (monitor/collector.py; docs/performance.md, "The fourth wave")."""

from __future__ import annotations

import gc
import threading

import pytest

from monitor import collector
from monitor.bench.fleet import Fleet
from monitor.bench.runner import _FleetState, load, tick_fleet
from monitor.faults import injected
from monitor.store import Store
from monitor.tick.host_tick import TickContext

VMS = 30


def no_progress(phase: str, done: int, total: int) -> None:
    pass


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_a_tick_runs_with_the_collector_paused_and_leaves_it_on(db_url, collector_on):
    with Store.open(db_url) as store:
        context = TickContext(store=store, holder="collector-test", batch_size=10)
        state = _FleetState(Fleet(VMS, 1))
        load(context, state.fleet, no_progress)
        seen: list[bool] = []

        def in_batch(_point: str) -> None:
            seen.append(gc.isenabled())
            fault.nth += 1  # again in the next batch

        with injected("in-batch", in_batch) as fault:
            tick = tick_fleet(context, state, "start", no_progress)
    assert tick.total.applied == VMS
    assert seen == [False] * 3  # in each of the three batch transactions
    assert gc.isenabled()


def test_ticks_leave_no_cyclic_garbage(db_url, collector_on):
    """Reference counting frees everything a tick builds: the collector, once back, finds
    nothing unreachable (a first tick's inserts, then a full tick's updates)."""
    with Store.open(db_url) as store:
        context = TickContext(store=store, holder="collector-test", batch_size=10)
        state = _FleetState(Fleet(VMS, 1))
        load(context, state.fleet, no_progress)
        gc.collect()
        gc.disable()
        try:
            start = tick_fleet(context, state, "start", no_progress)
            state.flip(range(VMS))
            full = tick_fleet(context, state, "full", no_progress)
            unreachable = gc.collect()
        finally:
            gc.enable()
    assert start.total.new > 0 and full.total.rows_written > 20 * VMS
    assert unreachable == 0


def test_overlapping_pauses_leave_the_collector_on_once_both_end(collector_on):
    first_in, second_done = threading.Event(), threading.Event()

    def first() -> None:
        with collector.paused():
            first_in.set()
            second_done.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with collector.paused():  # found off: this block must not turn it back on
        assert not gc.isenabled()
    assert not gc.isenabled()  # the first block still runs
    second_done.set()
    thread.join(10)
    assert gc.isenabled()
