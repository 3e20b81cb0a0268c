"""Two ticks of one VM at once: what protects a VM below the host leases.

``monitor run`` workers share hosts through leases (tests/test_leases.py), but ticks
without a lease (``replay``, ``bench``, a device command's lock) and two hosts of one
worker at a migration hand-over still meet on one VM. What protects it: the devices
lock (a VM is applied by one tick at a time; the other skips it and retries) and the
guarded hash advance (a VM's XML is applied only if no later report was applied before
it: ``hash_time``). The in-process tests put the second tick at an exact point of the
first one's, on both databases; the process test runs two real ``monitor run`` against
PostgreSQL on one host (the second takes the host over when the first stops), with a
trigger that records every hash change, and then checks every VM and every change.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from monitor.faults import injected
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import ReplayHostSource
from monitor.store import Store
from monitor.tick.host_tick import TickContext, run_tick
from worker_runs import (
    BATCH_SIZE,
    HOST,
    load_inventory,
    make_many,
    states,
    version_states,
    worker_command,
    worker_env,
    with_query,
    write_config,
)

COUNT = 20
VERSIONS = 3


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    root = make_many(tmp_path_factory.mktemp("many") / "fixture", COUNT, VERSIONS)
    return root, version_states(root, tmp_path_factory.mktemp("clean"))


def tick_of(fixture, version: int, store: Store, holder: str, batch_size: int = BATCH_SIZE):
    """One tick of the worker ``holder`` that polls version ``version`` of every VM."""
    source = ReplayHostSource(read_fixture(fixture).ticks[version - 1], HOST)
    return run_tick(source, TickContext(store=store, holder=holder, batch_size=batch_size))


def test_a_second_worker_skips_the_vms_the_first_one_holds(many, db_url):
    """B polls the newer version while A applies the older one: A holds the devices
    locks, so B skips every VM (hash kept) and applies them on its next tick."""
    fixture, versions = many
    load_inventory(db_url, fixture)
    with Store.open(db_url) as store:
        inside = []
        with injected("after-dump", lambda _p: inside.append(tick_of(fixture, 2, store, "b"))):
            first = tick_of(fixture, 1, store, "a")
        assert (inside[0].skipped["locked"], inside[0].applied) == (COUNT, 0)
        assert first.applied == COUNT
        assert states(db_url) == versions[1]
        assert tick_of(fixture, 2, store, "b").applied == COUNT
        assert states(db_url) == versions[2]


def test_an_older_report_is_never_applied_over_a_newer_one(many, db_url):
    """A polls version 1; before A locks, B polls version 2 and applies it. A then gets
    the locks, dumps and applies version 1 with its older report time: the guard on
    ``hash_time`` refuses every VM, and nothing of version 1 is written."""
    fixture, versions = many
    load_inventory(db_url, fixture)
    with Store.open(db_url) as store:
        inside = []
        with injected("after-plan", lambda _p: inside.append(tick_of(fixture, 2, store, "b"))):
            first = tick_of(fixture, 1, store, "a")
        assert inside[0].applied == COUNT
        assert (first.fetched, first.applied, first.rows_written) == (COUNT, 0, 0)
        assert states(db_url) == versions[2]


def blocked_on_a_lock(engine, application_name: str) -> bool:
    with engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
            "AND wait_event_type = 'Lock'"), {"name": application_name}).scalar_one() == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_rows_are_read_after_a_concurrent_apply_of_the_same_vm_commits(many, db_url):
    """Two ticks of one worker (two hosts at a migration hand-over share its holder
    name): B must decide on the rows A commits, not on the rows before. From version 2,
    A applies version 3 (a fourth PCIe port appears) in one batch and, before A commits,
    B, with a later report, takes the devices locks again (a fresh token: A's are no
    longer A's once B has them) and applies version 1. B waits for A's commit (A's
    transaction holds the lock rows it checked and releases), and only then takes the
    locks and reads the rows: it removes A's ports, and every VM ends exactly as
    version 1 alone leaves it."""
    fixture, versions = many
    load_inventory(db_url, fixture)
    b_url = with_query(db_url, application_name="tick-b")
    with Store.open(db_url) as store, Store.open(b_url) as b_store:
        tick_of(fixture, 2, store, "a")
        watcher = sa.create_engine(make_url(db_url))
        b_done = []

        def b_applies_while_a_is_open(_point: str) -> None:
            thread = threading.Thread(
                target=lambda: b_done.append(tick_of(fixture, 1, b_store, "same")))
            thread.start()
            deadline = time.monotonic() + 30
            while not blocked_on_a_lock(watcher, "tick-b") and thread.is_alive():
                assert time.monotonic() < deadline, "tick B never waited for tick A"
            b_done.append(thread)

        with injected("in-batch", b_applies_while_a_is_open):
            first = tick_of(fixture, 3, store, "same", batch_size=COUNT)
        b_done[0].join(timeout=60)
        watcher.dispose()
    assert first.applied == COUNT and b_done[1].applied == COUNT  # B's report is later
    assert states(db_url) == versions[1]


AUDIT = """
CREATE TABLE hash_audit (vm_id text, old_hash text, new_hash text,
                         old_time timestamptz, new_time timestamptz);
CREATE FUNCTION audit_hash() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.hash IS DISTINCT FROM OLD.hash OR NEW.hash_time IS DISTINCT FROM OLD.hash_time THEN
    INSERT INTO hash_audit VALUES (NEW.id, OLD.hash, NEW.hash, OLD.hash_time, NEW.hash_time);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER vms_hash_audit AFTER UPDATE ON vms FOR EACH ROW EXECUTE FUNCTION audit_hash();
"""


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_worker_processes_on_one_postgresql(many, db_url, tmp_path):
    fixture, versions = many
    load_inventory(db_url, fixture)
    engine = sa.create_engine(make_url(db_url))
    with engine.begin() as connection:
        connection.exec_driver_sql(AUDIT)
    config = write_config(tmp_path / "worker.toml", fixture)
    ticks = 2 * VERSIONS  # each plays versions 1, 2, 3, 1, 2, 3 of every VM
    workers = [subprocess.Popen(worker_command(config, db_url, ticks), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=worker_env())
               for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0 and "Traceback" not in err, err
        assert out.count(f"host={HOST} ") == ticks

    by_hash = {state.hash: state for version in versions.values() for state in version.values()}
    found = states(db_url)
    assert len(found) == COUNT
    for vm_id, state in found.items():  # its hash names the XML its rows reflect, no more rows
        assert state == by_hash[state.hash], vm_id
    with engine.connect() as connection:
        changes = connection.execute(sa.text(
            "SELECT vm_id, old_time, new_time FROM hash_audit")).all()
    engine.dispose()
    assert len(changes) >= COUNT * VERSIONS  # every version applied at least once
    backwards = [c for c in changes if c.old_time is not None and c.new_time < c.old_time]
    assert backwards == []  # no VM applied from an older report over a newer one
