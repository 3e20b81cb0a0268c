"""One tick for one host: poll, pick, one dump, parse, correlate, apply.

The worker, ``monitor replay`` and the benchmark all run this function; only the host
source differs. A VM's new hash is written only in the transaction that applied its
XML (``adapters.database``); everything that goes wrong leaves the old hash, so the
next tick tries again:

* the host fails to answer the poll or the dump -> nothing written but statuses;
* a VM's devices lock is held (a device command is changing it) -> skipped;
* the dump leaves a VM out -> retried next tick;
* a malformed XML, or one for another VM -> ``last_error_hash``/``last_error``;
* a DB error in a batch -> the batch is rolled back and retried VM by VM.

While a tick fetches and applies a VM it holds that VM's devices lock, so a hot-plug
cannot commit a new row between our dump and our apply (and be unplugged by an XML
read before it, oVirt BZ 1927243).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from monitor.adapters.base import MonitoringAdapter
from monitor.adapters.database import Correlated, apply_correlated
from monitor.domxml import parse_domain
from monitor.errors import HostError, StoreError, XmlError
from monitor.hosts.source import HostSource, VmReport
from monitor.legacy.converter import convert
from monitor.legacy.dicts import ConvertedVm
from monitor.logfields import fields
from monitor.model.changes import VmChanges
from monitor.model.domain import ParsedDomain
from monitor.settings import Limits
from monitor.store import Store
from monitor.tick.bookkeeping import Plan, Skip, plan
from monitor.tick.summary import TickSummary

log = logging.getLogger("monitor.tick")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class TickContext:
    """What a tick needs, built once by the wiring and reused tick after tick."""

    store: Store
    holder: str  # this worker's name in the devices lock
    limits: Limits = field(default_factory=Limits)
    batch_size: int = 50
    lock_ttl_s: float = 120.0
    emitters: Sequence[MonitoringAdapter] = ()
    clock: Callable[[], datetime] = utc_now
    on_tick: Callable[[TickSummary], None] | None = None  # metrics
    logged_once: set[tuple[str, str]] = field(default_factory=set)


class Fetched(NamedTuple):
    vm_id: str
    hash: str | None
    xml: bytes
    parsed: ParsedDomain


def run_tick(source: HostSource, context: TickContext) -> TickSummary:
    started = time.perf_counter()
    summary = TickSummary(host=source.name)
    try:
        _tick(source, context, summary)
    finally:
        summary.duration_s = time.perf_counter() - started
        if context.on_tick is not None:
            context.on_tick(summary)
    return summary


def _tick(source: HostSource, context: TickContext, summary: TickSummary) -> None:
    host = source.name
    try:
        reports = source.poll()
    except HostError as error:
        _host_failed(summary, error, "poll")
        return
    report_time = context.clock()
    summary.polled = len(reports)
    with context.store.transaction() as tx:
        stored = tx.vms(reports)
    decided = plan(host, reports, report_time, stored)
    _log_skips(context, host, decided, reports)
    summary.skipped.update({reason.value: count for reason, count in decided.skipped.items()})
    _store_statuses(context, decided)

    held = _lock(context, decided.to_fetch, report_time, summary)
    if not held:
        return
    try:
        try:
            xmls = source.dump(sorted(held))
        except HostError as error:
            _host_failed(summary, error, "dump")
            return
        hashes = {d.vm_id: d.hash for d in decided.decisions if d.vm_id in held}
        good = _parse(context, host, held, hashes, xmls, report_time, summary)
        for start in range(0, len(good), context.batch_size):
            _apply_batch(context, good[start:start + context.batch_size], report_time, summary)
    finally:
        _unlock(context, held)


def _host_failed(summary: TickSummary, error: HostError, action: str) -> None:
    summary.host_error = error.kind
    summary.errors[f"host-{error.kind}"] += 1
    log.warning("%s failed: %s", action, error, extra=fields(host=summary.host, kind=error.kind))


def _log_skips(context: TickContext, host: str, decided: Plan, reports) -> None:
    for decision in decided.decisions:
        if decision.skip in (Skip.UNKNOWN_VM, Skip.UNKNOWN_STATUS):
            key = (decision.vm_id, decision.skip.value)
            if key not in context.logged_once:
                context.logged_once.add(key)
                log.warning("ignored: %s (status %r)", decision.skip.value,
                            reports[decision.vm_id].status,
                            extra=fields(host=host, vm=decision.vm_id))


def _store_statuses(context: TickContext, decided: Plan) -> None:
    changes = [d for d in decided.status_changes if d.status is not None]
    if not changes:
        return
    with context.store.transaction() as tx:
        for decision in changes:
            tx.set_status(decision.vm_id, decision.status, host=decision.host)
    for decision in changes:
        if decision.host is not None:
            log.info("migration hand-over: VM now runs here",
                     extra=fields(host=decision.host, vm=decision.vm_id))


def _lock(context: TickContext, vm_ids: Sequence[str], now: datetime,
          summary: TickSummary) -> set[str]:
    if not vm_ids:
        return set()
    with context.store.transaction() as tx:
        held = tx.try_lock_many(vm_ids, context.holder, now, context.lock_ttl_s)
    busy = len(vm_ids) - len(held)
    if busy:
        summary.skipped["locked"] += busy
        for vm_id in sorted(set(vm_ids) - held):
            log.info("devices lock busy, retried next tick",
                     extra=fields(host=summary.host, vm=vm_id))
    return held


def _unlock(context: TickContext, held: Iterable[str]) -> None:
    try:
        with context.store.transaction() as tx:
            tx.release_locks(held, context.holder)
    except StoreError as error:  # the lock expires by itself; the next tick retakes it
        log.warning("could not release devices locks: %s", error)


def _parse(context: TickContext, host: str, held: set[str], hashes: dict[str, str | None],
           xmls: dict[str, bytes], report_time: datetime,
           summary: TickSummary) -> list[Fetched]:
    good: list[Fetched] = []
    bad: list[tuple[str, str | None, bytes, str]] = []
    for vm_id in sorted(held):
        xml = xmls.get(vm_id)
        if xml is None:
            summary.errors["missing"] += 1
            log.info("not returned by the dump, retried next tick",
                     extra=fields(host=host, vm=vm_id))
            continue
        summary.fetched += 1
        try:
            parsed = parse_domain(xml, limits=context.limits)
            if parsed.uuid != vm_id:
                raise XmlError(f"the XML is for VM {parsed.uuid or 'without a <uuid>'}, "
                               f"not {vm_id}")
        except XmlError as error:
            bad.append((vm_id, hashes[vm_id], xml, str(error)))
            continue
        good.append(Fetched(vm_id, hashes[vm_id], xml, parsed))
    if bad:
        summary.errors["xml"] += len(bad)
        with context.store.transaction() as tx:
            for vm_id, bad_hash, xml, message in bad:
                tx.record_error(vm_id, bad_hash, message)
                tx.save_last_xml(vm_id, xml, report_time)
        for vm_id, bad_hash, _xml, message in bad:
            log.warning("unusable XML, not fetched again until its hash changes: %s", message,
                        extra=fields(host=host, vm=vm_id, kind="xml"))
    return good


def _apply_batch(context: TickContext, batch: Sequence[Fetched], report_time: datetime,
                 summary: TickSummary) -> None:
    try:
        applied = _apply(context, batch, report_time)
    except StoreError as error:
        if len(batch) == 1:
            summary.errors["db"] += 1
            log.warning("apply failed, hash kept, retried next tick: %s", error,
                        extra=fields(host=summary.host, vm=batch[0].vm_id, kind="db"))
            return
        log.warning("batch of %d VMs failed, retrying one by one: %s", len(batch), error,
                    extra=fields(host=summary.host, kind="db"))
        for one in batch:
            _apply_batch(context, [one], report_time, summary)
        return
    for converted, changes in applied:
        _count(context, summary, converted, changes)
        for emitter in context.emitters:
            emitter.handle(converted.vm_id, converted)


def _apply(context: TickContext, batch: Sequence[Fetched],
           report_time: datetime) -> list[tuple[ConvertedVm, VmChanges]]:
    with context.store.transaction() as tx:
        rows = tx.rows([item.vm_id for item in batch])
        items = [
            Correlated(convert(item.vm_id, item.parsed, rows[item.vm_id]),
                       rows[item.vm_id], item.hash, report_time)
            for item in batch
        ]
        changes = apply_correlated(tx, items)
        tx.save_last_xmls([(item.vm_id, item.xml) for item in batch], report_time)
    return [(item.converted, changes[item.converted.vm_id])
            for item in items if item.converted.vm_id in changes]


def _count(context: TickContext, summary: TickSummary, converted: ConvertedVm,
           changes: VmChanges) -> None:
    result = converted.result
    summary.applied += 1
    summary.rows_written += changes.rows_written
    summary.changed += bool(changes.rows_written)
    summary.rules.update(match.rule.value for match in result.matches)
    summary.new += len(changes.inserts)
    summary.unplugged += sum(1 for update in changes.updates if not update.is_plugged)
    summary.deleted += len(changes.deletes)
    summary.foreign += len(result.foreign)
    summary.conflicts += len(result.conflicts)
    for device in result.foreign:
        key = (converted.vm_id, f"foreign:{device.tag}:{device.alias.name}:{device.position}")
        if key not in context.logged_once:  # counted every tick, logged once
            context.logged_once.add(key)
            log.info("foreign device left alone: <%s> %s/%s", device.tag, device.type,
                     device.device, extra=fields(host=summary.host, vm=converted.vm_id,
                                                 alias=device.alias.name or None))
    for conflict in result.conflicts:
        log.warning("conflict under %s: %s", conflict.rule.value, conflict.reason,
                    extra=fields(host=summary.host, vm=converted.vm_id, rule=conflict.rule.value))
