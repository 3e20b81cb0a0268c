"""Replay a recorded fixture: every tick through ``run_tick``, the worker's own code.

Only the host source differs from the worker. Before each tick, the VMs listed in the
tick's ``locks.json`` get their devices lock taken by a stand-in device command (as a
hot-plug would hold it) and released after the tick. With an ``inventory.json`` the
listed VMs and their rows are loaded first; without one the replay runs on the DB as
it is, so a long recording can be replayed in parts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from monitor.hosts.fixture import Fixture
from monitor.hosts.replay import tick_sources
from monitor.logfields import fields
from monitor.store.inventory import export_document, load_document, read_document
from monitor.tick.host_tick import TickContext, run_tick
from monitor.tick.summary import TickSummary

log = logging.getLogger("monitor.replay")

DEVICE_COMMAND = "device-command (fixture locks.json)"


class ReplayResult(NamedTuple):
    ticks: int
    summaries: tuple[TickSummary, ...]
    vm_ids: frozenset[str]  # the fixture's VMs: inventory, reported, expected

    def total(self) -> TickSummary:
        total = TickSummary(host="all")
        for summary in self.summaries:
            total.add(summary)
        return total


def replay(fixture: Fixture, context: TickContext,
           on_tick: Callable[[int, TickSummary], None] | None = None) -> ReplayResult:
    store = context.store
    vm_ids: set[str] = set()
    if fixture.inventory_path is not None:
        document = read_document(fixture.inventory_path, context.limits.max_json_bytes)
        load_document(store, document)
        vm_ids.update(vm["id"] for vm in document.get("vms", []))
    summaries: list[TickSummary] = []
    for tick in fixture.ticks:
        for answer in tick.answers:
            vm_ids.update(answer.reports)
        with held_by_device_command(context, tick.locks):
            for source in tick_sources(tick, context.limits):
                summary = run_tick(source, context)
                summaries.append(summary)
                if on_tick is not None:
                    on_tick(tick.number, summary)
    if fixture.has_expected:
        vm_ids.update(vm["id"] for vm in read_document(fixture.expected_path, context.limits.max_json_bytes).get("vms", []))
    return ReplayResult(len(fixture.ticks), tuple(summaries), frozenset(vm_ids))


@contextmanager
def held_by_device_command(context: TickContext, vm_ids: frozenset[str]) -> Iterator[None]:
    """Hold these VMs' devices locks as a device command would, for one tick."""
    if not vm_ids:
        yield
        return
    with context.store.transaction() as tx:
        held = tx.try_lock_many(sorted(vm_ids), DEVICE_COMMAND, tx.now(context.process_utc), 3600)
    for vm_id in sorted(vm_ids - held):
        log.warning("locks.json: the lock was already held", extra=fields(vm=vm_id))
    try:
        yield
    finally:
        with context.store.transaction() as tx:
            tx.release_locks(held, DEVICE_COMMAND)


def export_fixture_vms(context: TickContext, result: ReplayResult) -> dict:
    return export_document(context.store, sorted(result.vm_ids))
