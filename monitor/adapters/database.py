"""The legacy ``VmDevicesMonitoring`` role on our store: the transactional adapter
(``base.TransactionalAdapter``) every tick applies through.

It takes correlated VMs, decides their row changes (``legacy.decide``, pure) and writes
them in the caller's transaction together with each VM's new hash. The hash advance is
guarded: if a newer report was applied meanwhile, that VM's changes are not written at
all, so an older XML never lands over a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from monitor.adapters.base import Correlated
from monitor.legacy.decide import decide
from monitor.model.changes import VmChanges
from monitor.store import HashAdvance, Tx


class DatabaseAdapter:
    def apply(self, tx: Tx, items: Sequence[Correlated],
              now: datetime | None = None) -> dict[str, VmChanges]:
        """Guarded hash advances, then one batch of row writes.

        A stored report time later than ``now`` is not trusted
        (``monitor.clock.older_than_stored``).
        """
        advanced = tx.advance_hashes(
            [HashAdvance(item.converted.vm_id, item.hash, item.report_time) for item in items],
            now,
        )
        changes = {
            item.converted.vm_id: decide(item.converted, item.rows)
            for item in items
            if item.converted.vm_id in advanced
        }
        tx.apply_changes(list(changes.values()))
        return changes
