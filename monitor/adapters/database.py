"""The legacy ``VmDevicesMonitoring`` role on our store: the transactional adapter
(``base.TransactionalAdapter``) every tick applies through.

It decides each correlated VM's row changes (``legacy.decide``, pure) as the tick
hands it over, and writes a batch of them in the caller's transaction together with
each VM's new hash. The hash advance is
guarded: if a newer report was applied meanwhile, that VM's changes are not written at
all, so an older XML never lands over a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from monitor.adapters.base import Correlated, Decided
from monitor.legacy.decide import decide
from monitor.model.changes import VmChanges
from monitor.store import HashAdvance, LastXmls, Tx


class DatabaseAdapter:
    def decide(self, item: Correlated) -> VmChanges:
        return decide(item.converted, item.rows)

    def apply(self, tx: Tx, items: Sequence[Decided], now: datetime | None = None,
              last_xmls: LastXmls | None = None) -> set[str]:
        """Guarded hash advances and the advanced VMs' row writes, with the batch's
        last XMLs: one statement on PostgreSQL (``Tx.advance_and_write``).

        A stored report time later than ``now`` is not trusted
        (``monitor.clock.older_than_stored``).
        """
        return tx.advance_and_write(
            [HashAdvance(item.vm_id, item.hash, item.report_time) for item in items],
            [item.changes for item in items], now, last_xmls)
