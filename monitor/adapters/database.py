"""The legacy ``VmDevicesMonitoring`` role on our store.

It takes one VM's correlated dicts, decides the row changes (``legacy.decide``, pure)
and writes them in the caller's transaction together with the VM's new hash. The hash
advance is guarded: if a newer report was applied meanwhile, this VM's changes are not
written at all, so an older XML never lands over a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from monitor.legacy.decide import decide
from monitor.legacy.dicts import ConvertedVm
from monitor.model.changes import VmChanges
from monitor.model.rows import DeviceRow
from monitor.store import HashAdvance, Tx


class Correlated(NamedTuple):
    """One VM ready to apply: its dicts, the rows they were correlated with, its report."""

    converted: ConvertedVm
    rows: Sequence[DeviceRow]
    hash: str | None
    report_time: datetime


def apply_correlated(tx: Tx, items: Sequence[Correlated],
                     now: datetime | None = None) -> dict[str, VmChanges]:
    """Apply many VMs in ``tx``: guarded hash advances, then one batch of row writes.

    ``now`` is the database's clock in ``tx`` (a stored report time later than it is not
    trusted: ``monitor.clock.older_than_stored``). Returns the changes of the VMs
    applied; a VM missing from the result was not applied (a newer report won) and
    nothing of it was written.
    """
    advanced = tx.advance_hashes(
        [HashAdvance(item.converted.vm_id, item.hash, item.report_time) for item in items], now
    )
    changes = {
        item.converted.vm_id: decide(item.converted, item.rows)
        for item in items
        if item.converted.vm_id in advanced
    }
    tx.apply_changes(list(changes.values()))
    return changes
