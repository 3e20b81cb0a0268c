"""The seam between correlation and whatever consumes its result (docs/architecture.md,
"Adapters").

A tick hands each correlated VM to the adapters the wiring configured: one
``TransactionalAdapter`` (the database one) decides it as soon as it is correlated and
writes the batch inside the transaction that applies it, then every
``MonitoringAdapter`` (an emitter, such as JSON lines) gets it once that transaction
has committed, for the VMs it applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from monitor.legacy.dicts import ConvertedVm
from monitor.model.changes import VmChanges
from monitor.model.rows import DeviceRow
from monitor.store import LastXmls, Tx


class Correlated(NamedTuple):
    """One VM correlated: its dicts, the rows they were correlated with, its report."""

    converted: ConvertedVm
    rows: Sequence[DeviceRow]
    hash: str | None
    report_time: datetime


class Decided(NamedTuple):
    """One VM's row changes (``TransactionalAdapter.decide``) and the report they apply."""

    vm_id: str
    hash: str | None
    report_time: datetime
    changes: VmChanges


class TransactionalAdapter(Protocol):
    """Decides each correlated VM's changes as it comes (``decide``: pure, no I/O), then
    writes a batch of them in the caller's transaction ``tx`` (``apply``); a failure
    rolls that whole transaction back.

    ``now`` is the database's clock in ``tx``. ``apply`` returns the ids of the VMs it
    applied; a VM missing from the result was not applied (its hash stays) and nothing
    of it was written. ``last_xmls``: the Domain XML of every VM of the batch, as read,
    saved whether or not the VM was applied (with the batch's other writes, in one
    statement where the database allows).
    """

    def decide(self, item: Correlated) -> VmChanges: ...

    def apply(self, tx: Tx, items: Sequence[Decided], now: datetime | None = None,
              last_xmls: LastXmls | None = None) -> set[str]: ...


class MonitoringAdapter(Protocol):
    """Receives one VM's converted devices per applied VM, after the commit, as the
    legacy code did."""

    def handle(self, vm_id: str, converted: ConvertedVm) -> None: ...
