"""Clock steps (docs/operations.md, "Clocks"): an NTP correction back 1 s or 1 h, or a
clock set a year ahead, must not stop reconciliation nor take a lock that has not
expired; health must not stay 200 while nothing reconciles.

The tests step the engine's own clock (``TickContext.clock``); the shared PostgreSQL
server's clock cannot be stepped, and on PostgreSQL report times and lock expiry come
from it, so there the step must change nothing at all.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from monitor.clock import SteadyUtc, older_than_stored
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import ReplayHostSource
from monitor.store import Store
from monitor.tick.host_tick import TickContext, run_tick
from monitor.worker.metrics import TickMetrics
from monitor.worker.scheduler import Worker
from worker_runs import HOST, load_inventory, make_many

COUNT = 4
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STEPS = {
    "back-1s": timedelta(seconds=-1),
    "back-1h": timedelta(hours=-1),
    "ahead-1y": timedelta(days=365),
}


class SteppedClock:
    """A wall clock the test steps, starting at the system's time, and a monotonic
    clock that only moves forward, by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.wall = start or datetime.now(UTC)
        self.elapsed = 0.0

    def utc(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.elapsed += seconds

    def step(self, by: timedelta) -> None:
        self.wall += by  # the monotonic clock does not step


def test_the_steady_clock_follows_steps_back_but_not_ahead():
    clock = SteppedClock(T0)
    steady = SteadyUtc(clock)
    assert steady() == T0
    clock.advance(10)
    assert steady() == T0 + timedelta(seconds=10)
    clock.step(timedelta(days=365))
    assert steady() == T0 + timedelta(seconds=10)  # a year ahead: not followed
    clock.advance(5)
    assert steady() == T0 + timedelta(seconds=15)  # time still passes, at its own pace
    clock.step(timedelta(days=-365, hours=-1))
    assert steady() == T0 + timedelta(seconds=15, hours=-1)  # back: followed


@pytest.mark.parametrize(("report", "stored", "now", "older"), [
    pytest.param(T0, None, T0, False, id="nothing-stored"),
    pytest.param(T0, T0, T0, False, id="same-time"),
    pytest.param(T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), True,
                 id="a-newer-report-was-applied"),
    pytest.param(T0, T0 + timedelta(hours=1), T0, False, id="stored-in-the-future"),
    pytest.param(T0, T0 + timedelta(hours=1), None, True, id="no-clock-to-judge"),
])
def test_older_than_stored(report, stored, now, older):
    assert older_than_stored(report, stored, now) is older


@pytest.fixture
def versions(tmp_path):
    return make_many(tmp_path / "fixture", COUNT, versions=3)


def tick(fixture, number: int, context: TickContext):
    return run_tick(ReplayHostSource(read_fixture(fixture).ticks[number - 1], HOST), context)


@pytest.mark.parametrize("step", list(STEPS.values()), ids=list(STEPS))
def test_a_clock_step_neither_stops_reconciliation_nor_takes_a_held_lock(db_url, versions,
                                                                         step):
    load_inventory(db_url, versions)
    clock = SteppedClock()
    with Store.open(db_url) as store:
        context = TickContext(store=store, holder="worker", clock=clock)
        first = tick(versions, 1, context)
        assert first.applied == COUNT
        vm_ids = sorted(read_fixture(versions).ticks[0].answer(HOST).reports)

        clock.advance(0.5)  # less than the smallest step: back 1 s is really back
        clock.step(step)
        # A device command (another process, on the system's clock) holds one VM.
        with store.transaction() as tx:
            assert tx.try_lock(vm_ids[0], "hotplug", tx.now(lambda: datetime.now(UTC)), 300)
        second = tick(versions, 2, context)
        assert (second.applied, second.skipped["locked"]) == (COUNT - 1, 1)
        assert second.skipped["older-report"] == 0

        with store.transaction() as tx:
            tx.release_lock(vm_ids[0], "hotplug")
        clock.advance(1)
        third = tick(versions, 3, context)
        assert (third.applied, third.skipped["older-report"]) == (COUNT, 0)
        with store.transaction() as tx:
            hashes = {vm.id: vm.hash for vm in tx.vms(vm_ids).values()}
    expected = read_fixture(versions).ticks[2].answer(HOST).reports
    assert hashes == {vm_id: expected[vm_id].hash for vm_id in vm_ids}


@pytest.mark.parametrize("step", list(STEPS.values()), ids=list(STEPS))
def test_health_follows_the_monotonic_clock_whatever_the_wall_does(step):
    wall = SteppedClock(T0)
    metrics = TickMetrics(["h"], clock=lambda: wall.utc().timestamp(), monotonic=wall.monotonic)
    wall.step(step)
    assert metrics.health(120).ok  # a step alone is no staleness
    wall.advance(121)  # and no tick for longer than health_stale
    wall.step(-step)
    assert not metrics.health(120).ok


class FakeScheduler:
    """The two calls of APScheduler's that the worker makes to follow a step."""

    def __init__(self, next_runs: dict[str, datetime]) -> None:
        self.jobs = {job_id: _Job(job_id, at) for job_id, at in next_runs.items()}

    def get_jobs(self):
        return list(self.jobs.values())

    def modify_job(self, job_id: str, next_run_time: datetime) -> None:
        self.jobs[job_id].next_run_time = next_run_time


class _Job:
    def __init__(self, job_id: str, next_run_time: datetime) -> None:
        self.id, self.next_run_time = job_id, next_run_time


def test_the_scheduler_runs_now_a_job_a_step_back_would_delay():
    worker = Worker([], interval_s=5)
    scheduler = FakeScheduler({"a": T0 + timedelta(seconds=5), "b": T0 + timedelta(hours=1)})
    assert worker.follow_clock_steps(scheduler, now=T0) == 1
    assert scheduler.jobs["a"].next_run_time == T0 + timedelta(seconds=5)  # on time
    assert scheduler.jobs["b"].next_run_time == T0  # the wall went back an hour: run now


def test_a_real_scheduler_ticks_again_after_the_wall_went_back_an_hour():
    from apscheduler.schedulers.background import BackgroundScheduler

    ran = threading.Event()
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(ran.set, "interval", id="h", seconds=3600,
                      next_run_time=datetime.now(UTC) + timedelta(hours=1))
    scheduler.start()
    try:
        moved = Worker([], interval_s=1).follow_clock_steps(scheduler)
        assert moved == 1
        assert ran.wait(timeout=30)  # run now, not in an hour
    finally:
        scheduler.shutdown(wait=False)
