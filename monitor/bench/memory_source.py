"""A host held in memory: what the benchmark hands ``run_tick`` instead of libvirt.

It answers like any ``HostSource`` (``hosts/source.py``): a poll of
``{vm id: VmReport(status, hash)}`` and one batch dump of XML bytes. Everything is
prepared before the tick (XML rendered, hashes computed: the host's work, not the
engine's), so poll and dump cost a dict copy and lookups and the timed tick measures
the engine alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from monitor.hosts.source import VmReport


class MemoryHostSource:
    """One host's VMs, each with its status and its current document."""

    def __init__(self, name: str, reports: Mapping[str, VmReport],
                 xmls: Mapping[str, bytes]) -> None:
        self.name = name
        self._reports = dict(reports)
        self._xmls = xmls
        self.dumped = 0  # documents returned by dump, for the benchmark's counts

    def poll(self) -> dict[str, VmReport]:
        return dict(self._reports)

    def dump(self, vm_ids: Sequence[str]) -> dict[str, bytes]:
        found = {vm_id: self._xmls[vm_id] for vm_id in vm_ids if vm_id in self._xmls}
        self.dumped += len(found)
        return found

    def held_locks(self) -> frozenset[str]:
        return frozenset()

    def close(self) -> None:
        pass
