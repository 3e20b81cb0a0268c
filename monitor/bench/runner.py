"""The measurements of ``monitor bench``, all in one process and one run.

Every tick goes through ``run_tick``, the worker's own code, one host per tick as the
worker does; only the host source is in memory (``MemoryHostSource``). Each source is
prepared before its tick (XML rendered, hashes computed: the host's work), and only
``run_tick`` is inside the timer.

The figures of one round are taken side by side (floor, xmltodict, convert, full,
steady, partial), and the rounds repeat ``runs`` times; each figure is the median of
its rounds, so a burst of load on a shared machine moves one round, not one figure.
The partial tick, a few tenths of a second where the full tick takes seconds, is
taken ``PARTIAL_SAMPLES`` times a round (a different set of VMs each time, each after
a steady tick as the first one is), and the round's figure is their median.

Order of work (docs/performance.md):
1. the scaling fleet (N/10 VMs on H/10 hosts, the same VMs per host) is loaded, started
   once (untimed), and its full tick timed ``runs`` times;
2. the whole fleet is loaded (replacing those VMs) and started once (untimed): the
   managed rows get their aliases and addresses, libvirt's devices become rows;
3. the rounds.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor import collector
from monitor.bench.fleet import Fleet, host_name, vm_id
from monitor.bench.memory_source import MemoryHostSource
from monitor.domxml import floor, parse_domain
from monitor.errors import UsageError
from monitor.hosts.source import VmReport
from monitor.legacy.converter import convert
from monitor.tick.host_tick import TickContext, run_tick
from monitor.tick.summary import TickSummary

# (phase, done, total): the CLI draws it as a progress bar.
Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class BenchOptions:
    vms: int = 10_000
    hosts: int = 100
    changed_pct: float = 1.0
    runs: int = 3

    def check(self) -> None:
        if self.vms < 1 or not 1 <= self.hosts <= self.vms:
            raise UsageError(f"--vms {self.vms} --hosts {self.hosts}: "
                             "need at least one VM per host")
        if not 0 < self.changed_pct <= 100:
            raise UsageError(f"--changed {self.changed_pct}: a percentage in (0, 100]")
        if self.runs < 1:
            raise UsageError(f"--runs {self.runs}: at least 1")


@dataclass
class _Rounds:
    """Each figure's value in every round; the result takes the medians."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.seconds.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])


class _FleetState:
    """Which layout each VM's host reports now (the XML and hash follow from it)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.layouts = bytearray(fleet.vms)

    def flip(self, indexes: Iterable[int]) -> None:
        for index in indexes:
            self.layouts[index] ^= 1

    def documents(self, host: int) -> list[tuple[str, bytes, str]]:
        """(VM id, XML, hash) of every VM on ``host``, in the layout it reports now."""
        found = []
        for index in self.fleet.host_vms(host):
            document = self.fleet.document(index, self.layouts[index])
            found.append((vm_id(index), document.xml, document.hash))
        return found

    def source(self, host: int) -> MemoryHostSource:
        documents = self.documents(host)
        return MemoryHostSource(
            host_name(host),
            {vm: VmReport("Up", hash_) for vm, _xml, hash_ in documents},
            {vm: xml for vm, xml, _hash in documents},
        )


@dataclass
class FleetTick:
    """One tick of every host, in turn: the time inside ``run_tick`` and the counts."""

    seconds: float
    total: TickSummary


def load(context: TickContext, fleet: Fleet, progress: Progress) -> None:
    """Each host's VMs with their managed rows, one transaction per host."""
    for host in range(fleet.hosts):
        with context.store.transaction() as tx:
            tx.replace_vms(fleet.records(host))
        progress("load", host + 1, fleet.hosts)


def tick_fleet(context: TickContext, state: _FleetState, phase: str,
               progress: Progress) -> FleetTick:
    """Every host ticks once, as the worker's one job per host would."""
    total = TickSummary(host="fleet")
    seconds = 0.0
    hosts = state.fleet.hosts
    for host in range(hosts):
        source = state.source(host)  # untimed: the host's work
        started = time.perf_counter()
        summary = run_tick(source, context)
        seconds += time.perf_counter() - started
        total.add(summary)
        progress(phase, host + 1, hosts)
    if total.errors:
        raise RuntimeError(f"bench {phase}: the tick reported errors {dict(total.errors)}")
    return FleetTick(seconds, total)


def floor_s(state: _FleetState, progress: Progress) -> tuple[float, float, float]:
    """lxml's parse time of every VM's current XML, the Python walk's, xmltodict's
    (with the collector paused, as in a tick: the walk's yardstick is the tick's reader)."""
    lxml_s = walk_s = xmltodict_s = 0.0
    for host in range(state.fleet.hosts):
        xmls = [xml for _vm, xml, _hash in state.documents(host)]
        with collector.paused():
            lxml_s += floor.lxml_parse_s(xmls)
            walk_s += floor.python_walk_s(xmls)
            xmltodict_s += floor.xmltodict_parse_s(xmls)
        progress("parse floor", host + 1, state.fleet.hosts)
    return lxml_s, walk_s, xmltodict_s


def convert_s(context: TickContext, state: _FleetState, progress: Progress) -> float:
    """Parse and correlate every VM to its legacy dicts, rows read beforehand; the
    collector paused, as in a tick (``run_tick``)."""
    seconds = 0.0
    for host in range(state.fleet.hosts):
        documents = state.documents(host)
        with context.store.transaction() as tx:
            rows = tx.rows(vm for vm, _xml, _hash in documents)
        with collector.paused():
            started = time.perf_counter()
            for vm, xml, _hash in documents:
                convert(vm, parse_domain(xml, limits=context.limits), rows[vm])
            seconds += time.perf_counter() - started
        del rows
        progress("convert", host + 1, state.fleet.hosts)
    return seconds


# A partial tick of the 10,000-VM fleet is ~0.3 s; on a shared machine one such
# measurement moved by up to 70 % from round to round in one process (docs/performance.md,
# "The tenth wave"); the full tick it is divided by averages over seconds.
PARTIAL_SAMPLES = 5


def changed_indexes(fleet: Fleet, pct: float, sample: int) -> range:
    """``pct`` percent of the VMs, spread over every host, different in each sample."""
    step = max(1, round(100 / pct))
    return range(sample % step, fleet.vms, step)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scaling_fleet(options: BenchOptions) -> Fleet:
    """N/10 VMs on H/10 hosts: the same VMs per host as the full fleet."""
    vms = max(1, options.vms // 10)
    return Fleet(vms, min(vms, max(1, options.hosts // 10)))


def run_bench(context: TickContext, options: BenchOptions,
              progress: Progress = _no_progress) -> dict[str, Any]:
    """Every figure of docs/performance.md, as the JSON dict of ``monitor bench --json``."""
    options.check()
    with context.store.transaction() as tx:
        if tx.count_rows():
            raise UsageError("the benchmark needs an empty database (it loads its own "
                             "fleet); leave out --db for a temporary one")
    rounds = _Rounds()

    small = _FleetState(scaling_fleet(options))
    load(context, small.fleet, progress)
    tick_fleet(context, small, "start (scaling fleet)", progress)
    for number in range(options.runs):
        small.flip(range(small.fleet.vms))
        rounds.add("small_full", tick_fleet(context, small, f"scaling {number + 1}",
                                            progress).seconds)

    state = _FleetState(Fleet(options.vms, options.hosts))
    load(context, state.fleet, progress)
    tick_fleet(context, state, "start", progress)
    counts: dict[str, int] = {"rows_written_full": 0, "steady_xml_fetched": 0,
                              "steady_rows_written": 0, "partial_vms": 0}
    for number in range(options.runs):
        label = f" {number + 1}/{options.runs}"
        lxml_s, walk_s, xmltodict_s = floor_s(state,
                                              lambda p, d, t: progress(p + label, d, t))
        rounds.add("floor", lxml_s)
        rounds.add("walk", walk_s)
        rounds.add("xmltodict", xmltodict_s)
        rounds.add("convert", convert_s(context, state,
                                        lambda p, d, t: progress(p + label, d, t)))

        state.flip(range(state.fleet.vms))  # every VM restarted: every device moves
        full = tick_fleet(context, state, "full tick" + label, progress)
        rounds.add("full", full.seconds)
        counts["rows_written_full"] = max(counts["rows_written_full"], full.total.rows_written)

        partial = []
        for sample in range(PARTIAL_SAMPLES):
            # A steady tick before each partial one (no change left); the first is the
            # round's steady figure. Every steady tick's fetches and writes are counted.
            steady = tick_fleet(context, state, "steady tick" + label, progress)
            if not sample:
                rounds.add("steady", steady.seconds)
            counts["steady_xml_fetched"] += steady.total.fetched
            counts["steady_rows_written"] += steady.total.rows_written
            changed = changed_indexes(state.fleet, options.changed_pct,
                                      number * PARTIAL_SAMPLES + sample)
            state.flip(changed)
            partial.append(tick_fleet(context, state, "partial tick" + label,
                                      progress).seconds)
        rounds.add("partial", statistics.median(partial))
        counts["partial_vms"] = len(changed)

    return _result(context, options, state.fleet, small.fleet, rounds, counts)


def _result(context: TickContext, options: BenchOptions, fleet: Fleet, small: Fleet,
            rounds: _Rounds, counts: dict[str, int]) -> dict[str, Any]:
    floor_parse = rounds.median("floor")
    full = rounds.median("full")
    # The two fleets cannot share a round (the big one replaces the small one in the
    # DB), so this ratio is the one figure not taken side by side.
    scaling = (full / fleet.vms) / (rounds.median("small_full") / small.vms)
    return {
        "vms": fleet.vms,
        "hosts": fleet.hosts,
        "devices": fleet.devices,
        "xml_bytes": fleet.xml_bytes,
        "db": context.store.dialect,
        "runs": options.runs,
        "floor_parse_s": floor_parse,
        "python_walk_s": rounds.median("walk"),
        "python_walk_ratio": rounds.median("walk") / floor_parse,
        "xmltodict_parse_s": rounds.median("xmltodict"),
        "convert_s": rounds.median("convert"),
        "convert_ratio": rounds.median("convert") / floor_parse,
        "full_tick_s": full,
        "full_tick_ratio": full / floor_parse,
        "rows_written_full": counts["rows_written_full"],
        "steady_tick_s": rounds.median("steady"),
        "steady_xml_fetched": counts["steady_xml_fetched"],
        "steady_rows_written": counts["steady_rows_written"],
        "changed_pct": options.changed_pct,
        "partial_vms": counts["partial_vms"],
        "partial_tick_s": rounds.median("partial"),
        "partial_ratio": rounds.median("partial") / full,
        "scaling_vms": small.vms,
        "scaling_hosts": small.hosts,
        "scaling_full_tick_s": rounds.median("small_full"),
        "scaling_ratio": scaling,
        "peak_rss_mb": peak_rss_mb(),
    }
