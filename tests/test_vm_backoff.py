"""One poisonous VM does not slow its host: a VM whose apply fails alone is recorded in
its ``last_error`` and backs off alone (its own doubling delay); the host goes on
ticking and its neighbours are applied every tick (docs/operations.md).

The poison is real: a trigger in the database (SQLite and PostgreSQL) refuses every
row written for that one VM, as an over-long value refused by an index would. Ticks are
counted on a monotonic clock moved by hand, never timed.
"""

from __future__ import annotations

import sqlalchemy as sa

from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import LoopingReplaySource
from monitor.store import Store
from monitor.store.engine import parse_url
from monitor.tick.backoff import VmBackoff, doubling_delay
from monitor.tick.host_tick import TickContext
from monitor.worker.host_job import HostJob
from worker_runs import HOST, HandClock, load_inventory, make_many

COUNT = 5
TICKS = 8
INTERVAL = 1.0


def poison_rows_of(url: str, vm_id: str) -> None:
    """Every device row written for ``vm_id`` fails inside the database."""
    engine = sa.create_engine(parse_url(url))
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
                connection.execute(sa.text(
                    f"CREATE TRIGGER poison_{event.lower()} BEFORE {event} ON vm_devices "
                    f"WHEN {row}.vm_id = '{vm_id}' "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"))
        else:
            connection.execute(sa.text(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'injected failure'; END $$"))
            for event, row in (("INSERT OR UPDATE", "NEW"), ("DELETE", "OLD")):
                connection.execute(sa.text(
                    f"CREATE TRIGGER poison_{event.split()[0].lower()} BEFORE {event} "
                    f"ON vm_devices FOR EACH ROW WHEN ({row}.vm_id = '{vm_id}') "
                    "EXECUTE FUNCTION poison()"))
    engine.dispose()


def test_a_poisonous_vm_backs_off_alone_and_its_neighbours_apply_every_tick(db_url, tmp_path):
    fixture = make_many(tmp_path / "fixture", COUNT, versions=4)  # every tick changes every VM
    load_inventory(db_url, fixture)
    vm_ids = sorted(read_fixture(fixture).ticks[0].answer(HOST).reports)
    poisonous = vm_ids[2]
    poison_rows_of(db_url, poisonous)

    clock, seen = HandClock(), []
    with Store.open(db_url) as store:
        context = TickContext(store=store, holder="worker", batch_size=COUNT, clock=clock,
                              vm_backoff=VmBackoff(base_s=INTERVAL, max_s=60.0))
        job = HostJob(LoopingReplaySource(read_fixture(fixture), HOST), context,
                      interval_s=INTERVAL, backoff_max_s=60.0, on_summary=seen.append)
        for tick in range(TICKS):
            clock.now = tick * INTERVAL
            job()
        with store.transaction() as tx:
            stored = tx.vms(vm_ids)

    assert (job.ticks, job.failures) == (TICKS, 0)  # the host was never backed off
    assert [s.applied for s in seen] == [COUNT - 1] * TICKS  # every neighbour, every tick
    # The poisonous VM is tried at 0, then after 2, 4 (at 2, 6) intervals: not every tick.
    tried = [tick for tick, s in enumerate(seen) if s.errors["db"]]
    assert tried == [0, 2, 6]
    assert [s.skipped["backoff"] for s in seen] == [0 if t in tried else 1 for t in range(TICKS)]
    assert doubling_delay(INTERVAL, 3, 60.0) == 8.0  # next try at 14
    assert stored[poisonous].hash == "inventory"  # never advanced
    assert "injected failure" in stored[poisonous].last_error
    assert stored[poisonous].last_error_hash is None  # not a bad XML: fetched again
    assert all(stored[vm_id].last_error is None for vm_id in vm_ids if vm_id != poisonous)
