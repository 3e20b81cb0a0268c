"""Database faults in the middle of a tick: the worker logs one line, backs off, loses
nothing and recovers without a restart.

Each case drives the worker's own host job (``HostJob`` -> ``run_tick``) on the real
store, 20 VMs in batches of 5, and injects a real fault at a point of the tick
(``monitor.faults.injected``): the PostgreSQL backend terminated with
``pg_terminate_backend``, every connection cut by a TCP proxy that then refuses new
ones, a row lock held past ``lock_timeout``, an SQLite file held by another
connection's ``BEGIN IMMEDIATE``. Then: exactly one warning, one line, no traceback;
every VM either applied (new hash, its rows) or untouched (old hash, old rows); the
job waits out its backoff; once the fault is gone the next tick applies the rest.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import ExitStack, contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from monitor.faults import injected
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import LoopingReplaySource
from monitor.store import Store
from monitor.tick.backoff import VmBackoff
from monitor.tick.host_tick import TickContext
from monitor.worker.host_job import HostJob
from worker_runs import (
    BATCH_SIZE,
    HOST,
    HandClock,
    Proxy,
    load_inventory,
    many_states,
    states,
    with_query,
)

COUNT = 20  # four batches


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    return many_states(tmp_path_factory, COUNT)


@contextmanager
def job_on(url: str, fixture):
    with Store.open(url) as store:
        seen = []
        clock = HandClock()
        context = TickContext(store=store, holder="worker-under-test", batch_size=BATCH_SIZE,
                              clock=clock, vm_backoff=VmBackoff(base_s=1.0, max_s=60.0))
        job = HostJob(LoopingReplaySource(read_fixture(fixture), HOST), context,
                      interval_s=1.0, backoff_max_s=60.0, on_summary=seen.append)
        yield job, clock, seen


def check_fault_then_recovery(url, many, caplog, point, nth, strike: Callable[[str], None],
                              heal: Callable[[], None], applied: int, words: str,
                              failed_vm: int | None = None, direct_url: str | None = None,
                              ) -> None:
    """The worker runs on ``url``; the test reads the DB on ``direct_url`` (past a proxy)."""
    fixture, before, after = many
    direct_url = direct_url or url
    with job_on(url, fixture) as (job, clock, seen), ExitStack() as stack:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            if point is None:
                strike("before the tick")
            else:
                stack.enter_context(injected(point, strike, nth))
            job()
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        message = warnings[0].getMessage()
        assert words in message and "\n" not in message and warnings[0].exc_info is None
        backoff = job.context.vm_backoff
        if failed_vm is None:  # the database failed: the host backs off
            assert job.failures == 1 and clock.now < job.not_before
        else:  # one VM failed alone: it backs off alone, the host goes on
            assert job.failures == 0 and list(backoff.not_before) == [sorted(many[1])[failed_vm]]

        stack.close()
        heal()  # the fault leaves no data of its own: the DB is as the tick left it
        found = states(direct_url)
        ids = sorted(found)
        done = [vm_id for vm_id in ids if found[vm_id] == after[vm_id]]
        untouched = [vm_id for vm_id in ids if found[vm_id] == before[vm_id]]
        if failed_vm is None:  # the batches committed before the fault, in id order
            assert (done, untouched) == (ids[:applied], ids[applied:])
        else:
            assert (untouched, len(done)) == ([ids[failed_vm]], COUNT - 1)

        if failed_vm is None:
            ticks = job.ticks
            clock.now = job.not_before - 0.01
            job()
            assert job.ticks == ticks  # still backing off: no tick
            clock.now = job.not_before
        else:
            (retry_at,) = backoff.not_before.values()
            clock.now = retry_at - 0.01
            job()  # the host ticks; the VM still waits
            assert (seen[-1].applied, seen[-1].skipped["backoff"]) == (0, 1)
            clock.now = retry_at
        job()
        assert job.failures == 0 and seen[-1].applied == COUNT - len(done)
    assert states(direct_url) == after
    with Store.open(direct_url) as store, store.transaction() as tx:
        assert tx.lock_holders() == set()


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def admin(db_url):
    """A connection of the test's own to the worker's PostgreSQL database."""
    engine = sa.create_engine(make_url(db_url), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("nth", "applied"), [
    pytest.param(1, 0, id="first-batch"),
    pytest.param(3, 2 * BATCH_SIZE, id="third-batch"),
])
def test_pg_backend_terminated_inside_a_batch(db_url, admin, many, caplog, nth, applied):
    load_inventory(db_url, many[0])
    name = f"monitor-worker-{uuid.uuid4().hex[:8]}"
    url = with_query(db_url, application_name=name)

    def terminate(_point: str) -> None:
        with admin.connect() as connection:
            killed = connection.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"), {"name": name}).scalar_one()
        assert killed >= 1

    check_fault_then_recovery(url, many, caplog, "in-batch", nth, terminate, lambda: None,
                              applied, "terminating connection")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("point", "nth", "applied"), [
    pytest.param(None, 1, 0, id="unreachable-at-start"),
    pytest.param("after-dump", 1, 0, id="cut-after-the-dump"),
    pytest.param("between-batches", 2, 2 * BATCH_SIZE, id="cut-between-batches"),
])
def test_pg_briefly_unreachable(db_url, many, caplog, point, nth, applied):
    load_inventory(db_url, many[0])
    parsed = make_url(db_url)
    proxy = Proxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        check_fault_then_recovery(url, many, caplog, point, nth, lambda _p: proxy.cut(),
                                  proxy.restore, applied, "server closed the connection",
                                  direct_url=db_url)
    finally:
        proxy.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_pg_lock_timeout_fails_one_vm_alone(db_url, many, caplog):
    """A row lock held elsewhere past lock_timeout: that VM fails alone, the others apply."""
    load_inventory(db_url, many[0])
    url = with_query(db_url, options="-c lock_timeout=200")
    blocked = sorted(states(db_url))[7]
    engine = sa.create_engine(make_url(db_url))
    holder = engine.connect()  # a transaction of its own, open until healed
    holder.execute(sa.text("SELECT id FROM vms WHERE id = :id FOR UPDATE"), {"id": blocked})
    try:
        check_fault_then_recovery(url, many, caplog, None, 1, lambda _p: None,
                                  holder.rollback, 0, "lock timeout", failed_vm=7)
    finally:
        holder.close()
        engine.dispose()


# --- SQLite ----------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("point", "nth", "applied"), [
    pytest.param(None, 1, 0, id="locked-at-start"),
    pytest.param("after-dump", 1, 0, id="locked-after-the-dump"),
    pytest.param("between-batches", 3, 3 * BATCH_SIZE, id="locked-between-batches"),
])
def test_sqlite_database_is_locked(db_url, many, caplog, point, nth, applied):
    load_inventory(db_url, many[0])
    path = make_url(db_url).database
    other = sqlite3.connect(path, isolation_level=None)
    try:
        check_fault_then_recovery(
            with_query(db_url, timeout="0.1"), many, caplog, point, nth,
            lambda _p: other.execute("BEGIN IMMEDIATE"), lambda: other.execute("ROLLBACK"),
            applied, "database is locked")
    finally:
        other.close()
