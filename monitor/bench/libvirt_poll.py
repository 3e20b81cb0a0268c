"""``monitor bench --source libvirt-test``: what a poll of the libvirt source costs.

N of the fleet's VMs (``bench/fleet.py``, host 0's XML) are started on libvirt's test
driver, in this process, on an empty node of a temporary directory, through the
libvirt host source itself (``hosts/libvirt_source.py``). Once their start events have
arrived and been read, each round times, side by side:

* the floor: lxml parsing the XML the source read (the same bytes the source hashed);
* a steady poll: nothing changed, so one bulk state call and no XML read;
* a resync poll: every VM's XML read and digested, what every poll cost before the
  source was event-driven.

Each figure is the median of its rounds. The database is not involved: the tick on top
of a poll is measured by the memory-source benchmark. docs/performance.md has the
figures and their target (``monitor.cli.bench``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.bench.fleet import Fleet, vm_id
from monitor.domxml import floor

Progress = Callable[[str, int, int], None]

SETTLE_TIMEOUT_S = 300.0  # start events not all in by then: the benchmark fails


def run_poll_bench(vms: int, runs: int, progress: Progress) -> dict[str, Any]:
    from monitor.hosts.libvirt_source import LibvirtHostSource

    fleet = Fleet(vms, 1)
    with tempfile.TemporaryDirectory(prefix="monitor-bench-libvirt-") as scratch:
        node = Path(scratch) / "node.xml"
        node.write_text("<node/>\n")  # the test driver, with no domain of its own
        # A resync interval no round reaches: only resync_soon() triggers one.
        source = LibvirtHostSource(f"test://{node}", "bench-libvirt",
                                   resync_interval_s=1e9)
        try:
            for index in range(vms):
                source.start_domain(fleet.document(index, 0).xml)
                progress("start domains", index + 1, vms)
            _settle(source, vms)
            return _rounds(source, fleet, runs, progress)
        finally:
            source.close()


def _settle(source, vms: int) -> None:
    """Poll until every start's lifecycle event has arrived and a poll read nothing.

    Each start emits at least one lifecycle event, delivered on libvirt's event thread
    in order; until they are in, a poll would read the VMs they name again.
    """
    seen = 0
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        source.poll()
        counts = source.take_counts()
        seen += counts.events.get("lifecycle", 0)
        if seen >= vms and not counts.reads:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: {seen} of {vms} start events arrived in "
                               f"{SETTLE_TIMEOUT_S:g}s")
        time.sleep(0.05)  # pace the polls while the event thread delivers


def _rounds(source, fleet: Fleet, runs: int, progress: Progress) -> dict[str, Any]:
    ids = [vm_id(index) for index in range(fleet.vms)]
    seconds: dict[str, list[float]] = {"floor": [], "steady": [], "resync": []}
    read = {"steady": 0, "resync": 0}
    xml_bytes = 0
    for number in range(runs):
        xmls = list(source.dump(ids).values())
        if len(xmls) != fleet.vms:
            raise RuntimeError(f"bench: the source holds {len(xmls)} of {fleet.vms} VMs")
        xml_bytes = sum(len(xml) for xml in xmls)
        seconds["floor"].append(floor.lxml_parse_s(xmls))
        for kind in ("steady", "resync"):
            if kind == "resync":
                source.resync_soon()
            started = time.perf_counter()
            reports = source.poll()
            seconds[kind].append(time.perf_counter() - started)
            read[kind] += sum(source.take_counts().reads.values())
            if len(reports) != fleet.vms:
                raise RuntimeError(f"bench: a {kind} poll reported {len(reports)} VMs")
        progress("polls", number + 1, runs)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "source": "libvirt-test",
        "vms": fleet.vms,
        "runs": runs,
        "xml_bytes": xml_bytes,
        "floor_parse_s": median["floor"],
        "steady_poll_s": median["steady"],
        "steady_poll_per_vm_ratio": median["steady"] / median["floor"],
        "steady_xml_read": read["steady"],
        "resync_poll_s": median["resync"],
        "resync_poll_per_vm_ratio": median["resync"] / median["floor"],
        "resync_xml_read": read["resync"],
    }

