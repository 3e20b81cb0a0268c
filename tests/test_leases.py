"""Many workers on one PostgreSQL database: real ``monitor run`` processes share 30 hosts
through their leases (docs/operations.md, "Many workers").

An audit trigger logs every row a transaction writes with the lease its fence named
(``monitor.lease``: host, epoch, owner); only committed transactions leave rows. From
it the tests check, per host: epochs never decrease in commit order, each epoch has one
owner, every write was fenced, and no host went unticked for longer than one TTL while
workers joined, left or were restarted. Workers tick every second with a 5 s TTL; the
tests wait on conditions with deadlines, never for a fixed time.

The bounds in seconds are the contract's (one TTL; TTL + one interval; TTL + two
intervals) plus ``slack``: how much longer than the configured interval this machine
actually takes between two ticks of a host before the event (``Fleet.slack``). On a
quiet machine it is about 0; on a loaded one, ticks themselves are late, and a failover
cannot be faster than a tick.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from conftest import REPO
from worker_runs import load_inventory, make_fixtures, states, version_states, worker_env

HOSTS = 30
PER_HOST = 1
VERSIONS = 3
INTERVAL_S = 1.0
TTL_S = 5.0
RENEWAL_S = min(TTL_S / 3, INTERVAL_S)  # worker/lease_keeper.py's period
DEADLINE_S = 240.0  # a loaded machine starts a worker in a minute

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

AUDIT = """
CREATE TABLE lease_audit (id bigserial PRIMARY KEY, tx bigint, at timestamptz, tab text,
                          op text, vm_id text, lease text);
CREATE FUNCTION lease_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
  INSERT INTO lease_audit (tx, at, tab, op, vm_id, lease)
  VALUES (txid_current(), clock_timestamp(), TG_TABLE_NAME, TG_OP,
          coalesce(r->>'vm_id', r->>'id'), nullif(current_setting('monitor.lease', true), ''));
  RETURN NULL;
END $$;
CREATE TRIGGER vms_audit AFTER INSERT OR UPDATE OR DELETE ON vms
  FOR EACH ROW EXECUTE FUNCTION lease_audit();
CREATE TRIGGER vm_devices_audit AFTER INSERT OR UPDATE OR DELETE ON vm_devices
  FOR EACH ROW EXECUTE FUNCTION lease_audit();
CREATE TRIGGER vm_device_locks_audit AFTER INSERT OR UPDATE OR DELETE ON vm_device_locks
  FOR EACH ROW EXECUTE FUNCTION lease_audit();
"""


@pytest.fixture(scope="module")
def fleet_fixture(tmp_path_factory):
    """30 hosts of 2 VMs, 3 versions played in a loop; each hash's clean state."""
    root = tmp_path_factory.mktemp("hosts") / "fixture"
    make_fixtures.many_hosts(root, HOSTS, PER_HOST, VERSIONS)
    versions = version_states(root, tmp_path_factory.mktemp("clean"))
    by_hash = {state.hash: state for version in versions.values()
               for state in version.values()}
    return root, by_hash


class Commit(NamedTuple):
    """One committed transaction that wrote for a host under a lease."""

    first_id: int
    at: datetime
    host: str
    epoch: int
    owner: str


class Worker:
    """One ``monitor run`` process; its output goes to files (a pipe left unread fills)."""

    def __init__(self, fleet: "Fleet", number: int, fault: str | None = None) -> None:
        self.out = fleet.tmp / f"worker-{number}.out"
        self.err = fleet.tmp / f"worker-{number}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(fleet.config),
                 "--db", fleet.url], stdout=out, stderr=err, env=worker_env(fault), cwd=REPO)
        self.fleet = fleet
        self._owner: str | None = None

    @property
    def owner(self) -> str:
        """Its lease owner name, once its heartbeat is in."""
        if self._owner is None:
            self._owner = self.fleet.wait_for(self._registered, f"worker {self.pid} joins")
        return self._owner

    def _registered(self) -> str | None:
        prefix = f"monitor@%:{self.pid}/%"
        return self.fleet.scalar("SELECT owner FROM worker_heartbeats WHERE owner LIKE :p",
                                 p=prefix)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.err.read_text()

    def stdout(self) -> str:
        return self.out.read_text()

    def stopped(self) -> bool:
        """SIGSTOPped (the pause fault)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "T"

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=DEADLINE_S)
        assert self.process.returncode == 0, self.stderr()
        assert "Traceback" not in self.stderr()


class Fleet:
    def __init__(self, url: str, fixture: Path, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.engine = sa.create_engine(make_url(url))
        self.config = tmp / "workers.toml"
        hosts = "".join(f'\n[[hosts]]\nname = "host-{n:03d}"\nfixture = "{fixture}"\n'
                        for n in range(HOSTS))
        self.config.write_text(
            f"[worker]\ninterval = {INTERVAL_S}\nlease_ttl = {TTL_S}\nbatch_size = 5\n"
            f"backoff_max = {INTERVAL_S}\n{hosts}", encoding="utf-8")
        self.workers: list[Worker] = []

    def start(self, fault: str | None = None) -> Worker:
        worker = Worker(self, len(self.workers), fault)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        self.engine.dispose()

    # --- the database ----------------------------------------------------------------

    def scalar(self, sql: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params) -> list:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).all()

    def now(self) -> datetime:
        return self.scalar("SELECT clock_timestamp()")

    def held(self) -> dict[str, list[str]]:
        """Live owner -> the hosts it holds now (unexpired leases of live workers)."""
        found: dict[str, list[str]] = defaultdict(list)
        for owner, host in self.rows(
                "SELECT l.owner, l.host FROM host_leases l JOIN worker_heartbeats w "
                "ON w.owner = l.owner WHERE w.expires_at > now() ORDER BY l.host"):
            found[owner].append(host)
        return found

    def balanced(self, workers: list[Worker]) -> dict[str, list[str]] | None:
        """Every host held by one of ``workers``, shares within one of each other."""
        held = self.held()
        owners = {worker.owner for worker in workers}
        counts = [len(held.get(owner, [])) for owner in owners]
        if set(held) <= owners and sum(counts) == HOSTS and max(counts) - min(counts) <= 1:
            return held
        return None

    def wait_for(self, condition, what: str, timeout: float = DEADLINE_S):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out: {what}"
            time.sleep(0.1)  # polling the database, not waiting in its place

    # --- the audit log ---------------------------------------------------------------

    def commits(self) -> list[Commit]:
        """Every committed transaction that wrote under a lease, in commit order."""
        found = []
        for first_id, at, lease in self.rows(
                "SELECT min(id), min(at), min(lease) FROM lease_audit WHERE lease IS NOT NULL "
                "GROUP BY tx ORDER BY min(id)"):
            host, epoch, owner = lease.split(" ", 2)
            found.append(Commit(first_id, at, host, int(epoch), owner))
        return found

    def check_audit(self) -> list[Commit]:
        """The fencing invariants over every committed transaction; the commits."""
        unfenced = self.rows(
            "SELECT tab, op, count(*) FROM lease_audit WHERE lease IS NULL AND NOT "
            "(tab = 'vm_device_locks' AND op = 'DELETE') GROUP BY tab, op")
        assert unfenced == []  # only releasing devices locks is never fenced
        mixed = self.rows("SELECT tx FROM lease_audit WHERE lease IS NOT NULL GROUP BY tx "
                          "HAVING count(DISTINCT lease) > 1")
        assert mixed == []  # a transaction writes for one host, under one lease
        commits = self.commits()
        owners: dict[tuple[str, int], set[str]] = defaultdict(set)
        last_epoch: dict[str, int] = {}
        for commit in commits:
            assert commit.epoch >= last_epoch.get(commit.host, 0), commit
            last_epoch[commit.host] = commit.epoch
            owners[commit.host, commit.epoch].add(commit.owner)
        assert {key: names for key, names in owners.items() if len(names) > 1} == {}
        return commits

    def slack(self) -> float:
        """Seconds beyond the interval this machine takes between two ticks of a host
        now: the longest gap between two commits of one host, 3 ticks each, minus it."""
        since = self.now()

        def three_each() -> dict[str, list[datetime]] | None:
            times: dict[str, list[datetime]] = defaultdict(list)
            for commit in self.commits():
                if commit.at > since:
                    times[commit.host].append(commit.at)
            return times if len(times) == HOSTS and min(map(len, times.values())) >= 3 else None

        times = self.wait_for(three_each, "three ticks of every host")
        longest = max((b - a).total_seconds() for moments in times.values()
                      for a, b in zip(moments, moments[1:]))
        return max(0.0, longest - INTERVAL_S)

    def longest_gap(self, since: datetime, until: datetime) -> tuple[float, str]:
        """The longest time a host went without a commit between two moments."""
        times: dict[str, list[datetime]] = {f"host-{n:03d}": [since] for n in range(HOSTS)}
        for commit in self.commits():
            if since <= commit.at <= until:
                times[commit.host].append(commit.at)
        return max(((max(b - a for a, b in zip(moments, [*moments[1:], until])).total_seconds(),
                     host) for host, moments in times.items()))


@pytest.fixture
def fleet(fleet_fixture, db_url, tmp_path):
    fixture, by_hash = fleet_fixture
    load_inventory(db_url, fixture)
    fleet = Fleet(db_url, fixture, tmp_path)
    with fleet.engine.begin() as connection:
        connection.exec_driver_sql(AUDIT)
    fleet.by_hash = by_hash
    yield fleet
    fleet.close()


def no_vm_half_applied(fleet: Fleet) -> None:
    """The crash tests' invariant: each VM's rows are exactly those its hash's XML leaves."""
    found = states(fleet.url)
    assert len(found) == HOSTS * PER_HOST
    wrong = [vm_id for vm_id, state in found.items()
             if state.hash != "inventory" and state != fleet.by_hash[state.hash]]
    assert wrong == []


def ticked_since(fleet: Fleet, hosts: list[str], since: datetime, owners: set[str]):
    """Every one of ``hosts`` has a commit since ``since`` by one of ``owners``."""
    done = {c.host for c in fleet.commits() if c.at > since and c.owner in owners}
    return set(hosts) <= done


def test_workers_share_the_hosts_a_rolling_restart_and_a_fourth_joins(fleet):
    first = [fleet.start() for _ in range(3)]
    held = fleet.wait_for(lambda: fleet.balanced(first), "three workers share 30 hosts")
    assert sorted(map(len, held.values())) == [10, 10, 10]

    # Every host ticked, each by exactly one worker: the one holding it.
    steady = fleet.now()
    owners = {owner for owner in held}
    fleet.wait_for(lambda: ticked_since(fleet, sum(held.values(), []), steady, owners),
                   "every host ticks")
    by_host = defaultdict(set)
    for commit in fleet.check_audit():
        if commit.at > steady:
            by_host[commit.host].add(commit.owner)
    assert by_host == {host: {owner} for owner, hosts in held.items() for host in hosts}

    # Rolling restart: start a new worker, then SIGTERM an old one, one by one.
    slack = fleet.slack()
    restart = fleet.now()
    running = list(first)
    for old in first:
        new = fleet.start()
        running = [w for w in running if w is not old] + [new]
        new.owner  # joined
        old.terminate()
        fleet.wait_for(lambda: fleet.balanced(running), "shares even after a restart")
    gap, host = fleet.longest_gap(restart, fleet.now())
    assert gap <= TTL_S + slack, (
        f"{host} went {gap:.1f}s without a tick during the rolling restart (slack {slack:.1f}s)")

    # A fourth worker joins: the others hand leases back one at a time.
    joined = fleet.now()
    fourth = fleet.start()
    four = [*running, fourth]
    held = fleet.wait_for(lambda: fleet.balanced(four), "four workers share 30 hosts")
    assert sorted(map(len, held.values())) == [7, 7, 8, 8]
    gap, host = fleet.longest_gap(joined, fleet.now())
    assert gap <= TTL_S + slack, (
        f"{host} went {gap:.1f}s without a tick while the fourth joined (slack {slack:.1f}s)")

    running = four
    for worker in running:
        worker.terminate()
    assert fleet.rows("SELECT host FROM host_leases WHERE owner IS NOT NULL") == []
    assert fleet.scalar("SELECT count(*) FROM worker_heartbeats") == 0
    fleet.check_audit()
    no_vm_half_applied(fleet)


def pause_a_worker_holding_locks(fleet: Fleet) -> tuple[list[Worker], Worker]:
    """Two workers, then a third that pauses (SIGSTOP) after a dump once it holds hosts."""
    others = [fleet.start() for _ in range(2)]
    fleet.wait_for(lambda: fleet.balanced(others), "two workers share 30 hosts")
    fleet.slack_before = fleet.slack()
    victim = fleet.start(fault="after-dump:12:pause")
    fleet.wait_for(victim.stopped, "the third worker pauses after a dump")
    assert "fault after-dump: pausing this process (SIGSTOP)" in victim.stderr()
    return others, victim


def test_a_killed_workers_hosts_and_vms_are_taken_over_within_a_ttl(fleet):
    others, victim = pause_a_worker_holding_locks(fleet)
    victim.process.kill()
    victim.process.wait()
    killed_at = fleet.now()
    hosts = fleet.held()[victim.owner]
    locked = [vm for vm, in fleet.rows("SELECT vm_id FROM vm_device_locks WHERE holder = :o",
                                       o=victim.owner)]
    assert hosts and locked  # it died holding hosts, in the middle of a tick

    survivors = {worker.owner for worker in others}
    fleet.wait_for(lambda: ticked_since(fleet, hosts, killed_at, survivors),
                   "the killed worker's hosts tick again")
    first_tick = {}
    for commit in fleet.commits():
        if commit.at > killed_at and commit.host in hosts and commit.owner in survivors:
            first_tick.setdefault(commit.host, commit.at)
    slack = fleet.slack_before
    slowest = max((at - killed_at).total_seconds() for at in first_tick.values())
    # docs/operations.md "What a failover costs": the heartbeat expires within lease_ttl,
    # a survivor sees it at its next renewal, and ticks the host at its next job.
    bound = TTL_S + RENEWAL_S + INTERVAL_S
    if slowest > bound + slack:  # the machine may have slowed since: measure it again,
        slack = max(slack, fleet.slack())  # so its delay is bracketed before and after
    assert slowest <= bound + slack, (
        f"hosts ticked again {slowest:.1f}s after the kill (slack {slack:.1f}s)")

    def applied_again() -> dict[str, datetime]:
        return dict(fleet.rows(
            "SELECT vm_id, min(at) FROM lease_audit WHERE tab = 'vms' AND op = 'UPDATE' "
            "AND at > :t AND vm_id = ANY(:vms) GROUP BY vm_id", t=killed_at, vms=locked))

    applied = fleet.wait_for(lambda: len(applied_again()) == len(locked) and applied_again(),
                             "the VMs it was applying are applied")
    slowest = max((at - killed_at).total_seconds() for at in applied.values())
    bound = TTL_S + RENEWAL_S + 2 * INTERVAL_S
    if slowest > bound + slack:
        slack = max(slack, fleet.slack())
    assert slowest <= bound + slack, (
        f"VMs applied {slowest:.1f}s after the kill (slack {slack:.1f}s)")
    print(f"failover (lease_ttl {TTL_S:g}s, interval {INTERVAL_S:g}s, slack {slack:.1f}s): "
          f"hosts ticked again within {(max(first_tick.values()) - killed_at).total_seconds():.1f}s, "
          f"VMs applied within {slowest:.1f}s of the kill")

    for worker in others:
        worker.terminate()
    fleet.check_audit()
    no_vm_half_applied(fleet)


def test_a_frozen_worker_is_fenced_then_rejoins_with_a_fair_share(fleet):
    others, frozen = pause_a_worker_holding_locks(fleet)
    hosts = fleet.held()[frozen.owner]
    assert hosts
    survivors = {worker.owner for worker in others}
    fleet.wait_for(lambda: set(hosts) <= {h for o in survivors for h in fleet.held().get(o, [])},
                   "the frozen worker's hosts are taken over")
    frozen.process.send_signal(signal.SIGCONT)

    three = [*others, frozen]
    held = fleet.wait_for(lambda: fleet.balanced(three), "the frozen worker rejoins")
    assert sorted(map(len, held.values())) == [10, 10, 10]
    lines = [line for line in frozen.stdout().splitlines() if "lease-lost=" in line]
    # its tick in flight was refused and counted
    assert lines, f"{frozen.stdout()}\n--- its stderr ---\n{frozen.stderr()}"
    lost_logs = [line for line in frozen.stderr().splitlines() if "lease lost:" in line]
    assert len(lost_logs) == len(lines)  # logged once per tick it stopped
    for worker in three:
        worker.terminate()
    fleet.check_audit()  # nothing it wrote under its old epoch landed after the takeover
    no_vm_half_applied(fleet)
