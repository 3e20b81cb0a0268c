"""The lease keeper: which hosts this worker ticks (docs/operations.md, "Many workers").

At start the worker joins (its heartbeat, a lease row per configured host; on SQLite a
second live worker is refused). Then a thread renews, every ``lease_ttl / 3`` (or every
tick interval, if that is shorter), the heartbeat and all of this worker's leases in one
statement, and brings what it holds to its fair share (``fair_share``):

* below the share: claim free or expired leases (a takeover of an expired one also
  releases the devices locks its previous owner's ticks held on that host's VMs);
* above it (a worker joined): hand back one lease per renewal, an idle one, so load
  moves smoothly and no tick is cut;
* a lease the renewal no longer returns (another worker took it over while this one
  could not renew), or no renewal for a whole TTL: the host's job stops; a tick in
  flight stops before its next transaction, and the fence refuses it in the database.

While a renewal fails the worker is unhealthy; while the shares are uneven, or another
worker's lease is about to expire, the next renewal comes sooner. The host jobs are the
scheduler's (``HostSlots``); the keeper only says which hosts to tick, under which lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from monitor.errors import StoreError
from monitor.logfields import fields
from monitor.model.lease import Claimed, HostLease, LeaseView
from monitor.store import LeaseTx, Store
from monitor.worker.fair_share import fair_shares

log = logging.getLogger("monitor.worker.leases")

EARLY_S = 0.02  # wake this long after another worker's lease expires, not before it
# A stalled database must be seen as stalled (the worker's stop grace is 8 s), not as a
# session the server ended: a frozen worker's transaction is ended after this long.
IDLE_TRANSACTION_MIN_S = 30.0


class HostSlots(Protocol):
    """The scheduler side: start and stop host jobs."""

    def start(self, lease: HostLease) -> None:
        """Tick ``lease.host`` from now on, under ``lease``."""

    def stop_job(self, host: str) -> None:
        """Stop ticking ``host``; its lease is already marked lost."""

    def retire(self, host: str, wait_until: float | None = None) -> bool:
        """Stop ticking ``host`` (marking its lease lost) if no tick of it runs now, or,
        with ``wait_until`` (the monotonic clock), once the one running has finished by
        then. False: a tick still runs."""


class LeaseEvents(Protocol):
    """What the metrics count (``TickMetrics`` fits)."""

    def leases_changed(self, held: Sequence[str]) -> None: ...

    def lease_claimed(self, takeover: bool) -> None: ...

    def lease_handed_back(self) -> None: ...

    def lease_lost(self) -> None: ...

    def renewal(self, ok: bool) -> None: ...


class LeaseKeeper:
    def __init__(self, store: Store, owner: str, hosts: Sequence[str], *, ttl_s: float,
                 interval_s: float, max_hosts: int | None = None, events: LeaseEvents | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 process_utc: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.owner = owner
        self.hosts = tuple(hosts)
        self.ttl_s = ttl_s
        self.period_s = min(ttl_s / 3, interval_s)
        self.max_hosts = max_hosts
        self.events = events
        self.monotonic = monotonic
        self.process_utc = process_utc  # the database's clock on SQLite (Tx.now)
        self.held: dict[str, HostLease] = {}
        self.renewed_at: float | None = None
        self.failing = False
        self.first_claim_after = 0.0

    # --- start and stop (main thread) ---------------------------------------------

    def join(self, gone: Callable[[str], bool]) -> None:
        """Register this worker; on SQLite, refuse to run beside another live one.

        On PostgreSQL the first claim waits one renewal period, so that workers started
        together see each other and each claims its share, not the first one all; and
        a transaction of this worker left idle for a TTL, and at least
        ``IDLE_TRANSACTION_MIN_S`` (the process frozen), is rolled back by the server,
        so it cannot keep a lease row locked for ever.
        """
        self.store.limit_idle_transactions(max(self.ttl_s, IDLE_TRANSACTION_MIN_S))
        with self.store.transaction(LeaseTx) as tx:
            taken_over = tx.join(tx.now(self.process_utc), self.owner, self.hosts, self.ttl_s,
                                 self.max_hosts, gone)
            single = tx.single_worker
        for owner in taken_over:
            log.warning("took over from a worker that is gone (%s): its hosts are free",
                        owner, extra=fields(kind="lease"))
        if not single:
            self.first_claim_after = self.monotonic() + self.period_s
        self._changed()  # holds nothing yet: health looks at no host

    def leave(self, slots: HostSlots, deadline: float) -> None:
        """Stop: free each lease as soon as its host's tick in progress has finished.

        The heartbeat's share drops to 0 first, so the other workers' shares grow at
        once and they claim each lease as it is freed; a host waits for no other host's
        tick, and a tick in progress keeps its lease to the end.
        """
        try:
            with self.store.transaction(LeaseTx) as tx:
                tx.drain(self.owner)
            pending = sorted(self.held)
            while pending:
                idle = [host for host in pending if slots.retire(host)]
                if not idle:  # every one left is ticking: wait for the first to end
                    if not slots.retire(pending[0], wait_until=deadline):
                        break  # out of time: the rest is freed below, fenced if late
                    idle = pending[:1]
                with self.store.transaction(LeaseTx) as tx:
                    tx.hand_back(self.owner, idle)
                pending = [host for host in pending if host not in idle]
            with self.store.transaction(LeaseTx) as tx:
                tx.leave(self.owner)
        except StoreError as error:
            log.warning("could not free the leases, they expire in %gs: %s", self.ttl_s,
                        error, extra=fields(kind="lease"))
            return
        log.info("released %d host leases", len(self.held), extra=fields(kind="lease"))
        self.held.clear()
        self._changed()

    # --- the renewal thread ---------------------------------------------------------

    def run(self, slots: HostSlots, stop: threading.Event) -> None:
        """Renew until ``stop`` is set (the thread's body)."""
        delay = max(0.0, self.first_claim_after - self.monotonic())
        while not stop.wait(delay):
            delay = self.cycle(slots)

    def cycle(self, slots: HostSlots) -> float:
        """One renewal and whatever it calls for; the seconds until the next one."""
        started = self.monotonic()
        try:
            with self.store.transaction(LeaseTx) as tx:
                view = tx.renew(tx.now(self.process_utc), self.owner, self.hosts, self.ttl_s,
                                self.max_hosts)
        except StoreError as error:
            return self._renewal_failed(slots, started, error)
        self.renewed_at = started
        if self.failing:
            self.failing = False
            log.warning("lease renewal works again", extra=fields(kind="lease"))
        if self.events:
            self.events.renewal(True)
        self._follow(slots, view.mine)
        share = fair_shares(len(self.hosts), view.workers).get(self.owner, 0)
        if len(self.held) > share:
            self._hand_back_one(slots, share)
        elif len(self.held) < share and view.claimable and started >= self.first_claim_after:
            self._claim(slots, share - len(self.held))
        return self._next_delay(view, share)

    def _renewal_failed(self, slots: HostSlots, started: float, error: StoreError) -> float:
        if self.events:
            self.events.renewal(False)
        if not self.failing:
            self.failing = True
            log.warning("cannot renew the host leases, hosts stop when they expire: %s",
                        error, extra=fields(kind="lease"))
        if self.held and (self.renewed_at is None or started - self.renewed_at >= self.ttl_s):
            for host in sorted(self.held):
                self._lost(slots, host, "not renewed for a whole TTL")
        return self.period_s / 2

    def _follow(self, slots: HostSlots, mine: dict[str, int]) -> None:
        """Make the running jobs match the leases the renewal returned."""
        for host in sorted(self.held):
            lease = self.held[host]
            if mine.get(host) != lease.epoch:
                self._lost(slots, host, "another worker holds it now")
            elif lease.lost:  # a tick was fenced, yet the lease is ours again: resume
                self._start(slots, HostLease(host, self.owner, lease.epoch))
        for host in sorted(mine.keys() - self.held.keys()):
            self._start(slots, HostLease(host, self.owner, mine[host]))

    def _claim(self, slots: HostSlots, count: int) -> None:
        try:
            with self.store.transaction(LeaseTx) as tx:
                claimed = tx.claim(tx.now(self.process_utc), self.owner, self.hosts, count)
        except StoreError as error:
            log.warning("could not claim host leases: %s", error, extra=fields(kind="lease"))
            return
        for item in claimed:
            self._log_claim(item)
            if self.events:
                self.events.lease_claimed(item.previous_owner is not None)
            self._start(slots, HostLease(item.host, self.owner, item.epoch))

    def _hand_back_one(self, slots: HostSlots, share: int) -> None:
        for host in sorted(self.held, reverse=True):
            if not slots.retire(host):
                continue
            del self.held[host]
            self._changed()
            try:
                with self.store.transaction(LeaseTx) as tx:
                    tx.hand_back(self.owner, [host])
            except StoreError as error:  # still ours in the DB: the next renewal resumes it
                log.warning("could not hand back a lease: %s", error,
                            extra=fields(host=host, kind="lease"))
                return
            if self.events:
                self.events.lease_handed_back()
            log.info("handed the lease back (share %d)", share,
                     extra=fields(host=host, kind="lease"))
            return

    def _next_delay(self, view: LeaseView, share: int) -> float:
        delay = self.period_s
        if view.next_change_s is not None:
            delay = min(delay, view.next_change_s + EARLY_S)
        if len(self.held) > share or (len(self.held) < share and view.claimable):
            delay = min(delay, self.period_s / 2)
        return max(delay, EARLY_S)

    # --- bookkeeping ------------------------------------------------------------------

    def _start(self, slots: HostSlots, lease: HostLease) -> None:
        self.held[lease.host] = lease
        slots.start(lease)
        self._changed()

    def _lost(self, slots: HostSlots, host: str, why: str) -> None:
        lease = self.held.pop(host)
        lease.lost = True
        slots.stop_job(host)
        self._changed()
        if self.events:
            self.events.lease_lost()
        log.warning("lease lost (%s): the host's ticks stop", why,
                    extra=fields(host=host, kind="lease-lost"))

    def _changed(self) -> None:
        if self.events:
            self.events.leases_changed(sorted(self.held))

    @staticmethod
    def _log_claim(item: Claimed) -> None:
        if item.previous_owner is None:
            log.info("claimed the lease (epoch %d)", item.epoch,
                     extra=fields(host=item.host, kind="lease"))
            return
        log.warning("took the lease over from %s (epoch %d), released %d of its devices "
                    "locks", item.previous_owner, item.epoch, item.released_locks,
                    extra=fields(host=item.host, kind="lease"))
