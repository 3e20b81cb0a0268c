"""The seam between correlation and whatever consumes its result (DB, JSON lines)."""

from __future__ import annotations

from typing import Protocol

from monitor.legacy.dicts import ConvertedVm


class MonitoringAdapter(Protocol):
    """Receives one VM's converted devices per reconciled VM, as the legacy code did."""

    def handle(self, vm_id: str, converted: ConvertedVm) -> None: ...
