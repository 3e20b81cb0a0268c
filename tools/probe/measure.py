"""How much of parse + correlate a device reader in C would save: a probe, not a test.

Run by ``tools/probe/run`` (which builds ``creader``). On the benchmark's fleet
(monitor/bench/fleet.py), each figure the smallest of ``--repeat`` timings, the
collector paused as in a tick:

* ``lxml_floor_s``: lxml parsing the bytes (``monitor bench``'s floor);
* ``c_parse_s``, ``c_read_s``: the system libxml2 parsing them, then the same plus
  the devices read into tuples (tag, type, device, alias, address) in C;
* ``parse_domain_s``: the engine's reader (lxml + Python);
* ``convert_s``: ``parse_domain`` + ``convert`` (matching, legacy dicts), as in
  ``monitor bench``, the rows read beforehand from a started SQLite fleet;
* ``c_reader_convert_ratio``: ``convert_s`` with ``parse_domain`` replaced by lxml's
  parse plus what the C reader adds to its own parse, over the floor. A lower bound:
  the C tuples are not yet the ``ReportedDevice`` objects matching takes.
* ``stages``: where ``convert_s`` goes, each stage timed as ``convert`` runs it (the
  document parsed just before, so its tree is warm): the parse with the hostile-input
  checks, the devices read, the metadata read, the matching, the legacy dicts; each
  in seconds and in µs per device;
* ``least_correlate_s``: the least correlation any Python code does, on the C tuples:
  per device one lookup of its alias among the VM's rows and a legacy dict of seven
  keys with copies of the address and spec params; no natural key, no veto, no
  conflict. ``least_python_ratio``: the C reader plus that, over the floor.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import creader  # built by tools/probe/run

from monitor import collector
from monitor.bench.fleet import Fleet
from monitor.bench.runner import _FleetState, load, tick_fleet
from monitor.domxml import floor, parse_domain
from monitor.domxml.devices import read_devices
from monitor.domxml.metadata import read_metadata
from monitor.domxml.parser import DEFAULT_LIMITS, parse_tree, vm_domain
from monitor.legacy.converter import convert
from monitor.matching import match
from monitor.settings import Settings
from monitor.wiring import open_store, tick_context


def best(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        with collector.paused():
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
    return min(times)


def each(work, items) -> None:
    """``work`` on every item, each result dropped at once (as a tick drops a VM's)."""
    for item in items:
        work(item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    fleet = Fleet(args.vms, max(1, args.vms // 100))
    state = _FleetState(fleet)
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(db_url=f"sqlite:///{scratch}/probe.db")
        with open_store(settings) as store:
            context = tick_context(store, settings)
            load(context, fleet, lambda *_: None)
            tick_fleet(context, state, "start", lambda *_: None)
            documents = [d for host in range(fleet.hosts) for d in state.documents(host)]
            with store.transaction() as tx:
                rows = tx.rows(vm for vm, _xml, _hash in documents)
    xmls = [xml for _vm, xml, _hash in documents]
    sample = creader.read_devices(xmls[0])
    assert [d[0] for d in sample] == [d.tag for d in parse_domain(xmls[0]).devices]

    read = [creader.read_devices(xml) for xml in xmls]
    by_alias = [{row.alias: row for row in rows[vm]} for vm, _xml, _hash in documents]

    def least_correlate() -> None:
        for devices, rows_of in zip(read, by_alias):
            for tag, type_, device, alias, address, _position in devices:
                row = rows_of.get(alias)
                if row is not None:
                    {"deviceId": row.device_id, "type": type_ or tag, "device": device or tag,
                     "address": dict(address), "alias": alias,
                     "specParams": dict(row.spec_params), "matchedBy": "alias"}

    limits = DEFAULT_LIMITS

    def child(xml, tag):
        return vm_domain(parse_tree(xml, limits)).find(tag)

    # Cumulative: each stage's cost is its line minus the one it builds on.
    cumulative = {
        "parse_tree": lambda: each(lambda xml: parse_tree(xml, limits), xmls),
        "read_devices": lambda: each(lambda xml: read_devices(child(xml, "devices"), limits),
                                     xmls),
        "read_metadata": lambda: each(lambda xml: read_metadata(child(xml, "metadata"), limits),
                                      xmls),
        "match": lambda: each(lambda document: match(
            document[0], parse_domain(document[1]).devices, rows[document[0]]), documents),
    }
    timed = {name: best(args.repeat, work) for name, work in cumulative.items()}

    figures = {
        "vms": args.vms,
        "devices": fleet.devices,
        "lxml_floor_s": best(args.repeat, lambda: floor.lxml_parse_s(xmls)),
        "python_walk_s": best(args.repeat, lambda: floor.python_walk_s(xmls)),
        "c_parse_s": best(args.repeat, lambda: each(creader.parse_only, xmls)),
        "c_read_s": best(args.repeat, lambda: each(creader.read_devices, xmls)),
        "parse_domain_s": best(args.repeat, lambda: each(parse_domain, xmls)),
        "least_correlate_s": best(args.repeat, least_correlate),
        "convert_s": best(args.repeat, lambda: each(
            lambda document: convert(document[0], parse_domain(document[1]), rows[document[0]]),
            documents)),
    }
    floor_s = figures["lxml_floor_s"]
    stage_s = {
        "lxml parse (the floor)": floor_s,
        "hostile-input checks": timed["parse_tree"] - floor_s,
        "devices read": timed["read_devices"] - timed["parse_tree"],
        "metadata read": timed["read_metadata"] - timed["parse_tree"],
        "matching": timed["match"] - figures["parse_domain_s"],
        "legacy dicts": figures["convert_s"] - timed["match"],
    }
    figures["stages"] = {
        name: {"s": round(seconds, 4), "x_floor": round(seconds / floor_s, 2),
               "us_per_device": round(seconds / fleet.devices * 1e6, 2)}
        for name, seconds in stage_s.items()
    }
    c_reading = figures["c_read_s"] - figures["c_parse_s"]
    beyond_reader = figures["convert_s"] - figures["parse_domain_s"]
    figures.update({
        "c_read_over_c_parse": figures["c_read_s"] / figures["c_parse_s"],
        "parse_domain_ratio": figures["parse_domain_s"] / floor_s,
        "python_walk_ratio": figures["python_walk_s"] / floor_s,
        "convert_ratio": figures["convert_s"] / floor_s,
        "beyond_reader_ratio": beyond_reader / floor_s,
        "c_reader_convert_ratio": (floor_s + c_reading + beyond_reader) / floor_s,
        "least_python_ratio": (floor_s + c_reading + figures["least_correlate_s"]) / floor_s,
        "c_reading_us_per_device": c_reading / fleet.devices * 1e6,
        "python_reading_us_per_device":
            (figures["parse_domain_s"] - floor_s) / fleet.devices * 1e6,
        "beyond_reader_us_per_device": beyond_reader / fleet.devices * 1e6,
    })
    print(json.dumps(figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
