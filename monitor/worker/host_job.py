"""One host's job: a tick, then its backoff if the host or the database failed.

A host that times out, refuses or cannot be reached is backed off (the interval,
doubled per failure up to ``backoff_max``) without delaying other hosts, which have
jobs of their own. A database-wide failure is retried the same way: the tick stopped
on a StoreError (the DB unreachable, the connection cut, an SQLite file locked), and
this job logs it in one line, with the delay before the next try.

A VM that failed alone (a lock timeout on its rows, a value the database refuses) does
not back off its host: the tick recorded its ``last_error`` and backs that VM off alone
(``monitor.tick.backoff``), and its neighbours go on being applied every tick.

What committed stays committed; what did not keeps its old hash and is redone.

Under ``monitor run`` a job ticks only while the worker holds the host's lease
(``lease``, set by the lease keeper through the scheduler): a lease marked lost makes
the job return at once, and every tick is fenced by the lease it started with.
``busy`` is held for the length of a tick, so the keeper hands a host back only
between two ticks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from monitor.errors import StoreError
from monitor.hosts.source import HostSource
from monitor.logfields import fields
from monitor.model.lease import HostLease
from monitor.tick.backoff import doubling_delay
from monitor.tick.host_tick import TickContext, run_tick
from monitor.tick.replay import held_by_device_command
from monitor.tick.summary import TickSummary

log = logging.getLogger("monitor.worker")


class HostJob:
    def __init__(self, source: HostSource, context: TickContext, *, interval_s: float,
                 backoff_max_s: float, on_summary: Callable[[TickSummary], None],
                 clock: Callable[[], float] | None = None) -> None:
        self.source = source
        self.context = context
        self.interval_s = interval_s
        self.backoff_max_s = backoff_max_s
        self.on_summary = on_summary
        self.clock = clock or context.clock.monotonic  # backoffs never follow a wall step
        self.failures = 0
        self.not_before = 0.0
        self.ticks = 0
        self.running_since: float | None = None  # while a tick runs (for the stall watch)
        self.stall_logged = False
        self.idle = threading.Event()  # set while no tick runs
        self.idle.set()
        self.lease: HostLease | None = None  # None: no leases (tests, tools)
        self.busy = threading.Lock()  # held for a tick; the keeper retires a host with it

    @property
    def host(self) -> str:
        return self.source.name

    def __call__(self) -> None:
        if not self.busy.acquire(blocking=False):
            return  # the lease keeper is handing this host back
        try:
            lease = self.lease
            if lease is not None and lease.lost:
                return  # the keeper stops this job; a run already dispatched ends here
            if self.clock() < self.not_before:
                return  # backing off this host only
            self.idle.clear()
            self.running_since, self.stall_logged = self.clock(), False
            try:
                self._tick(lease)
            finally:
                self.running_since = None
                self.idle.set()
        finally:
            self.busy.release()

    def running_for(self) -> float:
        """Seconds the tick in progress has run (0 when none runs)."""
        since = self.running_since
        return 0.0 if since is None else self.clock() - since

    def _tick(self, lease: HostLease | None) -> None:
        try:
            with held_by_device_command(self.context, self.source.held_locks()):
                summary = run_tick(self.source, self.context, lease)
        except StoreError as error:
            self._failed(f"tick stopped, committed batches kept, the rest redone: {error}")
            return
        self.ticks += 1
        if summary.lease_lost:
            pass  # not this host's failure: the keeper learns the rest at its next renewal
        elif summary.host_error:
            self._failed(f"host {summary.host_error}")
        else:  # a VM that failed alone backs off alone (the tick's VmBackoff)
            self.failures = 0
        self.on_summary(summary)

    def _failed(self, what: str, level: int = logging.WARNING) -> None:
        self.failures += 1
        delay = doubling_delay(self.interval_s, self.failures, self.backoff_max_s)
        self.not_before = self.clock() + delay
        log.log(level, "%s; next try in %gs", what, delay,
                extra=fields(host=self.host, kind="backoff"))
