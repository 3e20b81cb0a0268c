"""Host leases and worker heartbeats: the statements of ``monitor run``'s lease keeper.

The contract is docs/operations.md, "Many workers". In short:

* a lease row per configured host: ``owner`` (``NULL``: free) and ``epoch``; a heartbeat
  row per running worker with its ``expires_at``. A lease expires with its owner's
  heartbeat: renewing the heartbeat, one UPDATE of one row, renews all of a worker's
  leases, and the lease rows are written only when they change hands, so the tick's
  lock on a lease row (``FOR KEY SHARE``: ``repository._holds_lease``) never waits
  for a renewal. Time is the database's (``Tx.now``: ``now()`` on PostgreSQL, the
  process's UTC clock on SQLite), read once per transaction by the caller and passed in
  as ``now``: workers need no clock agreement;
* a claim takes free or expired leases with ``FOR UPDATE SKIP LOCKED`` (two claimers
  never wait for each other, and a lease a committing tick holds locked is skipped) and
  increments each one's epoch; a takeover (the lease had another owner) also releases
  the devices locks that owner's ticks held on the host's VMs;
* a lease whose owner's heartbeat expired but that nobody claimed is its owner's again
  when the owner renews (no one else wrote under it in between);
* SQLite stays single-worker: ``join`` refuses a second live worker on the file.

Use as ``store.transaction(LeaseTx)``; the tick's fence (``Tx.holds_lease``) lives with
the other tick statements in ``repository``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from monitor.errors import WorkerConflict
from monitor.model.lease import Claimed, LeaseView, WorkerLoad
from monitor.store.repository import Tx
from monitor.store.schema import (
    UtcDateTime,
    host_leases,
    vm_device_locks,
    vms,
    worker_heartbeats,
)


_HOSTS = sa.bindparam("hosts", expanding=True)


class LeaseTx(Tx):
    """The lease statements of one transaction: ``store.transaction(LeaseTx)``."""

    __slots__ = ()

    @property
    def single_worker(self) -> bool:
        """SQLite: one worker per database file (docs/operations.md)."""
        return self._connection.dialect.name != "postgresql"

    def join(self, now: datetime, owner: str, hosts: Sequence[str], ttl_s: float,
             max_hosts: int | None, gone: Callable[[str], bool]) -> list[str]:
        """Register this worker's heartbeat and the hosts' lease rows.

        Heartbeats that expired are deleted; so are those of workers ``gone`` says
        are dead (this machine's, their process gone), so that their leases can be
        taken over at once. Returns the owners taken over that way. On SQLite a live
        heartbeat of another worker is a ``WorkerConflict``.
        """
        others = self._connection.execute(
            sa.select(worker_heartbeats.c.owner, worker_heartbeats.c.expires_at)
            .where(worker_heartbeats.c.owner != owner).order_by(worker_heartbeats.c.owner)
        ).all()
        taken_over = [other for other, expires_at in others if expires_at > now and gone(other)]
        stale = [other for other, expires_at in others if expires_at <= now] + taken_over
        live = [other for other, expires_at in others
                if expires_at > now and other not in taken_over]
        if live and self.single_worker:
            raise WorkerConflict(f"another worker ({live[0]}) runs on this database")
        if stale:
            self._connection.execute(
                sa.delete(worker_heartbeats).where(worker_heartbeats.c.owner.in_(stale)))
        self._beat(owner, now, ttl_s, max_hosts)
        self._add_hosts(hosts)
        return taken_over

    def renew(self, now: datetime, owner: str, hosts: Sequence[str], ttl_s: float,
              max_hosts: int | None) -> LeaseView:
        """Extend this worker's heartbeat, and with it all its leases, in one statement;
        then look at what it holds and at every live worker's load."""
        self._beat(owner, now, ttl_s, max_hosts)
        mine = self._connection.execute(
            sa.select(host_leases.c.host, host_leases.c.epoch)
            .where(host_leases.c.owner == owner)
        ).all()
        return LeaseView(
            mine=dict(mine),
            workers=self._loads(now, hosts),
            claimable=self._connection.execute(
                sa.select(sa.func.count()).select_from(_WITH_OWNER_BEAT)
                .where(host_leases.c.host.in_(_HOSTS), _claimable()),
                {"hosts": list(hosts), "b_now": now},
            ).scalar_one(),
            next_change_s=self._next_change(owner, now),
        )

    def claim(self, now: datetime, owner: str, hosts: Sequence[str], count: int) -> list[Claimed]:
        """Claim up to ``count`` free or expired leases of ``hosts``; each epoch + 1."""
        if count <= 0:
            return []
        candidates = self._connection.execute(
            sa.select(host_leases.c.host, host_leases.c.owner).select_from(_WITH_OWNER_BEAT)
            .where(host_leases.c.host.in_(_HOSTS), _claimable())
            .order_by(host_leases.c.host).limit(count)
            .with_for_update(of=host_leases, skip_locked=True),
            {"hosts": list(hosts), "b_now": now},
        ).all()
        if not candidates:
            return []
        epochs = dict(self._connection.execute(
            sa.update(host_leases)
            .where(host_leases.c.host.in_([host for host, _ in candidates]))
            .values(owner=owner, epoch=host_leases.c.epoch + 1)
            .returning(host_leases.c.host, host_leases.c.epoch)
        ).all())
        claimed = []
        for host, previous in candidates:
            taken_from = previous if previous not in (None, owner) else None
            released = self._release_locks_of(taken_from, host) if taken_from else 0
            claimed.append(Claimed(host, epochs[host], taken_from, released))
        return claimed

    def hand_back(self, owner: str, hosts: Sequence[str]) -> int:
        """Free these leases of this worker (epochs stay; the next claim bumps them)."""
        statement = (sa.update(host_leases)
                     .where(host_leases.c.host.in_(list(hosts)), host_leases.c.owner == owner)
                     .values(owner=None))
        return self._connection.execute(statement).rowcount

    def drain(self, owner: str) -> None:
        """This worker is stopping: its share becomes 0, so the others claim each lease
        as it hands it back, while the leases it still holds stay valid."""
        self._connection.execute(
            sa.update(worker_heartbeats).where(worker_heartbeats.c.owner == owner)
            .values(max_hosts=0))

    def leave(self, owner: str) -> int:
        """Free all of this worker's leases and delete its heartbeat: the number freed."""
        freed = self._connection.execute(
            sa.update(host_leases).where(host_leases.c.owner == owner).values(owner=None)
        ).rowcount
        self._connection.execute(
            sa.delete(worker_heartbeats).where(worker_heartbeats.c.owner == owner))
        return freed

    def leases(self) -> dict[str, tuple[str | None, int]]:
        """Every lease row: host -> (owner, epoch). For tests and operators."""
        rows = self._connection.execute(
            sa.select(host_leases.c.host, host_leases.c.owner, host_leases.c.epoch)).all()
        return {host: (owner, epoch) for host, owner, epoch in rows}

    # --- plumbing -----------------------------------------------------------------

    def _beat(self, owner: str, now: datetime, ttl_s: float, max_hosts: int | None) -> None:
        statement = self._insert(worker_heartbeats)
        statement = statement.on_conflict_do_update(
            index_elements=[worker_heartbeats.c.owner],
            set_={"expires_at": statement.excluded.expires_at},
        )
        self._connection.execute(statement, {
            "owner": owner, "max_hosts": max_hosts, "started_at": now,
            "expires_at": now + timedelta(seconds=ttl_s),
        })

    def _add_hosts(self, hosts: Sequence[str]) -> None:
        """Lease rows for the hosts that have none (only those: an INSERT that meets an
        existing row would wait for whoever is changing it)."""
        known = set(self._connection.execute(
            sa.select(host_leases.c.host).where(host_leases.c.host.in_(_HOSTS)),
            {"hosts": list(hosts)}).scalars())
        missing = [host for host in hosts if host not in known]
        if not missing:
            return
        # One statement of many VALUES, not an executemany (which psycopg pipelines:
        # monitor.store.prepared).
        statement = self._insert(host_leases).values([
            {"host": host, "owner": None, "epoch": 0} for host in missing
        ]).on_conflict_do_nothing(index_elements=[host_leases.c.host])
        self._connection.execute(statement)

    def _loads(self, now: datetime, hosts: Sequence[str]) -> tuple[WorkerLoad, ...]:
        held = sa.func.count(host_leases.c.host)
        query = (
            sa.select(worker_heartbeats.c.owner, held, worker_heartbeats.c.max_hosts)
            .select_from(worker_heartbeats.outerjoin(host_leases, sa.and_(
                host_leases.c.owner == worker_heartbeats.c.owner,
                host_leases.c.host.in_(_HOSTS),
            )))
            .where(worker_heartbeats.c.expires_at > now)
            .group_by(worker_heartbeats.c.owner, worker_heartbeats.c.max_hosts)
            .order_by(worker_heartbeats.c.owner)
        )
        return tuple(WorkerLoad(owner, count, cap) for owner, count, cap
                     in self._connection.execute(query, {"hosts": list(hosts)}))

    def _next_change(self, owner: str, now: datetime) -> float | None:
        """Seconds until the first heartbeat of another worker expires."""
        soonest = self._connection.execute(
            sa.select(sa.func.min(worker_heartbeats.c.expires_at))
            .where(worker_heartbeats.c.owner != owner, worker_heartbeats.c.expires_at > now)
        ).scalar_one()
        return None if soonest is None else (soonest - now).total_seconds()

    def _release_locks_of(self, holder: str, host: str) -> int:
        statement = sa.delete(vm_device_locks).where(
            vm_device_locks.c.holder == holder,
            vm_device_locks.c.vm_id.in_(sa.select(vms.c.id).where(vms.c.host == host)),
        )
        return self._connection.execute(statement).rowcount


# A lease with its owner's heartbeat, if that is live at ``b_now``.
_LIVE_BEAT = worker_heartbeats.alias("live_beat")
_WITH_OWNER_BEAT = host_leases.outerjoin(_LIVE_BEAT, sa.and_(
    _LIVE_BEAT.c.owner == host_leases.c.owner,
    _LIVE_BEAT.c.expires_at > sa.bindparam("b_now", type_=UtcDateTime),
))


def _claimable() -> sa.ColumnElement[bool]:
    """Free (no owner) or expired (its owner's heartbeat is gone or expired)."""
    return _LIVE_BEAT.c.owner.is_(None)
