"""Doubling delays on the monotonic clock: one rule for a host and for a VM.

A host whose poll fails, or whose tick the database stopped, waits ``base`` x
2^failures (at most ``max``) before its next tick (``monitor.worker.host_job``). A VM
that fails alone (its apply fails in the database while its neighbours apply) waits the
same way, alone: its host goes on ticking and applying the others, and the VM is not
fetched until its delay is over (``skipped[backoff]``). The state lives in the worker's
memory; a restart forgets it (docs/operations.md, "Database faults").
"""

from __future__ import annotations

from dataclasses import dataclass, field


def doubling_delay(base_s: float, failures: int, max_s: float) -> float:
    """The delay after ``failures`` failures in a row."""
    return min(base_s * 2 ** failures, max_s)


@dataclass(slots=True)
class VmBackoff:
    """Per VM: failures in a row, and the monotonic time before which it is not fetched."""

    base_s: float
    max_s: float
    failures: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)

    def waiting(self, vm_id: str, now: float) -> bool:
        return now < self.not_before.get(vm_id, now)

    def failed(self, vm_id: str, now: float) -> float:
        """Count a failure; the delay before the VM is tried again."""
        count = self.failures.get(vm_id, 0) + 1
        self.failures[vm_id] = count
        delay = doubling_delay(self.base_s, count, self.max_s)
        self.not_before[vm_id] = now + delay
        return delay

    def succeeded(self, vm_id: str) -> None:
        self.failures.pop(vm_id, None)
        self.not_before.pop(vm_id, None)
