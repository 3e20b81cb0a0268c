"""The event-driven source's bookkeeping: which domains' XML a poll reads, and what it keeps.

Pure logic (no libvirt, no XML), shared by two threads: libvirt's event thread marks
VMs dirty (``mark_dirty``, ``resync_soon``), the host's tick thread plans a poll
(``plan``) and settles it (``settle``). One lock guards what both touch; everything
else belongs to the tick thread. The rules are in docs/worker.md ("When a VM's XML is
read"):

* a domain the cache has no XML for is read (``new``);
* a domain a domain event named since the last poll is read (``event``);
* every domain is read on a full resync (``resync``): on the first poll after a
  (re)connect or a failed poll, and once ``resync_interval_s`` has passed on the
  monotonic clock since the last one (0: every poll, as ``monitor record`` wants);
* any other domain reports the digest of the XML read last time, with no read.

A read counts under the first reason that applies, in that order. The dirty set is
taken when the poll is planned, before any XML is read, so an event that arrives
while the poll reads is kept for the next poll (at worst one read too many, never one
too few).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from enum import Enum
from typing import NamedTuple


class ReadReason(str, Enum):
    NEW = "new"
    EVENT = "event"
    RESYNC = "resync"


class Document(NamedTuple):
    """A domain's XML as read, and the devices digest of exactly those bytes."""

    xml: bytes
    digest: str


def reads_for(present: Iterable[str], cached: Collection[str], dirty: Collection[str],
              resync: bool) -> dict[str, ReadReason]:
    """Which of the ``present`` domains to read, and why (the rules above)."""
    reads: dict[str, ReadReason] = {}
    for vm_id in present:
        if vm_id not in cached:
            reads[vm_id] = ReadReason.NEW
        elif vm_id in dirty:
            reads[vm_id] = ReadReason.EVENT
        elif resync:
            reads[vm_id] = ReadReason.RESYNC
    return reads


class PollPlan(NamedTuple):
    reads: dict[str, ReadReason]
    resync: bool
    started: float  # monotonic time the plan was made


class XmlCache:
    """One host's documents, its dirty set, and when it last resynced."""

    def __init__(self, resync_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if resync_interval_s < 0:
            raise ValueError(f"resync interval {resync_interval_s!r}: must not be negative")
        self.resync_interval_s = resync_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        # Shared with the event thread, under the lock:
        self._dirty: set[str] = set()
        self._events: Counter[str] = Counter()
        self._resync_due = True
        # The tick thread's own:
        self._documents: dict[str, Document] = {}
        self._last_resync: float | None = None
        self._reads: Counter[str] = Counter()
        self._resyncs = 0

    # --- the event thread ------------------------------------------------------------

    def mark_dirty(self, vm_id: str, event: str | None = None) -> None:
        """A domain event (or a change this process made) named the VM: read it next poll.

        ``event`` is the event's type, counted for the metrics; ``None`` counts nothing.
        """
        with self._lock:
            self._dirty.add(vm_id)
            if event is not None:
                self._events[event] += 1

    def resync_soon(self) -> None:
        """Events may have been lost (a new connection, a failed poll): read every VM next poll."""
        with self._lock:
            self._resync_due = True

    # --- the tick thread -------------------------------------------------------------

    def plan(self, present: Iterable[str]) -> PollPlan:
        """The reads of a poll whose bulk listing found ``present``; takes the dirty set."""
        now = self._clock()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            resync = self._resync_due or (
                self._last_resync is not None
                and now - self._last_resync >= self.resync_interval_s)
            self._resync_due = False
        return PollPlan(reads_for(present, self._documents, dirty, resync), resync, now)

    def settle(self, plan: PollPlan, present: Collection[str],
               read: Mapping[str, Document]) -> None:
        """Keep what the poll read; forget domains no longer listed or gone meanwhile.

        A planned read missing from ``read`` is a domain that vanished between the
        listing and its XML: it is forgotten, and not reported.
        """
        for vm_id, reason in plan.reads.items():
            if vm_id in read:
                self._documents[vm_id] = read[vm_id]
                self._reads[reason.value] += 1
            else:
                self._documents.pop(vm_id, None)
        for vm_id in [vm for vm in self._documents if vm not in present]:
            del self._documents[vm_id]
        if plan.resync:
            self._last_resync = plan.started
            self._resyncs += 1

    def document(self, vm_id: str) -> Document | None:
        return self._documents.get(vm_id)

    def forget(self) -> None:
        """Drop every document (the source was closed); the next poll reads them all."""
        self._documents.clear()
        self._last_resync = None
        self.resync_soon()

    def take_counts(self) -> tuple[Counter[str], Counter[str], int]:
        """(reads by reason, events by type, resyncs) since the previous call."""
        with self._lock:
            events, self._events = self._events, Counter()
        reads, self._reads = self._reads, Counter()
        resyncs, self._resyncs = self._resyncs, 0
        return reads, events, resyncs
