"""The seam between correlation and whatever consumes its result (docs/architecture.md,
"Adapters").

A tick hands each correlated VM to the adapters the wiring configured: one
``TransactionalAdapter`` (the database one) inside the transaction that applies the
batch, then every ``MonitoringAdapter`` (an emitter, such as JSON lines) once that
transaction has committed, for the VMs it applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from monitor.legacy.dicts import ConvertedVm
from monitor.model.changes import VmChanges
from monitor.model.rows import DeviceRow
from monitor.store import Tx


class Correlated(NamedTuple):
    """One VM ready to apply: its dicts, the rows they were correlated with, its report."""

    converted: ConvertedVm
    rows: Sequence[DeviceRow]
    hash: str | None
    report_time: datetime


class TransactionalAdapter(Protocol):
    """Writes a batch of correlated VMs in the caller's transaction ``tx``; a failure
    rolls that whole transaction back.

    ``now`` is the database's clock in ``tx``. Returns the changes of the VMs applied,
    by VM id; a VM missing from the result was not applied (its hash stays) and nothing
    of it was written.
    """

    def apply(self, tx: Tx, items: Sequence[Correlated],
              now: datetime | None = None) -> dict[str, VmChanges]: ...


class MonitoringAdapter(Protocol):
    """Receives one VM's converted devices per applied VM, after the commit, as the
    legacy code did."""

    def handle(self, vm_id: str, converted: ConvertedVm) -> None: ...
