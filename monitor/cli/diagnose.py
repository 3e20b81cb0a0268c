"""``monitor diagnose VM_ID``: every device and row, the rule that matched or why none did."""

from __future__ import annotations

import argparse
import sys

from monitor.cli.options import add_db_option, add_json_option, parse_vm_id, print_json

EPILOG = """\
Without --xml it reads the last Domain XML the engine fetched for the VM (kept by every
tick, good or bad). Nothing is written: the output shows exactly what applying that XML
would change (updates, inserts, unplugs, deletes, with field differences).

examples:
  monitor diagnose 6d1a8a53-7f2c-4b8e-9a41-3c5e2f0b7d19
  monitor diagnose 6d1a8a53-7f2c-4b8e-9a41-3c5e2f0b7d19 --xml dumped.xml --json
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="explain how a VM's reported devices match its rows",
        description="For every reported device: the row and the rule that matched it, or "
        "each rule tried and what it found; for every row: whether it was reported and "
        "what applying would do; the conflicts; the field differences (docs/matching.md).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vm_id", metavar="VM_ID")
    parser.add_argument("--xml", metavar="FILE",
                        help="a Domain XML file (default: the last XML the engine fetched)")
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.diagnosis import diagnose, render_text
    from monitor.domxml import parse_domain
    from monitor.domxml.parser import read_xml_file
    from monitor.errors import UsageError
    from monitor.wiring import open_store, settings_from

    vm_id = parse_vm_id(args.vm_id)
    settings = settings_from(args)
    with open_store(settings) as store, store.transaction() as tx:
        vm = tx.vm(vm_id)
        if vm is None:
            raise UsageError(f"no VM with id {vm_id} in the database")
        rows = tx.rows([vm_id])[vm_id]
        last = None if args.xml else tx.last_xml(vm_id)
    if args.xml:
        xml, origin = read_xml_file(args.xml, settings.limits), args.xml
    elif last is None:
        raise UsageError(f"VM {vm_id}: no XML fetched yet; pass --xml FILE")
    else:
        xml, origin = last[0], f"the XML fetched at {last[1].isoformat()}"
    parsed = parse_domain(xml, limits=settings.limits)
    if parsed.uuid not in (None, vm_id):
        print(f"monitor: warning: {origin} is for VM {parsed.uuid}, not {vm_id}",
              file=sys.stderr)
    report = diagnose(vm_id, parsed, rows)
    if args.json:
        print_json({"vm": vm_id, "xml": origin, **report.as_dict()})
    else:
        print(f"from {origin}")
        print(render_text(report))
    return 0
