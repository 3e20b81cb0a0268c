"""What the worker has logged once, so a condition seen every tick is logged the first time.

A condition that repeats tick after tick (a VM unknown to the DB, a bad report, XML for
a VM not asked for, a foreign device) is counted in every tick's summary but logged
once (docs/worker.md, "Logged once"). The memory is per host and keyed by VM and by
what the condition is about; for a device, by what the device is (its tag and alias,
else its kind and natural keys), never by its position, so a device hot-plugged
earlier in the XML does not make every later one "new" again.

It stays bounded over weeks: a VM's keys are forgotten when the VM leaves the host
(the host's poll stops reporting it), and each host keeps at most ``cap`` keys, the
oldest forgotten first. Each host's tick runs in its own job, one at a time, so a
host's memory is only ever touched by one thread.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from monitor.logfields import fields
from monitor.model.device import ReportedDevice

CAP_PER_HOST = 10_000


def device_identity(device: ReportedDevice) -> Hashable:
    """What a device is: its tag and alias, else its kind and natural keys."""
    if device.alias.name:
        return device.tag, device.alias.name
    return device.tag, device.type, device.device, device.keys


@dataclass(slots=True)
class _HostMemory:
    keys: dict[tuple[str, Hashable], None] = field(default_factory=dict)  # oldest first
    by_vm: dict[str, set[tuple[str, Hashable]]] = field(default_factory=dict)
    polled: frozenset[str] = frozenset()  # the VMs the last poll reported

    def forget(self, key: tuple[str, Hashable]) -> None:
        del self.keys[key]
        keys = self.by_vm[key[0]]
        keys.discard(key)
        if not keys:
            del self.by_vm[key[0]]


class LoggedOnce:
    """Per host: the (VM, what) pairs already logged."""

    def __init__(self, cap: int = CAP_PER_HOST) -> None:
        self.cap = cap
        self._hosts: dict[str, _HostMemory] = {}

    def first(self, host: str, vm_id: str, what: Hashable) -> bool:
        """Whether this is the first time: the caller logs only then."""
        memory = self._hosts.setdefault(host, _HostMemory())
        key = (vm_id, what)
        if key in memory.keys:
            return False
        memory.keys[key] = None
        memory.by_vm.setdefault(vm_id, set()).add(key)
        if len(memory.keys) > self.cap:
            memory.forget(next(iter(memory.keys)))
        return True

    def log(self, logger: logging.Logger, level: int, host: str, vm_id: str, what: Hashable,
            message: str, *args: object, **extra: object) -> None:
        """Log ``message`` the first time ``what`` is seen for this VM on this host, with
        the ``host=`` and ``vm=`` fields (a VM id cut to 80 characters: it may be a
        hostile host's garbage) and the ``extra`` ones."""
        if self.first(host, vm_id, what):
            logger.log(level, message, *args,
                       extra=fields(host=host, vm=vm_id[:80], **extra))

    def polled(self, host: str, vm_ids: Iterable[str]) -> None:
        """The host's poll reported ``vm_ids``: forget the VMs that left it since the last."""
        memory = self._hosts.setdefault(host, _HostMemory())
        now = frozenset(vm_ids)
        for vm_id in memory.polled - now:
            for key in tuple(memory.by_vm.get(vm_id, ())):
                memory.forget(key)
        memory.polled = now

    def count(self, host: str) -> int:
        """How many keys the host's memory holds."""
        memory = self._hosts.get(host)
        return len(memory.keys) if memory else 0
