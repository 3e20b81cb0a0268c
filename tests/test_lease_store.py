"""Host leases in one process, on SQLite and PostgreSQL: the lease statements, the fair
share, the keeper's decisions, and the fence a tick writes under (docs/operations.md,
"Many workers"). The real processes are in tests/test_leases.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.errors import LeaseLost, WorkerConflict
from monitor.faults import injected
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import ReplayHostSource
from monitor.model.lease import HostLease, WorkerLoad
from monitor.model.rows import VmRecord
from monitor.store import Fence, LeaseTx, Store
from monitor.tick.host_tick import TickContext, run_tick
from monitor.worker.fair_share import fair_shares
from monitor.worker.lease_keeper import LeaseKeeper
from worker_runs import load_inventory, make_fixtures, states

HOSTS = [f"host-{n}" for n in range(5)]
TTL_S = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(("hosts", "workers", "shares"), [
    pytest.param(30, [("a", 0), ("b", 0), ("c", 0)], {"a": 10, "b": 10, "c": 10}, id="even"),
    pytest.param(30, [("a", 10), ("b", 10), ("c", 10), ("d", 0)],
                 {"a": 8, "b": 8, "c": 7, "d": 7}, id="a-fourth-joins"),
    pytest.param(31, [("a", 0), ("b", 0), ("c", 0)], {"a": 11, "b": 10, "c": 10},
                 id="one-more-by-name"),
    pytest.param(31, [("a", 10), ("b", 10), ("c", 11)], {"a": 10, "b": 10, "c": 11},
                 id="the-one-holding-more-keeps-it"),
    pytest.param(30, [("a", 30)], {"a": 30}, id="alone"),
    pytest.param(30, [("a", 0, 5), ("b", 0), ("c", 0)], {"a": 5, "b": 13, "c": 12},
                 id="a-cap-below-the-split"),
    pytest.param(30, [("a", 0, 5), ("b", 0, 5)], {"a": 5, "b": 5}, id="caps-leave-hosts-over"),
    pytest.param(30, [("a", 10, 0), ("b", 10), ("c", 10)], {"a": 0, "b": 15, "c": 15},
                 id="a-stopping-worker"),
])
def test_fair_shares(hosts, workers, shares):
    assert fair_shares(hosts, [WorkerLoad(*worker) for worker in workers]) == shares


def lease_tx(store: Store):
    return store.transaction(LeaseTx)


def join(store: Store, owner: str, *, gone=lambda _owner: False, hosts=HOSTS) -> list[str]:
    with lease_tx(store) as tx:
        return tx.join(tx.now(utc_now), owner, hosts, TTL_S, None, gone)


def claim(store: Store, owner: str, count: int, hosts=HOSTS):
    with lease_tx(store) as tx:
        return tx.claim(tx.now(utc_now), owner, hosts, count)


def renew(store: Store, owner: str, now: datetime | None = None):
    with lease_tx(store) as tx:
        return tx.renew(now or tx.now(utc_now), owner, HOSTS, TTL_S, None)


def expire_heartbeat(url: str, owner: str) -> None:
    """The owner stopped renewing a while ago."""
    engine = sa.create_engine(sa.engine.make_url(url))
    with engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE worker_heartbeats SET expires_at = :past WHERE owner = :owner"),
            {"past": datetime(2000, 1, 1, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
             "owner": owner})
    engine.dispose()


def test_claims_renewals_and_hand_backs(db_url):
    with Store.open(db_url) as store:
        assert join(store, "a") == []
        claimed = claim(store, "a", 3)
        assert [(c.host, c.epoch, c.previous_owner) for c in claimed] == [
            ("host-0", 1, None), ("host-1", 1, None), ("host-2", 1, None)]
        view = renew(store, "a")
        assert view.mine == {"host-0": 1, "host-1": 1, "host-2": 1}
        assert (view.workers, view.claimable) == ((WorkerLoad("a", 3, None),), 2)
        with lease_tx(store) as tx:
            assert tx.hand_back("a", ["host-0"]) == 1
        assert renew(store, "a").mine == {"host-1": 1, "host-2": 1}
        assert [c.epoch for c in claim(store, "a", 1)] == [2]  # every claim bumps the epoch
        with lease_tx(store) as tx:
            assert tx.leave("a") == 3
            assert set(tx.leases().values()) == {(None, 2), (None, 1), (None, 0)}


POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # many workers


@POSTGRESQL
def test_a_takeover_bumps_the_epoch_and_releases_the_tick_locks_of_the_old_owner(
        db_url, tmp_path):
    fixture = make_fixtures_many(tmp_path)
    load_inventory(db_url, fixture)
    with Store.open(db_url) as store:
        join(store, "a", hosts=["host-a"])
        with lease_tx(store) as tx:
            tx.claim(tx.now(utc_now), "a", ["host-a"], 1)
            vm_ids = sorted(tx.vms_on_host("host-a"))
            tx.try_lock_many(vm_ids, "a", tx.now(utc_now), 120)
            tx.try_lock_many(["not-on-this-host"], "a", tx.now(utc_now), 120)
        join(store, "b", hosts=["host-a"])
        with lease_tx(store) as tx:  # a still renews: nothing to take
            assert tx.claim(tx.now(utc_now), "b", ["host-a"], 1) == []
        expire_heartbeat(db_url, "a")
        with lease_tx(store) as tx:
            taken = tx.claim(tx.now(utc_now), "b", ["host-a"], 1)
            assert [(c.host, c.epoch, c.previous_owner, c.released_locks) for c in taken] == [
                ("host-a", 2, "a", len(vm_ids))]
            assert tx.lock_holders() == {"a"}  # its lock on another host's VM stays
        with store.transaction() as tx:
            assert not tx.holds_lease(HostLease("host-a", "a", 1), utc_now)
            assert tx.holds_lease(HostLease("host-a", "b", 2), utc_now)
            assert not tx.holds_lease(HostLease("host-a", "b", 1), utc_now)


LOCKS_AUDIT = """
CREATE TABLE locks_audit (op text, vm_id text, lease text);
CREATE FUNCTION locks_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO locks_audit VALUES (TG_OP, CASE TG_OP WHEN 'DELETE' THEN OLD.vm_id
                                  ELSE NEW.vm_id END, current_setting('monitor.lease', true));
  RETURN NULL;
END $$;
CREATE TRIGGER locks_audit AFTER INSERT OR UPDATE OR DELETE ON vm_device_locks
  FOR EACH ROW EXECUTE FUNCTION locks_audit();
"""


@POSTGRESQL
def test_a_ticks_devices_locks_are_taken_and_claimed_in_the_statements_that_check_its_lease(
        db_url, tmp_path):
    """On PostgreSQL the lease is checked in the statement that takes a tick's devices
    locks (``Fence.take``, ``Tx.take_locks_fenced``), sent on its own outside a
    transaction (``Store.one_statement``), and in the batch's claim (``Fence.claim``,
    ``Tx.claim_rows_fenced``): with the lease held the locks are taken, or released
    with the VMs' rows read, every lock row written under the lease's name
    (``monitor.lease``, for audit triggers); with the lease lost nothing is taken or
    released, and the tick learns it."""
    fixture = make_fixtures_many(tmp_path)
    load_inventory(db_url, fixture)
    with Store.open(db_url) as store:
        join(store, "a", hosts=["host-a"])
        [claimed] = claim(store, "a", 1, ["host-a"])
        with store.read() as tx:
            vm_ids = sorted(tx.vms_on_host("host-a"))
        with store._engine.begin() as connection:
            connection.exec_driver_sql(LOCKS_AUDIT)
        sent = []
        sa.event.listen(store._engine, "before_cursor_execute",
                        lambda *event: sent.append(event[2].split()[0]))
        held = Fence("a", utc_now, HostLease("host-a", "a", claimed.epoch))
        with store.one_statement() as tx:
            assert held.take(tx, reversed(vm_ids), 60.0) == set(vm_ids)
        assert sent == ["WITH"]
        stale = HostLease("host-a", "a", claimed.epoch + 1)  # not this worker's epoch
        with pytest.raises(LeaseLost), store.one_statement() as tx:
            Fence("b", utc_now, stale).take(tx, vm_ids, 60.0)
        assert stale.lost
        with pytest.raises(LeaseLost), store.one_statement() as tx:  # known lost: not sent
            Fence("b", utc_now, stale).take(tx, vm_ids, 60.0)
        assert sent == ["WITH", "WITH"]
        first, rest = vm_ids[:1], vm_ids[1:]
        assert rest
        with store.transaction() as tx:
            kept, rows = held.claim(tx, vm_ids[:1], tx.now(utc_now))
        assert kept == set(first) and list(rows) == first and rows[first[0]]
        same_token = Fence("a", utc_now, stale, token=held.token)
        stale.lost = False  # not known yet: found in the claim's statement
        with pytest.raises(LeaseLost), store.transaction() as tx:
            same_token.claim(tx, rest, tx.now(utc_now))
        with store.read() as tx:
            assert tx.locks_held(vm_ids, "a", held.token, tx.now(utc_now)) == set(rest)
            audited = tx._connection.exec_driver_sql(
                "SELECT op, vm_id, lease FROM locks_audit ORDER BY op, vm_id").all()
    lease = f"host-a {claimed.epoch} a"
    assert audited == [("DELETE", first[0], lease),
                       *(("INSERT", vm_id, lease) for vm_id in vm_ids)]


@POSTGRESQL
def test_a_tick_under_its_lease_sends_no_statement_more_than_one_without(db_url, tmp_path):
    """The lease is checked inside the statements that take and claim the devices locks
    (docs/operations.md, "Fencing"): a tick that applies under its lease sends the same
    five statements as one without a lease (tests/test_tick_statements.py), and its
    locks' statement goes outside a transaction (no ``BEGIN`` and ``COMMIT``)."""
    fixture = make_fixtures_many(tmp_path)
    load_inventory(db_url, fixture)
    with Store.open(db_url) as store:
        join(store, "a", hosts=["host-a"])
        [claimed] = claim(store, "a", 1, ["host-a"])
        sent = []

        def record(connection, _cursor, statement, *_event) -> None:
            driver = connection.connection.driver_connection
            sent.append((statement.split()[0], driver.autocommit))

        sa.event.listen(store._engine, "before_cursor_execute", record)
        source = ReplayHostSource(read_fixture(fixture).ticks[0], "host-a")
        summary = run_tick(source, TickContext(store=store, holder="a"),
                           HostLease("host-a", "a", claimed.epoch))
    assert summary.applied > 1 and not summary.lease_lost
    # the first read and the locks outside a transaction; the batch's lock, claim, writes
    assert sent == [("SELECT", True), ("WITH", True), ("SELECT", False), ("WITH", False),
                    ("WITH", False)], sent


@POSTGRESQL
def test_a_fenced_transaction_holds_its_lease_row_against_claims_only(db_url):
    """``holds_lease`` locks the lease row ``FOR KEY SHARE`` until its transaction ends
    (docs/operations.md, "Fencing"): another worker's claim of the lease, expired
    meanwhile, skips the host until it ends, even once the holder has handed the lease
    back; neither the holder's heartbeat renewal nor its hand-back waits for it (a
    wait would fail here at the lock timeout)."""
    with Store.open(db_url) as store:
        join(store, "a", hosts=["host-a"])
        join(store, "b", hosts=["host-a"])
        [claimed] = claim(store, "a", 1, ["host-a"])
        with store.transaction() as fenced, store._engine.connect() as other:
            assert fenced.holds_lease(HostLease("host-a", "a", claimed.epoch), utc_now)
            other.exec_driver_sql("SET lock_timeout = '200ms'")
            other.commit()
            with other.begin():
                LeaseTx(other).renew(LeaseTx(other).now(utc_now), "a", ["host-a"], TTL_S,
                                     None)
            expire_heartbeat(db_url, "a")
            with other.begin():
                assert LeaseTx(other).claim(LeaseTx(other).now(utc_now), "b", ["host-a"],
                                            1) == []
            with other.begin():
                assert LeaseTx(other).hand_back("a", ["host-a"]) == 1
            with other.begin():
                assert LeaseTx(other).claim(LeaseTx(other).now(utc_now), "b", ["host-a"],
                                            1) == []
        # the fenced transaction over, the lease is b's to take (a handed it back)
        assert [c.previous_owner for c in claim(store, "b", 1, ["host-a"])] == [None]


def make_fixtures_many(tmp_path):
    root = tmp_path / "fixture"
    make_fixtures.many_vms(root, 4, 1)
    return root


def test_a_lease_not_claimed_by_anyone_is_the_owners_again_when_it_renews(db_url):
    with Store.open(db_url) as store:
        join(store, "a")
        claim(store, "a", 2)
        expire_heartbeat(db_url, "a")
        with store.transaction() as tx:
            assert not tx.holds_lease(HostLease("host-0", "a", 1), utc_now)
        assert renew(store, "a").mine == {"host-0": 1, "host-1": 1}
        with store.transaction() as tx:
            assert tx.holds_lease(HostLease("host-0", "a", 1), utc_now)


def test_sqlite_runs_one_worker_and_takes_over_a_dead_ones_claim(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with Store.open(url) as store:
        join(store, "monitor@node1:100/aaaa")
        claim(store, "monitor@node1:100/aaaa", 2)
        with pytest.raises(WorkerConflict) as refused:
            join(store, "monitor@node1:200/bbbb")
        assert str(refused.value) == (
            "another worker (monitor@node1:100/aaaa) runs on this database")
        taken = join(store, "monitor@node1:200/bbbb",
                     gone=lambda owner: owner == "monitor@node1:100/aaaa")
        assert taken == ["monitor@node1:100/aaaa"]
        claimed = claim(store, "monitor@node1:200/bbbb", 5)
        assert {(c.host, c.previous_owner) for c in claimed if c.previous_owner} == {
            ("host-0", "monitor@node1:100/aaaa"), ("host-1", "monitor@node1:100/aaaa")}


def test_a_status_is_written_only_over_what_the_tick_read(db_url):
    with Store.open(db_url) as store, store.transaction() as tx:
        tx.upsert_vm(VmRecord("vm-1", "one", host="host-a", status="Migration Source"))
        read = tx.vm("vm-1")
        assert tx.set_status("vm-1", "Up", host="host-b", read=read)  # host-b's hand-over
        assert not tx.set_status("vm-1", "Paused", read=read)  # host-a read it before
        assert (tx.vm("vm-1").host, tx.vm("vm-1").status) == ("host-b", "Up")


class Slots:
    """The scheduler side of the keeper, in memory."""

    def __init__(self) -> None:
        self.running: dict[str, HostLease] = {}
        self.busy: set[str] = set()

    def start(self, lease: HostLease) -> None:
        self.running[lease.host] = lease

    def stop_job(self, host: str) -> None:
        self.running.pop(host)

    def retire(self, host: str, wait_until: float | None = None) -> bool:
        if host in self.busy and wait_until is None:
            return False
        self.running.pop(host).lost = True
        return True


@POSTGRESQL
def test_the_keeper_brings_each_worker_to_its_share_one_hand_back_at_a_time(db_url):
    ticking = iter(range(0, 10**6, 10))  # each look at the clock: 10 s later
    clock = lambda: float(next(ticking))  # noqa: E731
    with Store.open(db_url) as store:
        a = LeaseKeeper(store, "a", HOSTS, ttl_s=TTL_S, interval_s=1, process_utc=utc_now,
                        monotonic=clock)
        a.join(lambda _owner: False)
        a_slots = Slots()
        a.cycle(a_slots)
        assert sorted(a_slots.running) == HOSTS  # alone: every host
        b = LeaseKeeper(store, "b", HOSTS, ttl_s=TTL_S, interval_s=1, process_utc=utc_now,
                        monotonic=clock)
        b.join(lambda _owner: False)
        b_slots = Slots()
        a_slots.busy = {"host-4"}  # a tick of host-4 runs: another one goes back
        a.cycle(a_slots)
        assert sorted(a_slots.running) == HOSTS[:3] + ["host-4"]
        b.cycle(b_slots)
        assert sorted(b_slots.running) == ["host-3"]
        a.cycle(a_slots)
        b.cycle(b_slots)
        assert (len(a_slots.running), len(b_slots.running)) == (3, 2)  # 5 hosts: 3 and 2
        a.cycle(a_slots)
        assert len(a_slots.running) == 3  # balanced: a keeps its one more


@pytest.mark.parametrize("point", ["after-plan", "after-dump"])
def test_a_tick_whose_lease_was_taken_over_lands_nothing(db_url, tmp_path, point):
    """Another worker takes the host over while this worker's tick is at ``point``
    (frozen, partitioned: it does not know): every later transaction of the tick is
    refused by the fence in the database, nothing is applied, its locks go."""
    fixture = make_fixtures_many(tmp_path)
    load_inventory(db_url, fixture)
    before = states(db_url)
    with Store.open(db_url) as store:
        join(store, "a", hosts=["host-a"])
        [claimed] = claim(store, "a", 1, ["host-a"])
        lease = HostLease("host-a", "a", claimed.epoch)

        def taken_over(_point: str) -> None:
            expire_heartbeat(db_url, "a")
            join(store, "b", hosts=["host-a"])
            assert [c.previous_owner for c in claim(store, "b", 1, ["host-a"])] == ["a"]

        context = TickContext(store=store, holder="a")
        source = ReplayHostSource(read_fixture(fixture).ticks[0], "host-a")
        with injected(point, taken_over):
            summary = run_tick(source, context, lease)
        with store.transaction() as tx:
            assert tx.lock_holders() == set()
    assert (summary.lease_lost, summary.errors["lease-lost"], summary.applied) == (True, 1, 0)
    assert lease.lost
    assert states(db_url) == before
