"""``monitor domxml VM_ID``: the Domain XML that runs a VM, from its DB record and rows."""

from __future__ import annotations

import argparse
import sys

from monitor.cli.options import add_db_option, parse_vm_id
from monitor.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "domxml",
        help="print the Domain XML that runs a VM",
        description="Write the whole libvirt Domain XML for a VM from its DB record "
        "and plugged device rows: managed devices carry ua-<device id> aliases, rows keep "
        "their stored addresses, <metadata> holds what the host agent reads "
        "(see docs/run-vm.md).",
    )
    parser.add_argument("vm_id", metavar="VM_ID")
    add_db_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.domxml.builder import build_domain_xml
    from monitor.wiring import open_store, settings_from

    vm_id = parse_vm_id(args.vm_id)
    with open_store(settings_from(args)) as store:
        with store.transaction() as tx:
            vm = tx.vm(vm_id)
            rows = tx.rows([vm_id]).get(vm_id, []) if vm is not None else []
    if vm is None:
        raise UsageError(f"no VM with id {vm_id} in the database")
    sys.stdout.buffer.write(build_domain_xml(vm, rows))
    sys.stdout.flush()
    return 0
