"""One tick for one host: poll, pick, one dump, parse, correlate, apply.

The worker, ``monitor replay`` and the benchmark all run this function; only the host
source differs. A VM's new hash is written only in the transaction that applied its
XML, by the context's transactional adapter (the database one); the emitters get a VM
only once that transaction has committed (docs/architecture.md, "Adapters"). Everything
that goes wrong leaves the old hash, so the next tick tries again:

* the host fails to answer the poll or the dump -> nothing written but statuses (and
  a failed poll changes no status at all);
* a VM of this host that two successful polls in a row did not report -> ``Down``;
* a VM's devices lock is held (a device command is changing it) -> skipped;
* the dump leaves a VM out -> retried next tick;
* a malformed XML, one over the limits, or one for another VM -> ``last_error_hash``/
  ``last_error``;
* a host that answers garbage (a poll or dump that is no mapping) -> a ``HostGarbage``
  for that host; a VM report of the wrong shape -> skipped (``bad-report``); XML for a
  VM not asked for -> ignored (``unasked``);
* a DB error in a batch -> the batch is rolled back and retried VM by VM;
* the DB unavailable (connection lost, SQLite locked) -> the tick stops with a
  StoreError and the worker backs off; committed batches stay, the rest is redone;
* the worker no longer holds the host's lease (``monitor run`` only; docs/operations.md,
  "Many workers") -> the fence raises ``LeaseLost`` in the transaction that found out,
  which rolls back; the tick stops (``errors[lease-lost]``), releasing its own locks.

A status (and a host, at a migration hand-over) is written only if the VM's stored host
and status are still those the tick read, so another host's worker's hand-over, committed
in between, is never overwritten.

``fault_point`` calls mark where the crash-safety tests kill the worker
(``monitor.faults``).

While a tick fetches and applies a VM it holds that VM's devices lock, so a hot-plug
cannot commit a new row between our dump and our apply (and be unplugged by an XML
read before it, oVirt BZ 1927243). Every transaction that writes a VM checks first,
in that transaction, that the tick still holds that lock (``monitor.store.fence``):
a VM whose lock expired or was taken again is left untouched (``skipped[lock-lost]``)
for the next tick. A long tick renews its locks in its batch transactions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import NamedTuple

from monitor import collector
from monitor.adapters.base import Correlated, Decided
from monitor.errors import HostError, HostGarbage, LeaseLost, StoreError
from monitor.faults import fault_point
from monitor.hosts.source import CountsReads, HostSource, VmReport
from monitor.legacy.converter import convert
from monitor.legacy.dicts import ConvertedVm
from monitor.logfields import fields
from monitor.model.ids import ids_in_several_spellings
from monitor.model.lease import HostLease
from monitor.model.rows import VmState
from monitor.store import Fence, LastXmls
from monitor.tick.bookkeeping import VANISHED_AFTER, Plan, Skip, plan, vanished
from monitor.tick.context import TickContext
from monitor.tick.documents import (
    Documents,
    Fetched,
    Unusable,
    read_document,
    read_documents,
)
from monitor.tick.logged_once import device_identity
from monitor.tick.summary import ErrorKind, TickSummary

__all__ = ["TickContext", "run_tick"]  # TickContext: monitor.tick.context, used from here

log = logging.getLogger("monitor.tick")


@dataclass(slots=True)
class TickLocks:
    """The devices locks this tick still holds, and when it last renewed them."""

    fence: Fence
    held: set[str]
    renewed_at: float  # the monotonic clock

    def renewal_due(self, context: TickContext) -> bool:
        return context.clock.monotonic() - self.renewed_at >= context.lock_ttl_s / 3


def run_tick(source: HostSource, context: TickContext,
             lease: HostLease | None = None) -> TickSummary:
    """One tick; with ``lease`` (``monitor run``) every write is fenced by it too."""
    started = time.perf_counter()
    summary = TickSummary(host=source.name)
    try:
        # Nothing a tick builds is in a cycle (monitor/collector.py); its transactions
        # share one connection (Store.pinned).
        with collector.paused(), context.store.pinned():
            _tick(source, context, summary, lease)
    except LeaseLost as error:
        summary.lease_lost = True  # logged once: the lease is marked lost, no tick follows
        summary.errors[ErrorKind.LEASE_LOST] += 1
        log.warning("%s", error, extra=fields(host=summary.host, kind=ErrorKind.LEASE_LOST))
    except StoreError:
        summary.stopped = True  # the metrics count it; the worker logs it and backs off
        raise
    finally:
        summary.duration_s = time.perf_counter() - started
        if context.on_tick is not None:
            context.on_tick(summary)
    return summary


def _tick(source: HostSource, context: TickContext, summary: TickSummary,
          lease: HostLease | None) -> None:
    host = source.name
    try:
        polled = source.poll()
        reports = _checked_reports(context, polled, summary)
    except HostError as error:
        _host_failed(summary, error, "poll")
        return
    finally:
        _count_reads(source, summary)
    polled_at = context.process_utc()  # SQLite's report time: before the write lock
    summary.polled = len(reports)
    fence = Fence(context.holder, context.process_utc, lease)
    leftover = context.unreleased.get(host, {})
    # Locks a failed tick left to release are written; else the first read only reads.
    with context.store.transaction() if leftover else context.store.read() as tx:
        known, read_at = tx.vm_states_and_host(reports, host, context.process_utc)
        report_time = tx.report_time(polled_at, read_at)
        for token, vm_ids in leftover.items():
            tx.release_locks(vm_ids, context.holder, token)
    context.unreleased.pop(host, None)
    stored = {vm_id: known[vm_id] for vm_id in reports if vm_id in known}
    on_host = {vm_id: vm.status for vm_id, vm in known.items() if vm.host == host}
    decided = plan(host, reports, report_time, stored, read_at)
    _log_skips(context, host, decided, reports)
    summary.skipped.update(decided.skipped)
    _store_statuses(context, fence, host, decided, stored)
    _store_vanished(context, fence, host, on_host, polled, summary)
    fault_point("after-plan")

    held = _lock(context, fence, _not_backing_off(context, decided.to_fetch, summary), summary)
    if not held:
        return
    # A VM's lock is released in the transaction that applies its XML (or records it as
    # bad); what is left (missing from the dump, failed, host error) is released last.
    locks = TickLocks(fence, set(held), context.clock.monotonic())
    still_held = locks.held
    db_failed = False
    try:
        try:
            xmls = _checked_dump(source.dump(sorted(held)), host)
        except HostError as error:
            _host_failed(summary, error, "dump")
            return
        fault_point("after-dump")
        hashes = {d.vm_id: d.hash for d in decided.decisions if d.vm_id in held}
        documents = read_documents(held, hashes, xmls)  # no I/O; each read in its batch
        _count_documents(context, summary, documents)
        fetched = documents.fetched
        for start in range(0, len(fetched), context.batch_size):
            if start:
                fault_point("between-batches")
            batch = fetched[start:start + context.batch_size]
            still_held -= _apply_batch(context, locks, batch, report_time, summary)
        fault_point("before-unlock")
    except StoreError:  # the DB is unavailable: the worker logs that once and backs off
        db_failed = True
        raise
    finally:
        if still_held:
            _unlock(context, fence, host, still_held, quiet=db_failed)


def _count_reads(source: HostSource, summary: TickSummary) -> None:
    """What a source that reads XML in its poll did (the libvirt source): the summary's."""
    if _counts_reads(type(source)):
        counts = source.take_counts()
        summary.read.update(counts.reads)
        summary.events.update(counts.events)
        summary.resyncs += counts.resyncs
        summary.reconnects += counts.reconnects


@cache
def _counts_reads(kind: type) -> bool:
    """Whether a source of this class is a ``CountsReads``: asked once per class, as a
    protocol's ``isinstance`` costs ~1 % of a partial tick (docs/performance.md, "The
    seventh wave")."""
    return issubclass(kind, CountsReads)


def _host_failed(summary: TickSummary, error: HostError, action: str) -> None:
    summary.host_error = error.kind
    summary.errors[ErrorKind.of_host(error.kind)] += 1
    log.warning("%s failed: %s", action, error, extra=fields(host=summary.host, kind=error.kind))


def _checked_reports(context: TickContext, reports, summary: TickSummary) -> dict[str, VmReport]:
    """The poll's reports a tick can use: garbage for the whole host is a ``HostGarbage``,
    a VM report of the wrong shape, or of a VM id the answer spells two ways (which
    report is right cannot be told; docs/operations.md "Host answers"), is skipped,
    logged once and counted as ``bad-report``.

    Sources built on a remote agent's JSON can hand over anything; the tick must not
    crash on it nor let it reach the DB.
    """
    if not isinstance(reports, Mapping):
        raise HostGarbage(f"host {summary.host}: the poll answered a {type(reports).__name__}, "
                          "not VM reports")
    context.logged_once.polled(summary.host, map(str, reports))
    good: dict[str, VmReport] = {}
    spelled_twice = {spelling: spellings
                     for spellings in ids_in_several_spellings(reports).values()
                     for spelling in spellings}
    for vm_id, report in reports.items():
        reason = _bad_report(vm_id, report)
        if reason is None and vm_id in spelled_twice:
            # Which spelling's report is right cannot be told: neither is used.
            reason = f"the VM id is reported as {', '.join(spelled_twice[vm_id])}"
        if reason is None:
            good[vm_id] = report
            continue
        summary.errors[ErrorKind.BAD_REPORT] += 1
        context.logged_once.log(log, logging.WARNING, summary.host, str(vm_id),
                                ErrorKind.BAD_REPORT, "bad report skipped: %s", reason,
                                kind=ErrorKind.BAD_REPORT)
    return good


def _bad_report(vm_id, report) -> str | None:
    # The common case first, the same answer as below: a source's own VmReport of
    # strings (~0.2 µs less a VM of every poll: docs/performance.md, "The eleventh wave").
    if (type(report) is VmReport and type(vm_id) is str and type(report[0]) is str
            and (report[1] is None or type(report[1]) is str)):
        return None
    if not isinstance(vm_id, str):
        return f"the VM id is a {type(vm_id).__name__}, not a string"
    if not isinstance(report, tuple) or len(report) != 2:
        return f"the report is a {type(report).__name__}, not (status, hash)"
    if not isinstance(report[0], str):
        return f"the status is a {type(report[0]).__name__}, not a string"
    if report[1] is not None and not isinstance(report[1], str):
        return f"the hash is a {type(report[1]).__name__}, not a string"
    return None


def _log_skips(context: TickContext, host: str, decided: Plan, reports) -> None:
    for decision in decided.decisions:
        if decision.skip in (Skip.UNKNOWN_VM, Skip.UNKNOWN_STATUS):
            context.logged_once.log(log, logging.WARNING, host, decision.vm_id, decision.skip,
                                    "ignored: %s (status %r)", decision.skip.value,
                                    reports[decision.vm_id].status)


def _store_statuses(context: TickContext, fence: Fence, host: str, decided: Plan,
                    stored: dict[str, VmState]) -> None:
    changes = [d for d in decided.status_changes if d.status is not None]
    if not changes:
        return
    with context.store.transaction() as tx:
        fence.check(tx)  # statuses are host-wide: no devices lock of their own
        written = {decision.vm_id for decision in changes
                   if tx.set_status(decision.vm_id, decision.status, host=decision.host,
                                    read=stored[decision.vm_id])}
    for decision in changes:
        if decision.vm_id not in written:
            log.info("status not stored: the VM's host or status changed since this tick "
                     "read it", extra=fields(host=host, vm=decision.vm_id))
        elif decision.host is not None:
            log.info("migration hand-over: VM now runs here",
                     extra=fields(host=decision.host, vm=decision.vm_id))


def _store_vanished(context: TickContext, fence: Fence, host: str,
                    on_host: Mapping[str, str | None], polled: Mapping,
                    summary: TickSummary) -> None:
    """VMs of this host that its successful polls stopped reporting become ``Down``
    (docs/worker.md, "A VM that vanished"); each is logged once, when it is stored."""
    found = vanished(on_host, polled, context.missing.get(host, {}))
    context.missing[host] = found.misses
    if not found.down:
        return
    with context.store.transaction() as tx:
        fence.check(tx)  # like statuses: host-wide, no devices lock of their own
        down = [vm_id for vm_id in found.down
                if tx.set_down_if_still(vm_id, host, on_host[vm_id])]
    summary.vanished += len(down)
    for vm_id in down:
        log.warning("vanished: not reported by %d polls of its host in a row, now Down",
                    VANISHED_AFTER, extra=fields(host=host, vm=vm_id, kind="vanished"))


def _lock(context: TickContext, fence: Fence, vm_ids: Sequence[str],
          summary: TickSummary) -> frozenset[str]:
    if not vm_ids:
        return frozenset()
    # One statement on PostgreSQL, which needs no transaction of its own (the fence).
    with context.store.one_statement() as tx:
        held = fence.take(tx, vm_ids, context.lock_ttl_s)
    busy = len(vm_ids) - len(held)
    if busy:
        summary.skipped[Skip.LOCKED] += busy
        for vm_id in sorted(set(vm_ids) - held):
            log.info("devices lock busy, retried next tick",
                     extra=fields(host=summary.host, vm=vm_id))
    return held


def _unlock(context: TickContext, fence: Fence, host: str, held: set[str],
            quiet: bool = False) -> None:
    """Release our devices locks; if the DB fails, this host's next tick releases them.

    ``quiet`` when the tick is already failing on the DB: that failure is the one line
    an operator needs, not a second one for the same outage.
    """
    try:
        with context.store.transaction() as tx:
            fence.release(tx, held)
    except StoreError as error:
        context.unreleased.setdefault(host, {}).setdefault(fence.token, set()).update(held)
        log.log(logging.INFO if quiet else logging.WARNING,
                "could not release devices locks: %s", error)


def _checked_dump(xmls, host: str) -> Mapping:
    """The dump's answer, if it is one (a mapping); else a ``HostGarbage``, as for the poll."""
    if not isinstance(xmls, Mapping):
        raise HostGarbage(f"host {host}: the dump answered a {type(xmls).__name__}, "
                          "not XML by VM")
    return xmls


def _count_documents(context: TickContext, summary: TickSummary, documents: Documents) -> None:
    """Count and log what the dump returned (each document is read in its batch)."""
    _log_unasked(context, summary.host, documents.unasked, summary)
    for vm_id in documents.missing:
        summary.errors[ErrorKind.MISSING] += 1
        log.info("not returned by the dump, retried next tick",
                 extra=fields(host=summary.host, vm=vm_id))
    summary.fetched += len(documents.fetched)


def _lost_locks(summary: TickSummary, lost: set[str]) -> None:
    """VMs whose devices lock this tick no longer held when it came to write them."""
    summary.skipped[Skip.LOCK_LOST] += len(lost)
    for vm_id in sorted(lost):
        log.info("devices lock lost before the apply (expired or taken again): VM left "
                 "untouched, retried next tick", extra=fields(host=summary.host, vm=vm_id))


def _log_unasked(context: TickContext, host: str, unasked: Sequence[str],
                 summary: TickSummary) -> None:
    """XML for a VM this tick did not ask for is ignored: its hash was never decided on,
    and its lock is not ours. Counted every tick, logged once per VM."""
    for vm_id in unasked:
        summary.errors[ErrorKind.UNASKED] += 1
        context.logged_once.log(log, logging.WARNING, host, vm_id, ErrorKind.UNASKED,
                                "the dump returned a VM it was not asked for: ignored",
                                kind=ErrorKind.UNASKED)


class Applied(NamedTuple):
    """What a tick keeps of one VM it applies, until the batch commits: its changes and
    what the summary and the logs need, not its parsed devices, rows or dicts (a batch
    that holds those runs ~1.5 x slower: docs/performance.md, "The fifth wave"); the
    converted VM itself only for the emitters, when there are some."""

    decided: Decided
    rules: tuple[str, ...]  # the rule of each matched device
    foreign: tuple[tuple[Hashable, str, str, str, str | None], ...]  # identity, tag, type,
    #                                                                  device, alias
    conflicts: tuple[tuple[str, str], ...]  # rule, reason
    converted: ConvertedVm | None


class BatchOutcome(NamedTuple):
    applied: list[Applied]  # committed, hash advanced
    unusable: list[Unusable]  # committed: recorded as the VM's last error
    lost: set[str]  # lock lost before the apply: untouched


def _apply_batch(context: TickContext, locks: TickLocks, batch: Sequence[Fetched],
                 report_time: datetime, summary: TickSummary) -> set[str]:
    """Apply a batch in one transaction; the ids whose locks are done with (released by
    that transaction, or lost before it)."""
    try:
        outcome = _apply(context, locks, batch, report_time)
    except StoreError as error:
        if error.unavailable:
            raise  # VM by VM would fail alike: the whole tick is retried after a backoff
        if len(batch) == 1:
            _vm_failed(context, locks.fence, batch[0].vm_id, error, summary)
            return set()
        log.info("batch of %d VMs failed, retrying one by one: %s", len(batch), error,
                 extra=fields(host=summary.host, kind=ErrorKind.DB))
        released: set[str] = set()
        for one in batch:
            released |= _apply_batch(context, locks, [one], report_time, summary)
        return released
    _lost_locks(summary, outcome.lost)
    _count_unusable(summary, outcome.unusable)
    for applied in outcome.applied:
        vm_id = applied.decided.vm_id
        if context.vm_backoff is not None:
            context.vm_backoff.succeeded(vm_id)
        _count(context, summary, applied)
        for emitter in context.emitters:  # committed: the other adapters (with emitters,
            emitter.handle(vm_id, applied.converted)  # each VM's converted dicts were kept)
    fault_point("after-commit")
    return {item.vm_id for item in batch}


def _not_backing_off(context: TickContext, vm_ids: list[str],
                     summary: TickSummary) -> list[str]:
    """The VMs to fetch but those waiting out their own backoff (``skipped[backoff]``)."""
    if context.vm_backoff is None or not context.vm_backoff.not_before:
        return vm_ids
    now = context.clock.monotonic()
    ready = [vm_id for vm_id in vm_ids if not context.vm_backoff.waiting(vm_id, now)]
    summary.skipped[Skip.BACKOFF] += len(vm_ids) - len(ready)
    return ready


def _vm_failed(context: TickContext, fence: Fence, vm_id: str, error: StoreError,
               summary: TickSummary) -> None:
    """One VM's apply failed alone: count it, record it in its ``last_error`` (its hash
    stays, so it is fetched again), and back that VM off alone."""
    summary.errors[ErrorKind.DB] += 1
    delay = None
    if context.vm_backoff is not None:
        delay = context.vm_backoff.failed(vm_id, context.clock.monotonic())
    log.warning("apply failed, hash kept, retried %s: %s",
                "next tick" if delay is None else f"in {delay:g}s", error,
                extra=fields(host=summary.host, vm=vm_id, kind=ErrorKind.DB))
    try:
        with context.store.transaction() as tx:
            if fence.check(tx, [vm_id]):
                tx.record_failure(vm_id, str(error))
    except StoreError as again:  # the VM's own row is what fails: the log line says it
        log.info("could not record the failure: %s", again,
                 extra=fields(host=summary.host, vm=vm_id, kind=ErrorKind.DB))


def _apply(context: TickContext, locks: TickLocks, batch: Sequence[Fetched],
           report_time: datetime) -> BatchOutcome:
    """One transaction: each VM whose lock is still held read, correlated and decided in
    turn, then written (or its document recorded as unusable)."""
    fence = locks.fence
    database = context.database
    keep_converted = bool(context.emitters)
    with context.store.transaction() as tx:
        vm_ids = [item.vm_id for item in batch]
        # A concurrent apply of these VMs commits before we read (the database's clock
        # read with the lock, once it is held).
        now = tx.lock_vms(vm_ids, context.process_utc)
        # Their locks released by this commit, and their rows, read now they are ours.
        kept, rows = fence.claim(tx, vm_ids, now)
        decided: list[Applied] = []
        unusable: list[Unusable] = []
        last_xmls: list[tuple[str, bytes]] = []
        for item in batch:
            if item.vm_id not in kept:
                continue
            # One VM from its bytes to its changes while its tree and objects are in the
            # cache; only the changes (and the counts) are kept for the batch's writes.
            document = read_document(item, context.limits)
            last_xmls.append((item.vm_id, document.xml))
            if isinstance(document, Unusable):
                unusable.append(document)
                continue
            vm_rows = rows[item.vm_id]
            converted = convert(item.vm_id, document.parsed, vm_rows)
            changes = database.decide(Correlated(converted, vm_rows, item.hash, report_time))
            decided.append(_applied(Decided(item.vm_id, item.hash, report_time, changes),
                                    converted, keep_converted))
        # The batch's writes, its XMLs as read included: one statement on PostgreSQL.
        advanced = database.apply(tx, [vm.decided for vm in decided], now,
                                  LastXmls(last_xmls, report_time))
        for bad in unusable:
            tx.record_error(bad.vm_id, bad.hash, bad.reason)
        renewed = locks.renewal_due(context)
        if renewed:
            fence.renew(tx, locks.held - set(vm_ids), context.lock_ttl_s)
        fault_point("in-batch")
    if renewed:
        locks.renewed_at = context.clock.monotonic()
    applied = [vm for vm in decided if vm.decided.vm_id in advanced]
    return BatchOutcome(applied, unusable, set(vm_ids) - kept)


def _applied(decided: Decided, converted: ConvertedVm, keep_converted: bool) -> Applied:
    result = converted.result
    return Applied(
        decided,
        tuple(match.rule.value for match in result.matches),
        tuple((device_identity(device), device.tag, device.type, device.device,
               device.alias.name or None) for device in result.foreign),
        tuple((conflict.rule.value, conflict.reason) for conflict in result.conflicts),
        converted if keep_converted else None,
    )


def _count_unusable(summary: TickSummary, unusable: Sequence[Unusable]) -> None:
    """Unusable documents recorded (committed): not fetched again until the hash changes."""
    if unusable:
        summary.errors[ErrorKind.XML] += len(unusable)
    for bad in unusable:
        log.warning("unusable XML, not fetched again until its hash changes: %s", bad.reason,
                    extra=fields(host=summary.host, vm=bad.vm_id, kind=ErrorKind.XML))


def _count(context: TickContext, summary: TickSummary, applied: Applied) -> None:
    changes = applied.decided.changes
    vm_id = applied.decided.vm_id
    summary.applied += 1
    summary.rows_written += changes.rows_written
    summary.changed += bool(changes.rows_written)
    summary.rules.update(applied.rules)
    summary.new += len(changes.inserts)
    summary.unplugged += sum(1 for update in changes.updates if not update.is_plugged)
    summary.deleted += len(changes.deletes)
    summary.foreign += len(applied.foreign)
    summary.conflicts += len(applied.conflicts)
    for identity, tag, type_, device, alias in applied.foreign:  # counted every tick
        context.logged_once.log(log, logging.INFO, summary.host, vm_id, ("foreign", identity),
                                "foreign device left alone: <%s> %s/%s", tag, type_, device,
                                alias=alias)
    for rule, reason in applied.conflicts:
        log.warning("conflict under %s: %s", rule, reason,
                    extra=fields(host=summary.host, vm=vm_id, rule=rule))
