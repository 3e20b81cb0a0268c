"""Which VMs of one host's poll to fetch, and which statuses and hosts to store.

Pure: a host's reports and the stored VMs in, a ``Plan`` out (docs/worker.md, "One tick of one host"). The
tick fetches ``plan.to_fetch`` in one batch and stores ``plan.status_changes``; the
hash itself is never stored here, only once its XML has been applied.

The rules, for each reported VM, in order:

1. unknown to the DB -> skip ``unknown-vm`` (the caller logs it once);
2. reported before the stored hash's report time -> skip ``older-report``; a stored
   report time later than ``now`` (the database's clock when the VMs were read) comes
   from before a clock step back and is not trusted (``monitor.clock.older_than_stored``);
3. ``Up`` while the stored status is ``Down`` (a migration that finished between two
   polls, a restart elsewhere, a VM started again) -> the VM moves to this host with
   status ``Up`` and is fetched, even when its hash is the stored one (not without a
   hash, nor with the hash known to be bad);
4. from a host that does not run it -> skip ``other-host``, except ``Up`` while the
   stored status is ``Migration Source``: the migration's hand-over, the VM moves to
   this host with status ``Up`` and goes on through the hash rules;
5. a status outside both sets below -> skip ``unknown-status`` (the caller logs it);
6. from its own host, a status that differs is stored, whatever it is; only the
   RECONCILED statuses go on to the hash rules, the others skip ``not-reconciled``;
7. no hash yet -> ``no-hash``; the stored hash -> ``unchanged``; the hash whose XML
   failed last time -> ``known-bad-hash``; any other hash -> fetch.

And for the VMs a successful poll did not report, ``vanished`` (docs/worker.md, "A VM
that vanished"): a VM the DB places on the polled host with a RECONCILED status other
than ``Migration Source`` that ``VANISHED_AFTER`` consecutive successful polls of that
host did not report becomes ``Down``. The count is the caller's memory, passed in and
handed back; failed polls and ticks that did not poll the host do not call this.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from enum import StrEnum
from operator import attrgetter
from typing import NamedTuple, Protocol

from monitor.clock import older_than_stored
from monitor.model.rows import VmState

UP = "Up"
DOWN = "Down"
MIGRATION_SOURCE = "Migration Source"
VANISHED_AFTER = 2  # consecutive successful polls of its host without the VM
RECONCILED = frozenset(
    {"Up", "Paused", "Powering up", "Powering down", "Rebooting", "Migration Source"}
)
NOT_RECONCILED = frozenset(
    {"WaitForLaunch", "Migration Destination", "Saving State", "Restoring state", "Down"}
)


class Reported(Protocol):
    """What the plan reads of a report: ``monitor.hosts.source.VmReport`` fits.

    Declared here rather than imported, so the pure core reaches no host source.
    """

    @property
    def status(self) -> str: ...

    @property
    def hash(self) -> str | None: ...


class Skip(StrEnum):
    """Why a reported VM is not fetched (or not written) this tick: the keys of the
    summary's ``skipped[...]`` and the ``reason`` label of ``monitor_vms_skipped_total``
    (docs/worker.md, "The summary line"; docs/operations.md, "Metrics").

    The plan gives the first eight; the tick the last three.
    """

    UNKNOWN_VM = "unknown-vm"
    OTHER_HOST = "other-host"
    OLDER_REPORT = "older-report"
    NO_HASH = "no-hash"
    NOT_RECONCILED = "not-reconciled"
    UNKNOWN_STATUS = "unknown-status"
    KNOWN_BAD = "known-bad-hash"
    UNCHANGED = "unchanged"
    LOCKED = "locked"  # a device command holds the VM's devices lock
    LOCK_LOST = "lock-lost"  # fetched, but the devices lock was lost before the apply
    BACKOFF = "backoff"  # the VM's apply failed alone before: it waits out its own delay


class Decision(NamedTuple):
    """What to do with one reported VM.

    ``status`` is the status to store (``None``: leave it); ``host`` is the VM's new
    host on a migration hand-over (``None``: leave it); ``hash`` is the reported one.
    """

    vm_id: str
    fetch: bool
    skip: Skip | None
    status: str | None
    host: str | None
    hash: str | None

    @property
    def changes_record(self) -> bool:
        return self.status is not None or self.host is not None


class Plan(NamedTuple):
    """The decisions of one host's poll. A VM with nothing to do (rule 7's ``unchanged``,
    no status or host to store: most VMs of most ticks) is only named in ``unchanged``,
    not given a ``Decision``, so a steady host costs a few comparisons per VM
    (docs/performance.md, "The eighth wave")."""

    decisions: tuple[Decision, ...]  # sorted by vm id; every reported VM but ``unchanged``
    unchanged: tuple[str, ...] = ()  # skipped ``unchanged``, nothing to store; poll order

    @property
    def to_fetch(self) -> list[str]:
        return [decision.vm_id for decision in self.decisions if decision.fetch]

    @property
    def status_changes(self) -> list[Decision]:
        return [decision for decision in self.decisions if decision.changes_record]

    @property
    def skipped(self) -> Counter[Skip]:
        counts = Counter(decision.skip for decision in self.decisions if decision.skip)
        if self.unchanged:
            counts[Skip.UNCHANGED] += len(self.unchanged)
        return counts


def plan(
    host: str,
    reports: Mapping[str, Reported],
    report_time: datetime,
    stored: Mapping[str, VmState],
    now: datetime | None = None,
) -> Plan:
    """Decide for every VM in one host's poll.

    ``report_time`` is the database's clock when the poll returned; ``now`` the
    database's clock when ``stored`` was read (``None``: every stored time is trusted).
    """
    report_time = _as_utc(report_time)
    now = None if now is None else _as_utc(now)
    decisions: list[Decision] = []
    unchanged: list[str] = []
    for vm_id, report in reports.items():
        record = stored.get(vm_id)
        if record is not None and _unchanged(host, report, report_time, record):
            unchanged.append(vm_id)
        else:
            decisions.append(decide(host, vm_id, report, report_time, record, now))
    decisions.sort(key=_BY_VM)
    return Plan(tuple(decisions), tuple(unchanged))


def _unchanged(host: str, report: Reported, report_time: datetime, record: VmState) -> bool:
    """Whether ``decide`` would answer ``unchanged`` with nothing to store, by the rules'
    shortest path: the VM's own host, a reconciled status as stored, a hash set and
    as stored, the report not older than the stored one (rules 2, 4, 6 and 7). Any other
    VM goes through ``decide``; the tests hold both to the same answers."""
    if record.host != host or report.status != record.status or report.status not in RECONCILED:
        return False
    if not report.hash or report.hash != record.hash:
        return False
    stored_time = record.hash_time
    # Without ``now`` a stored time in the future counts as newer: such a VM goes
    # through ``decide``, which reads ``now`` (rule 2).
    return stored_time is None or not older_than_stored(report_time, _as_utc(stored_time))


_BY_VM = attrgetter("vm_id")


def decide(
    host: str, vm_id: str, report: Reported, report_time: datetime, record: VmState | None,
    now: datetime | None = None,
) -> Decision:
    """One VM's decision (rules 1-6; the hash rules are ``_by_hash``)."""
    reported_hash = report.hash or None  # "" is "not yet" too
    if record is None:
        return Decision(vm_id, False, Skip.UNKNOWN_VM, None, None, reported_hash)
    stored_time = record.hash_time
    if stored_time is not None and older_than_stored(report_time, _as_utc(stored_time), now):
        return Decision(vm_id, False, Skip.OLDER_REPORT, None, None, reported_hash)
    status = report.status
    if status == UP and record.status == DOWN:
        moved = host if record.host != host else None
        return _started_again(vm_id, moved, reported_hash, record)
    if record.host != host:
        if status == UP and record.status == MIGRATION_SOURCE:
            return _by_hash(vm_id, UP, host, reported_hash, record)
        return Decision(vm_id, False, Skip.OTHER_HOST, None, None, reported_hash)
    new_status = status if status != record.status else None
    if status in RECONCILED:
        return _by_hash(vm_id, new_status, None, reported_hash, record)
    if status in NOT_RECONCILED:
        return Decision(vm_id, False, Skip.NOT_RECONCILED, new_status, None, reported_hash)
    return Decision(vm_id, False, Skip.UNKNOWN_STATUS, None, None, reported_hash)


def _started_again(vm_id: str, moved: str | None, reported_hash: str | None,
                   record: VmState) -> Decision:
    """Rule 3: a VM that was ``Down`` runs again; its devices are read again."""
    if reported_hash is None:
        skip = Skip.NO_HASH
    elif reported_hash == record.last_error_hash and reported_hash != record.hash:
        skip = Skip.KNOWN_BAD
    else:
        skip = None
    return Decision(vm_id, skip is None, skip, UP, moved, reported_hash)


def _by_hash(vm_id: str, status: str | None, host: str | None, reported_hash: str | None,
             record: VmState) -> Decision:
    """Rule 7: fetch only a hash that is set, new, and not known to be bad."""
    if reported_hash is None:
        skip = Skip.NO_HASH
    elif reported_hash == record.hash:
        skip = Skip.UNCHANGED
    elif reported_hash == record.last_error_hash:
        skip = Skip.KNOWN_BAD
    else:
        skip = None
    return Decision(vm_id, skip is None, skip, status, host, reported_hash)


def _as_utc(moment: datetime) -> datetime:
    """A naive datetime (as some DBs hand back) is UTC by the engine's convention."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


class Vanishing(NamedTuple):
    """What one successful poll of a host says about the VMs it did not report."""

    down: tuple[str, ...]  # VMs to store ``Down``, sorted
    misses: dict[str, int]  # the others still missing: consecutive polls without them


def vanished(on_host: Mapping[str, str | None], reported: Collection[str],
             misses: Mapping[str, int]) -> Vanishing:
    """``on_host``: the stored status of every VM the DB places on the polled host;
    ``reported``: the VM ids its poll returned; ``misses``: the count handed back by
    the previous successful poll of that host. A VM reported, or no longer stored on
    the host with a status that is watched, starts again from zero."""
    down: list[str] = []
    still: dict[str, int] = {}
    for vm_id, status in on_host.items():
        if vm_id in reported or status not in RECONCILED or status == MIGRATION_SOURCE:
            continue
        count = misses.get(vm_id, 0) + 1
        if count >= VANISHED_AFTER:
            down.append(vm_id)
        else:
            still[vm_id] = count
    return Vanishing(tuple(sorted(down)), still)
