"""``monitor replay DIR``: every tick of a recorded fixture through the worker's code."""

from __future__ import annotations

import argparse
import sys

from monitor.cli.options import add_db_option, add_json_option, print_json

EPILOG = """\
examples:
  monitor replay fixtures/disk-hotplug --db sqlite:///:memory: --check
  monitor replay fixtures/vm-start --emit-dicts - --db sqlite:////tmp/m.db
  monitor replay my-recording --write-expected     (then review expected.json by hand)

The replay applies to the database (it is not a dry run): with an inventory.json the
listed VMs are replaced first; without one it runs on the DB as it is, so a long
recording can be replayed in parts. Exit codes: 0 the ticks ran (bad VMs are counted
in the summary), 1 --check found differences, 4 the fixture is unusable.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a recorded fixture through the worker's tick",
        description="Replay every tick of a fixture directory (inventory.json, "
        "ticks/NNNN/<host>.json and XML, expected.json) through the same code as the "
        "worker; only the host source differs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("fixture", metavar="DIR", help="a fixture directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="compare the export of the fixture's VMs with expected.json")
    mode.add_argument("--write-expected", action="store_true",
                      help="write expected.json from the export after the last tick")
    parser.add_argument("--emit-dicts", metavar="FILE|-",
                        help="also write each applied VM's legacy dicts as JSON lines")
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run, default_verbosity=0)


def run(args: argparse.Namespace) -> int:
    from monitor.errors import FixtureError
    from monitor.hosts.fixture import read_fixture
    from monitor.hosts.fixture_writer import write_json
    from monitor.store.inventory import read_document
    from monitor.tick.check import compare_exports
    from monitor.tick.replay import export_fixture_vms, replay
    from monitor.wiring import emit_dicts, open_store, settings_from, tick_context

    fixture = read_fixture(args.fixture)
    if args.check and not fixture.has_expected:
        raise FixtureError(f"{args.fixture}: --check needs an expected.json")
    settings = settings_from(args)
    # Progress goes to stderr when stdout carries data (JSON, or dicts on '-').
    progress = sys.stderr if (args.json or args.emit_dicts == "-") else sys.stdout
    with open_store(settings) as store, emit_dicts(args.emit_dicts) as emitters:
        context = tick_context(store, settings, emitters)

        def show(number: int, summary) -> None:
            print(f"tick {number:04d} {summary.line()}", file=progress, flush=True)

        result = replay(fixture, context, on_tick=show)
        exported = export_fixture_vms(context, result)
    total = result.total()
    print(f"replayed {result.ticks} ticks of {args.fixture}: applied={total.applied} "
          f"changed={total.changed} rows={total.rows_written} new={total.new} "
          f"unplugged={total.unplugged} deleted={total.deleted} foreign={total.foreign} "
          f"conflicts={total.conflicts} errors={sum(total.errors.values())}",
          file=progress)
    differences = []
    if args.check:
        differences = compare_exports(read_document(fixture.expected_path), exported)
        for difference in differences:
            print(f"  {difference.line()}", file=progress)
        print(f"check: {'OK' if not differences else f'{len(differences)} differences'} "
              f"against {fixture.expected_path}", file=progress)
    if args.write_expected:
        write_json(fixture.expected_path, expected_document(exported))
        print(f"wrote {fixture.expected_path}: review it before committing", file=progress)
    if args.json:
        print_json({"ticks": result.ticks, "summary": _summary_json(total),
                    "differences": [d._asdict() for d in differences]})
    return 1 if differences else 0


def expected_document(exported: dict) -> dict:
    """The export without ``hash_time`` (the engine's clock), which --check ignores."""
    vms = [{k: v for k, v in vm.items() if k != "hash_time"} for vm in exported["vms"]]
    return {"vms": vms, "devices": exported["devices"]}


def _summary_json(total) -> dict:
    return {
        "applied": total.applied, "changed": total.changed, "rows_written": total.rows_written,
        "matched": dict(total.rules), "new": total.new, "unplugged": total.unplugged,
        "deleted": total.deleted, "foreign": total.foreign, "conflicts": total.conflicts,
        "skipped": dict(total.skipped), "errors": dict(total.errors),
    }
