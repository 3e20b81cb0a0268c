"""The fence: a tick writes a VM only while it still holds that VM's devices lock
(same holder, same token, unexpired by the database's clock), checked in the writing
transaction; a long tick renews its locks in its batch transactions (docs/worker.md).

The first test is the oVirt bug this engine exists to avoid (BZ 1927243), on SQLite and
PostgreSQL: the tick's lock expires after its dump, a hot-plug takes the lock and plugs
a disk, and the tick's older XML, which has no such disk, must not unplug it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from conftest import FIXTURES
from monitor.faults import injected
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import ReplayHostSource
from monitor.model.changes import RowUpdate, VmChanges
from monitor.store import Fence, Store
from monitor.store.engine import parse_url
from monitor.store.inventory import load_document, read_document
from monitor.store.migrate import alembic_config
from monitor.store.schema import vm_device_locks
from monitor.tick.host_tick import TickContext, run_tick
from worker_runs import HOST, HandClock, load_inventory, make_many

HOTPLUG = FIXTURES / "disk-hotplug"
HOTPLUGGED_DISK = "f9548a7f-a242-5a80-b3d3-9301e418e2b0"  # unplugged in the inventory
BATCH = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


def expire_every_lock(url: str) -> None:
    """The locks' TTL runs out (a statement of the test's own, outside the engine)."""
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(sa.update(vm_device_locks).values(
                expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
    finally:
        engine.dispose()


def lock_expiries(url: str) -> dict[str, datetime]:
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(vm_device_locks.c.vm_id,
                                                vm_device_locks.c.expires_at)).all()
    finally:
        engine.dispose()
    return dict(rows)


def test_a_tick_whose_lock_expired_leaves_a_fresh_hot_plug_plugged(db_url, caplog):
    store = Store.open(db_url)
    load_document(store, read_document(HOTPLUG / "inventory.json"))
    fixture = read_fixture(HOTPLUG)
    (vm_id,) = fixture.ticks[0].answer(HOST).reports
    with store.transaction() as tx:
        before = tx.vm(vm_id)
        disk = next(r for r in tx.rows([vm_id])[vm_id] if r.device_id == HOTPLUGGED_DISK)
    assert not disk.is_plugged

    def hot_plug(_point: str) -> None:
        expire_every_lock(db_url)  # the tick has dumped the old XML; its lock expires...
        # ...and a device command takes the lock, plugs the disk, and lets go.
        with store.transaction() as tx:
            assert tx.try_lock(vm_id, "hotplug", tx.now(utc_now), 300)
            tx.apply_changes([VmChanges(vm_id, updates=(RowUpdate(
                HOTPLUGGED_DISK, True, {"type": "pci", "domain": "0x0000", "bus": "0x00",
                                        "slot": "0x09", "function": "0x0"},
                f"ua-{HOTPLUGGED_DISK}", None, None),))])
        with store.transaction() as tx:
            tx.release_lock(vm_id, "hotplug")

    context = TickContext(store=store, holder="tick")
    with injected("after-dump", hot_plug), caplog.at_level(logging.INFO):
        summary = run_tick(ReplayHostSource(fixture.ticks[0], HOST), context)

    assert (summary.fetched, summary.applied, summary.unplugged) == (1, 0, 0)
    assert summary.skipped["lock-lost"] == 1
    assert any("devices lock lost" in r.getMessage() for r in caplog.records)
    with store.transaction() as tx:
        after = tx.vm(vm_id)
        plugged = {r.device_id: r.is_plugged for r in tx.rows([vm_id])[vm_id]}
        assert tx.lock_holders() == set()
        assert tx.last_xml(vm_id) is None  # nothing of the old XML landed
    assert plugged[HOTPLUGGED_DISK] is True  # the hot-plug stands
    assert (after.hash, after.hash_time) == (before.hash, before.hash_time)

    # The next poll reports the XML with the disk: applied, the disk stays plugged.
    summary = run_tick(ReplayHostSource(fixture.ticks[1], HOST), context)
    assert (summary.applied, summary.unplugged, summary.skipped["lock-lost"]) == (1, 0, 0)
    with store.transaction() as tx:
        assert tx.vm(vm_id).hash == fixture.ticks[1].answer(HOST).reports[vm_id].hash
        plugged = {r.device_id: r.is_plugged for r in tx.rows([vm_id])[vm_id]}
    assert plugged[HOTPLUGGED_DISK] is True
    store.close()


def test_a_lock_taken_again_under_the_same_name_is_no_longer_ours(db_url):
    """Two ticks of one worker share its holder name (two hosts at a migration
    hand-over); each taking gets a fresh token, so only the last taker writes."""
    with Store.open(db_url) as store:
        first, second = Fence("worker", utc_now), Fence("worker", utc_now)
        assert first.token != second.token
        vm = "00000000-0000-4000-8000-000000000001"
        with store.transaction() as tx:
            assert first.take(tx, [vm], 60) == {vm}
            assert first.check(tx, [vm]) == {vm}
        with store.transaction() as tx:
            assert second.take(tx, [vm], 60) == {vm}
        with store.transaction() as tx:
            assert first.check(tx, [vm]) == frozenset()
            assert first.renew(tx, [vm], 600) == 0  # a lost lock is not renewed back
            first.release(tx, [vm])  # releasing one's own is never fenced: a no-op here
            assert second.check(tx, [vm]) == {vm}
            second.release(tx, [vm])
            assert tx.lock_holders() == set()


def test_a_claim_releases_the_locks_still_held_at_the_commit_and_keeps_them_on_rollback(db_url):
    """``Fence.claim``: the check and the release of a writing transaction in one
    statement (docs/worker.md, "The devices lock and the fence")."""
    with Store.open(db_url) as store:
        fence, other = Fence("worker", utc_now), Fence("worker", utc_now)
        ours, lost = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
        with store.transaction() as tx:
            assert fence.take(tx, [ours, lost], 60) == {ours, lost}
        with store.transaction() as tx:
            assert other.take(tx, [lost], 60) == {lost}  # taken again: no longer ours
        with pytest.raises(RuntimeError), store.transaction() as tx:
            assert fence.claim(tx, [ours, lost])[0] == {ours}
            raise RuntimeError("the apply fails: the claim rolls back")
        with store.transaction() as tx:
            assert fence.check(tx, [ours, lost]) == {ours}  # still ours after the rollback
            assert fence.claim(tx, [ours, lost])[0] == {ours}
        with store.transaction() as tx:
            assert fence.check(tx, [ours]) == frozenset()  # released by that commit
            assert other.check(tx, [lost]) == {lost}  # the other taker's lock stays
            assert tx.lock_holders() == {"worker"}


def test_a_claim_with_rows_reads_the_rows_of_the_vms_it_released_only(db_url):
    """``Fence.claim``'s rows (on PostgreSQL read in the claim's statement): the VMs whose
    locks are still held, released, with their device rows sorted as ``Tx.rows`` gives
    them, a VM without rows included; a VM whose lock was taken again is neither
    released nor read."""
    from monitor.model.rows import DeviceRow, VmRecord

    ids = [f"00000000-0000-4000-8000-00000000001{n}" for n in range(3)]
    with Store.open(db_url) as store:
        fence, other = Fence("worker", utc_now), Fence("worker", utc_now)
        with store.transaction() as tx:
            tx.replace_vms([
                (VmRecord(id=vm, name=f"vm{n}", host=HOST, status="Up"),
                 [DeviceRow(device_id=f"d{n}-{k}", vm_id=vm, type="disk", device="disk",
                            address={"slot": k}) for k in (2, 0, 1)] if n != 1 else [])
                for n, vm in enumerate(ids)])
            assert fence.take(tx, ids, 60) == set(ids)
        with store.transaction() as tx:
            assert other.take(tx, [ids[2]], 60) == {ids[2]}  # no longer ours
        with store.transaction() as tx:
            expected = tx.rows(ids[:2])
            held, rows = fence.claim(tx, ids)
        assert held == set(ids[:2]) and rows == expected
        assert [row.device_id for row in rows[ids[0]]] == ["d0-0", "d0-1", "d0-2"]
        assert rows[ids[1]] == []
        with store.transaction() as tx:
            assert fence.check(tx, ids) == frozenset()  # released by that commit
            assert other.check(tx, [ids[2]]) == {ids[2]}


def test_an_expired_lock_is_not_held_even_unchanged(db_url):
    with Store.open(db_url) as store:
        fence = Fence("worker", utc_now)
        vm = "00000000-0000-4000-8000-000000000002"
        with store.transaction() as tx:
            assert fence.take(tx, [vm], 60) == {vm}
        expire_every_lock(db_url)
        with store.transaction() as tx:
            assert fence.check(tx, [vm]) == frozenset()


@pytest.mark.parametrize("renewal_due", [False, True], ids=["short-tick", "long-tick"])
def test_a_long_tick_renews_its_locks_in_its_batch_transactions(db_url, tmp_path, renewal_due):
    fixture = make_many(tmp_path / "fixture", 4 * BATCH)
    load_inventory(db_url, fixture)
    clock = HandClock(1000.0)
    seen: list[dict[str, datetime]] = []

    def between_batches(_point: str) -> None:
        fault.nth += 1  # again at the next batch
        seen.append(lock_expiries(db_url))
        if renewal_due and len(seen) == 1:
            clock.now += 40.0  # a third of the TTL has passed since the locks were taken

    with Store.open(db_url) as store:
        context = TickContext(store=store, holder="tick", batch_size=BATCH, lock_ttl_s=120.0,
                              clock=clock)
        source = ReplayHostSource(read_fixture(fixture).ticks[0], HOST)
        with injected("between-batches", between_batches) as fault:
            summary = run_tick(source, context)
    assert summary.applied == 4 * BATCH
    first, second, _third = seen  # before batches 2, 3, 4: each batch released its locks
    assert len(first) == 3 * BATCH and len(second) == 2 * BATCH
    later = [vm for vm in second if second[vm] > first[vm]]
    assert later == (sorted(second) if renewal_due else [])


def test_a_database_at_revision_0001_is_upgraded_with_empty_tokens(db_url):
    engine = sa.create_engine(parse_url(db_url))
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(sa.text(
            "INSERT INTO vm_device_locks (vm_id, holder, expires_at) "
            "VALUES ('00000000-0000-4000-8000-000000000003', 'old', :at)"),
            {"at": datetime(2030, 1, 1)})
    engine.dispose()
    with Store.open(db_url) as store, store.transaction() as tx:
        assert tx.lock_holders() == {"old"}
        vm = "00000000-0000-4000-8000-000000000003"
        assert tx.locks_held([vm], "old", "", datetime(2029, 1, 1, tzinfo=UTC)) == {vm}
        assert not tx.try_lock(vm, "new", tx.now(utc_now) - timedelta(days=10), 60)
