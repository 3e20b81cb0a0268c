"""``monitor bench``'s ``scaling_ratio`` taken side by side: the full tick of a host of
the whole fleet against that of a host of the scaling fleet (a tenth of the VMs on a
tenth of the hosts: the same VMs per host), the two ticks one right after the other.

``monitor bench`` cannot do that: its two fleets share one database, so it times the
scaling fleet's full ticks minutes before the whole fleet's, and on a shared 2-core
machine the ratio of the two moved from 0.93 to 1.31 between runs of the same code
(docs/performance.md, "The fourteenth wave"). Here each fleet has a database of its
own, both are loaded and started (untimed), and each round every host of the whole
fleet ticks beside a host of the scaling fleet (each host's VMs all changed just before
its tick; the scaling fleet's hosts in turn), the order alternating. A host's full tick is a hundred VMs' in both, so the per-VM ratio of the
benchmark is the ratio of the two host ticks.

The run has two halves, each with fresh databases: the scaling fleet started first,
then the whole fleet first (on PostgreSQL the fleet started first ticks faster: see
``measure.py``); the printed ratio is the geometric mean of the halves' medians.
"""

from __future__ import annotations

import argparse
import math
import statistics
from contextlib import ExitStack

from measure import Version  # tools/paired/measure.py: a fleet in a database, started
from scratch_db import scratch_database  # tools/scratch_db.py

from monitor.bench import runner
from monitor.bench.fleet import Fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1, help="rounds in each half")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    whole = Fleet(args.vms, args.hosts)
    small = runner.scaling_fleet(runner.BenchOptions(vms=args.vms, hosts=args.hosts))
    if whole.vms // whole.hosts != small.vms // small.hosts:
        parser.error("--vms must be a multiple of --hosts, and --hosts of 10")
    halves = [half(args, {"small": small, "whole": whole}, first)
              for first in ("small", "whole")]
    report(halves, args, small)


def half(args, fleets: dict[str, Fleet], first: str) -> dict[str, list[float]]:
    """Both fleets started, ``first`` first; per round, each host of the whole fleet's
    full tick and that of a host of the scaling fleet, side by side."""
    with ExitStack() as stack:
        started = {}
        for name in sorted(fleets, key=lambda name: name != first):
            url = scratch_database(args.db, f"scaling_{name}", stack)
            fleet = fleets[name]
            started[name] = Version.start(
                "monitor", url, argparse.Namespace(vms=fleet.vms, hosts=fleet.hosts))
            stack.callback(started[name].close)
        small, whole = started["small"], started["whole"]
        for number in range(args.rounds):
            for host in range(whole.state.fleet.hosts):
                pair = [(small, host % small.state.fleet.hosts), (whole, host)]
                for each, its_host in pair if host % 2 else pair[::-1]:
                    # every VM of the host changed just before its tick
                    each.state.flip(each.state.fleet.host_vms(its_host))
                    each.tick(its_host, "full")
            print(f"round {number + 1}/{args.rounds} done", flush=True)
        print(f"half with the {first} fleet started first: done", flush=True)
    return {name: version.seconds["full"] for name, version in started.items()}


def report(halves: list[dict[str, list[float]]], args, small: Fleet) -> None:
    print(f"{args.vms} VMs on {args.hosts} hosts against {small.vms} on {small.hosts}, "
          f"{args.db}, {args.rounds} rounds in each of two halves")
    for name in ("small", "whole"):
        every = [t for seconds in halves for t in seconds[name]]
        print(f"  {name:>5} fleet: full tick of a host, mean {statistics.mean(every) * 1000:7.1f}"
              f" ms, median {statistics.median(every) * 1000:7.1f} ms")
    medians = [statistics.median(w / s for w, s in zip(seconds["whole"], seconds["small"]))
               for seconds in halves]
    means = [statistics.mean(seconds["whole"]) / statistics.mean(seconds["small"])
             for seconds in halves]
    print(f"  scaling, whole / small, a host's full tick: "
          f"{math.sqrt(medians[0] * medians[1]):.3f} (median of {len(halves[0]['whole'])} "
          f"pairs: small started first {medians[0]:.3f}, whole first {medians[1]:.3f}); "
          f"ratio of the means {math.sqrt(means[0] * means[1]):.3f}")


if __name__ == "__main__":
    main()
