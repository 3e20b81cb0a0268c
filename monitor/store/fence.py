"""The fence: what a tick must still hold for its writes to land, checked inside the
transaction that writes them (docs/worker.md, "The fence").

A tick takes its VMs' devices locks with a token of its own (``Fence.take``); every
transaction of the tick that writes a VM first asks ``Fence.check`` which of those VMs
it still holds: same holder, same token, unexpired by the database's clock. A VM whose
lock expired, or was taken again by anyone (a device command, another tick under the
same worker name), is not written: its hash stays, and the next tick redoes it. The
rows found stay locked until the commit (PostgreSQL ``FOR UPDATE``; SQLite holds the
whole database), so no one takes them between the check and the commit.

Under ``monitor run`` the tick must also still hold its host's lease (docs/operations.md,
"Many workers"): ``check`` first asks, in the same transaction, that the lease row names
this worker at the epoch the tick started with, unexpired by the database's clock, and
locks it (``FOR KEY SHARE``) until the commit, so no other worker can take the host
over before this transaction's writes land. If the lease is gone, ``check`` raises
``LeaseLost``: the transaction rolls back and the tick stops. On PostgreSQL ``take``
and ``claim`` ask the lease in the statement that writes (``Tx.take_locks_fenced``,
``Tx.claim_rows_fenced``), the lease row read and locked before any row is written: one
round trip each fewer, and the locks' taking needs no transaction of its own. Releasing
one's own locks is never fenced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn, TypeVar

from monitor.errors import LeaseLost
from monitor.model.lease import HostLease
from monitor.model.rows import DeviceRow
from monitor.store.repository import Tx, new_token

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fence:
    """One tick's claim on its devices locks; pass it into each transaction that writes."""

    holder: str  # the worker's name in the devices lock
    process_utc: Callable[[], datetime]  # the database's clock on SQLite, which has none
    lease: HostLease | None = None  # the host's lease (monitor run); None: no leases
    token: str = field(default_factory=new_token)  # fresh for each tick's taking

    def now(self, tx: Tx) -> datetime:
        """The database's clock, read in ``tx``."""
        return tx.now(self.process_utc)

    def check(self, tx: Tx, vm_ids: Iterable[str] = (),
              now: datetime | None = None) -> frozenset[str]:
        """Before ``tx`` writes: the VMs of ``vm_ids`` this tick still holds.

        Call it first in every transaction that writes for the tick, with the VMs that
        transaction is about to write (none for a host-wide write such as statuses);
        write only the VMs it returns. ``now``: the database's clock, if already read
        in ``tx``. Raises ``LeaseLost`` when the tick's host lease is gone (known lost
        already, or no longer this worker's at its epoch).
        """
        return frozenset(self._held(tx, tx.locks_held, vm_ids, now) or ())

    def claim(self, tx: Tx, vm_ids: Iterable[str], now: datetime | None = None
              ) -> tuple[frozenset[str], dict[str, list[DeviceRow]]]:
        """``check`` for a transaction that writes every VM it returns and is then done
        with their locks (an apply batch, bad XML records included): the VMs still held,
        their locks released by the same statement, effective when ``tx`` commits (and
        held again if it rolls back); with the device rows of those VMs, read in that
        statement on PostgreSQL (``Tx.claim_rows``), where a lease is checked in it too
        (``Tx.claim_rows_fenced``)."""
        lease = self._lease_in_statement(tx)
        vm_ids = list(vm_ids)
        if lease is not None and vm_ids:
            held, rows = _fenced(lease, lambda: tx.claim_rows_fenced(
                vm_ids, self.holder, self.token, now or self.now(tx), lease))
            return frozenset(held), rows
        found = self._held(tx, tx.claim_rows, vm_ids, now)
        if found is None:
            return frozenset(), {}
        held, rows = found
        return frozenset(held), rows

    def _held(self, tx: Tx, read, vm_ids: Iterable[str], now: datetime | None):
        """The lease checked, then ``read`` (``locks_held`` or ``claim_rows``) of the
        VMs; ``None`` for no VMs."""
        self._check_lease(tx)
        vm_ids = list(vm_ids)
        if not vm_ids:
            return None
        return read(vm_ids, self.holder, self.token, now or self.now(tx))

    def _check_lease(self, tx: Tx) -> None:
        lease = self.lease
        if lease is None:
            return
        if lease.lost or not tx.holds_lease(lease, self.process_utc):
            _lost(lease)

    def take(self, tx: Tx, vm_ids: Iterable[str], ttl_s: float) -> frozenset[str]:
        """Try the devices locks of ``vm_ids`` with this fence's token: the VMs taken.

        On PostgreSQL under a lease, the lease is checked in the statement that takes
        the locks (``Tx.take_locks_fenced``): nothing else is sent, so ``tx`` may be a
        statement on its own (``Store.one_statement``). Raises ``LeaseLost`` as
        ``check`` does, nothing taken."""
        lease = self._lease_in_statement(tx)
        if lease is not None:
            return frozenset(_fenced(lease, lambda: tx.take_locks_fenced(
                vm_ids, self.holder, ttl_s, self.token, lease)))
        self.check(tx)
        return frozenset(tx.take_locks(vm_ids, self.holder, ttl_s, self.token,
                                       self.process_utc))

    def _lease_in_statement(self, tx: Tx) -> HostLease | None:
        """The lease to check inside the writing statement itself (PostgreSQL), if any."""
        return self.lease if tx.dialect == "postgresql" else None

    def renew(self, tx: Tx, vm_ids: Iterable[str], ttl_s: float) -> int:
        """Extend the locks still held to ``ttl_s`` from now; a lost lock stays lost."""
        return tx.renew_locks(vm_ids, self.holder, self.token, self.now(tx), ttl_s)

    def release(self, tx: Tx, vm_ids: Iterable[str]) -> None:
        """Release this tick's locks (never fenced; a later taking of the lock stays)."""
        tx.release_locks(vm_ids, self.holder, self.token)


def _fenced(lease: HostLease, write: Callable[[], T | None]) -> T:
    """``write``'s answer, a statement that checks ``lease`` itself (``None``: not held,
    nothing written); not sent if the lease is known lost. Raises ``LeaseLost``."""
    found = None if lease.lost else write()
    if found is None:
        _lost(lease)
    return found


def _lost(lease: HostLease) -> NoReturn:
    lease.lost = True
    raise LeaseLost(f"lease lost: this worker no longer holds host {lease.host} "
                    f"(epoch {lease.epoch}); the tick stops, its transaction rolled back")
