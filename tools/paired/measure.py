"""The tick of two versions of the engine side by side in one process: a base commit's
(``monitorbase``, made by ``tools/paired/run``) and this tree's (``monitor``).

Each version has its own database and its own copy of the benchmark's fleet
(monitor/bench); every host ticks in both, one right after the other, the order
alternating, so both see the same machine at the same moment. On a shared 2-core
machine single runs of ``monitor bench`` move 10-30 % from one hour to the next; the
ratio of paired ticks does not (docs/performance.md, "Measuring a change on a noisy
machine"). Per round: a full tick (every VM changed), then three times a steady tick
and a partial one (one VM per host changed), as ``monitor bench`` does.

The run has two halves, each with fresh databases: the base started (loaded, its first
tick) first, then the tree first. On PostgreSQL the version started first ticks faster:
the same commit on both sides measured a partial tick 7 % and a full tick 2 % in favour
of whichever started first (docs/performance.md, "The seventh wave"). Each half's
median ratio carries that bias one way; their geometric mean cancels it.

Printed: per version the full tick per host, the partial and steady ticks per host
(medians over both halves) and their share of the full one; then for each kind the
paired ratio new / base (below 1: this tree is faster): the geometric mean of the two
halves' medians, and each half's.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import time
from contextlib import ExitStack

from scratch_db import scratch_database  # tools/scratch_db.py

KINDS = ("full", "steady", "partial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-label", default="base")
    parser.add_argument("--vms", type=int, default=5000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="rounds in each half")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    halves = [half(args, first) for first in ("base", "tree")]
    report(halves, args)


def half(args, first: str) -> dict[str, Version]:
    """Both versions started, ``first`` first, and measured; their databases dropped."""
    packages = {"base": "monitorbase", "tree": "monitor"}
    with ExitStack() as stack:
        started = {}
        for name in sorted(packages, key=lambda name: name != first):
            url = scratch_database(args.db, f"paired_{name}", stack)
            started[name] = Version.start(packages[name], url, args)
            stack.callback(started[name].close)
        versions = {args.base_label: started["base"], "tree": started["tree"]}
        measure(versions, args)
        print(f"half with the {first} started first: done", flush=True)
    return versions


class Version:
    """One version of the engine with its database and fleet, started (untimed)."""

    def __init__(self, package: str, url: str, args) -> None:
        runner = importlib.import_module(f"{package}.bench.runner")
        fleet = importlib.import_module(f"{package}.bench.fleet")
        settings = importlib.import_module(f"{package}.settings").Settings(db_url=url)
        wiring = importlib.import_module(f"{package}.wiring")
        self.run_tick = importlib.import_module(f"{package}.tick.host_tick").run_tick
        self.store = wiring.open_store(settings)
        self.context = wiring.tick_context(self.store, settings)
        self.state = runner._FleetState(fleet.Fleet(args.vms, args.hosts))
        self._runner = runner
        self.seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}

    @classmethod
    def start(cls, package: str, url: str, args) -> Version:
        version = cls(package, url, args)
        version._runner.load(version.context, version.state.fleet, _quiet)
        version._runner.tick_fleet(version.context, version.state, "start", _quiet)
        return version

    def tick(self, host: int, kind: str) -> None:
        source = self.state.source(host)  # untimed: the host's work
        started = time.perf_counter()
        summary = self.run_tick(source, self.context)
        self.seconds[kind].append(time.perf_counter() - started)
        if summary.errors:
            raise RuntimeError(f"{kind} tick of host {host}: errors {dict(summary.errors)}")

    def close(self) -> None:
        self.store.close()


def _quiet(*_progress) -> None:
    pass


def measure(versions: dict[str, Version], args) -> None:
    both = list(versions.values())
    for number in range(args.rounds):
        for version in both:
            version.state.flip(range(args.vms))
        for host in range(args.hosts):
            for version in both if host % 2 else both[::-1]:
                version.tick(host, "full")
        for repeat in range(3):
            for host in range(args.hosts):
                order = both if (host + repeat) % 2 else both[::-1]
                for version in order:
                    version.tick(host, "steady")
                for version in both:
                    vms = version.state.fleet.host_vms(host)
                    version.state.flip([vms[(number * 3 + repeat) % len(vms)]])
                for version in order:
                    version.tick(host, "partial")
        print(f"round {number + 1}/{args.rounds} done", flush=True)


def report(halves: list[dict[str, Version]], args) -> None:
    print(f"{args.vms} VMs on {args.hosts} hosts, {args.db}, {args.rounds} rounds "
          "in each of two halves (each version started first once)")
    for label in halves[0]:
        seconds = {kind: [t for versions in halves for t in versions[label].seconds[kind]]
                   for kind in KINDS}
        full = statistics.mean(seconds["full"])
        partial = statistics.median(seconds["partial"])
        steady = statistics.median(seconds["steady"])
        print(f"  {label:>9}: full {full * 1000:7.1f} ms a host; partial {partial * 1000:6.2f} ms"
              f" ({partial / full:.4f} of full); steady {steady * 1000:5.2f} ms"
              f" ({steady / full:.2%} of full)")
    for kind in KINDS:
        medians = []
        for versions in halves:
            base, tree = versions.values()
            medians.append(statistics.median(
                new / old for new, old in zip(tree.seconds[kind], base.seconds[kind])))
        pairs = len(halves[0]["tree"].seconds[kind])
        print(f"  tree / base, {kind:>7} tick of a host: {math.sqrt(medians[0] * medians[1]):.3f}"
              f" (median of {pairs} pairs: base started first {medians[0]:.3f}, "
              f"tree first {medians[1]:.3f})")


if __name__ == "__main__":
    main()
