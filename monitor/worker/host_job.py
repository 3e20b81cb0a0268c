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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from monitor.errors import StoreError
from monitor.hosts.source import HostSource
from monitor.logfields import fields
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

    @property
    def host(self) -> str:
        return self.source.name

    def __call__(self) -> None:
        if self.clock() < self.not_before:
            return  # backing off this host only
        self.idle.clear()
        self.running_since, self.stall_logged = self.clock(), False
        try:
            self._tick()
        finally:
            self.running_since = None
            self.idle.set()

    def running_for(self) -> float:
        """Seconds the tick in progress has run (0 when none runs)."""
        since = self.running_since
        return 0.0 if since is None else self.clock() - since

    def _tick(self) -> None:
        try:
            with held_by_device_command(self.context, self.source.held_locks()):
                summary = run_tick(self.source, self.context)
        except StoreError as error:
            self._failed(f"tick stopped, committed batches kept, the rest redone: {error}")
            return
        self.ticks += 1
        if summary.host_error:
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
