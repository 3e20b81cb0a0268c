"""The scheduler: APScheduler 3 runs the job of each host this worker holds.

A host's job is added when the lease keeper (``lease_keeper``) gets its lease and
removed when the lease goes; the keeper renews in a thread of its own, so slow ticks
never delay a renewal. ``max_instances=1`` keeps a job from overlapping itself;
``coalesce`` folds missed runs into one. SIGINT/SIGTERM set an event: no new tick
starts, the keeper stops renewing, each host's lease is freed for the other workers as
soon as that host's tick in progress has finished, so a stop never cuts a transaction.

APScheduler times its runs by the wall clock: after a step back of an hour it would
wait an hour before the next tick. While it runs, the worker looks every interval (on
the monotonic clock) for a job due further ahead than an interval can explain, and
runs it now; the interval then goes on from the new time (docs/operations.md, "Clocks").
A step ahead needs nothing: the missed runs are coalesced into one.

The same watch logs a tick that has run ``stall_warn`` seconds without finishing (a
database or host that accepts bytes but never answers), once per tick. On a stop, the
ticks in progress get ``STOP_GRACE_S`` to finish; a tick still waiting then is left
behind: the worker exits with one line and ``StoppedStuck``'s exit code, and the
database rolls back what that tick had not committed (docs/operations.md).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from monitor.errors import StoppedStuck
from monitor.logfields import fields
from monitor.model.lease import HostLease
from monitor.settings import MAX_TICK_THREADS
from monitor.worker.host_job import HostJob
from monitor.worker.lease_keeper import LeaseKeeper

log = logging.getLogger("monitor.worker")

STOP_GRACE_S = 8.0  # a stop waits this long for the ticks in progress (SIGTERM: < 10 s)


class Worker:
    def __init__(self, jobs: Sequence[HostJob], keeper: LeaseKeeper | None = None, *,
                 interval_s: float,
                 max_ticks: int | None = None, stall_warn_s: float = 30.0,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self.jobs = list(jobs)
        self._by_host = {job.host: job for job in self.jobs}
        self.keeper = keeper
        self.interval_s = interval_s
        self.max_ticks = max_ticks
        self.stall_warn_s = stall_warn_s
        self.stop_grace_s = stop_grace_s
        self.stop = threading.Event()

    def run(self) -> None:
        # APScheduler logs every run at INFO, and at WARNING each run it skips because the
        # host's previous tick is still going (max_instances=1, by design): the summary
        # line and the backoff say it better.
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("apscheduler").setLevel(logging.ERROR)
        scheduler = self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(1, min(len(self.jobs),
                                                                MAX_TICK_THREADS)))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        previous = self._install_signals()
        scheduler.start()
        keeper = threading.Thread(target=self.keeper.run, args=(self, self.stop),
                                  name="lease-keeper", daemon=True)
        keeper.start()
        log.info("worker started: %d hosts, every %gs", len(self.jobs), self.interval_s)
        watch_s = min(self.interval_s, 1.0)
        try:
            while not self.stop.wait(watch_s):  # Event.wait times on the monotonic clock
                self.follow_clock_steps(scheduler)
                self.report_stalls()
        finally:
            self.stop.set()  # no new tick starts
            deadline = time.monotonic() + self.stop_grace_s
            keeper.join(min(1.0, self.stop_grace_s))  # it may wait on the database
            scheduler.shutdown(wait=False)
            self._leave(deadline)
            stuck = self._wait_for_ticks(deadline)
            self._restore_signals(previous)
        if stuck:
            raise StoppedStuck(
                f"stopped after {self.stop_grace_s:g}s with {len(stuck)} tick(s) still "
                f"waiting for an answer ({', '.join(stuck)}): the database or the host is "
                "not answering; what they had not committed is rolled back")
        log.info("worker stopped")

    def report_stalls(self) -> list[str]:
        """Log, once per tick, each tick that has run ``stall_warn_s`` without finishing."""
        stalled = []
        for job in self.jobs:
            running = job.running_for()
            if running >= self.stall_warn_s and not job.stall_logged:
                job.stall_logged = True
                stalled.append(job.host)
                log.warning("tick running for %.0fs without finishing: the database or the "
                            "host is not answering", running,
                            extra=fields(host=job.host, kind="stall"))
        return stalled

    def _leave(self, deadline: float) -> None:
        """Free the leases, each as its host's tick ends, within the stop's grace (a
        database that does not answer cannot hold the stop: the leases then expire)."""
        leaving = threading.Thread(target=self.keeper.leave, args=(self, deadline),
                                   name="lease-leave", daemon=True)
        leaving.start()
        leaving.join(max(0.0, deadline - time.monotonic()))

    # --- HostSlots, for the lease keeper -------------------------------------------

    def start(self, lease: HostLease) -> None:
        job = self._by_host[lease.host]
        job.lease = lease
        self._scheduler.add_job(self._run_job, "interval", args=(job,), id=job.host,
                                name=f"tick {job.host}", seconds=self.interval_s,
                                next_run_time=datetime.now(timezone.utc),
                                replace_existing=True)

    def stop_job(self, host: str) -> None:
        try:
            self._scheduler.remove_job(host)
        except JobLookupError:
            pass

    def retire(self, host: str, wait_until: float | None = None) -> bool:
        job = self._by_host[host]
        timeout = -1 if wait_until is None else max(0.0, wait_until - time.monotonic())
        if not job.busy.acquire(blocking=wait_until is not None, timeout=timeout):
            return False
        try:
            if job.lease is not None:
                job.lease.lost = True
            self.stop_job(host)
        finally:
            job.busy.release()
        return True

    def _wait_for_ticks(self, deadline: float) -> list[str]:
        """Wait up to the grace for the ticks in progress; the hosts still running then."""
        for job in self.jobs:
            job.idle.wait(max(0.0, deadline - time.monotonic()))
        return [f"{job.host} for {job.running_for():.0f}s" for job in self.jobs
                if not job.idle.is_set()]

    def follow_clock_steps(self, scheduler, now: datetime | None = None) -> int:
        """Run now every job due more than two intervals ahead (the wall clock stepped
        back); the number of jobs moved."""
        now = now or datetime.now(timezone.utc)
        horizon = now + timedelta(seconds=2 * self.interval_s)
        moved = 0
        for job in scheduler.get_jobs():
            if job.next_run_time is not None and job.next_run_time > horizon:
                scheduler.modify_job(job.id, next_run_time=now)
                moved += 1
        if moved:
            log.warning("the wall clock stepped back: %d host jobs run now instead of "
                        "waiting for it", moved, extra=fields(kind="clock-step"))
        return moved

    def _run_job(self, job: HostJob) -> None:
        if self.stop.is_set():
            return
        try:
            job()
        except BrokenPipeError:  # whoever read our summary lines is gone: stop
            self.stop.set()
            raise
        finally:
            if self.max_ticks is not None and self._ticked_enough():
                self.stop.set()

    def _ticked_enough(self) -> bool:
        """``--ticks N``: every host this worker holds has run N ticks (and it holds one)."""
        held = [job for job in self.jobs if job.lease is not None and not job.lease.lost]
        return bool(held) and all(job.ticks >= self.max_ticks for job in held)

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        handler = lambda signum, frame: self.stop.set()  # noqa: E731
        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signals(previous) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
