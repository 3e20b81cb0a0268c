"""``monitor load FILE.json`` and ``monitor export``: the inventory document (docs/architecture.md, "Data model")."""

from __future__ import annotations

import argparse
import sys

from monitor.cli.options import add_db_option, parse_vm_id
from monitor.errors import UsageError


def register(subparsers) -> None:
    load = subparsers.add_parser(
        "load",
        help="replace VMs and their device rows from a JSON document",
        description='Load {"vms": [...], "devices": [...]} (what export writes): each '
        "listed VM and all its rows are replaced in one transaction; other VMs stay.",
    )
    load.add_argument("file", metavar="FILE.json")
    add_db_option(load)
    load.set_defaults(func=run_load)

    export = subparsers.add_parser(
        "export",
        help="write VMs and their device rows as JSON",
        description="Write the VMs (all, or those given with --vm) and their device "
        "rows as JSON: VMs sorted by id, rows by (vm_id, device_id), keys sorted.",
    )
    export.add_argument(
        "--vm", metavar="ID", action="append", dest="vm_ids", help="only this VM (repeatable)"
    )
    export.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    add_db_option(export)
    export.set_defaults(func=run_export)


def _store(args: argparse.Namespace):
    from monitor.wiring import open_store, settings_from

    return open_store(settings_from(args))


def run_load(args: argparse.Namespace) -> int:
    from monitor.store import load_document, read_document

    from monitor.wiring import open_store, settings_from

    settings = settings_from(args)
    document = read_document(args.file, settings.limits.max_json_bytes)
    with open_store(settings) as store:
        try:
            summary = load_document(store, document)
        except UsageError as error:
            raise UsageError(f"{args.file}: {error}") from None
    print(f"loaded {summary.vms} VMs and {summary.rows} device rows from {args.file} "
          "(each VM's rows replaced)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from monitor.store import dumps, export_document

    vm_ids = [parse_vm_id(text, "--vm") for text in args.vm_ids] if args.vm_ids else None
    with _store(args) as store:
        document = export_document(store, vm_ids)
    if vm_ids:
        found = {vm["id"] for vm in document["vms"]}
        absent = [vm_id for vm_id in vm_ids if vm_id not in found]
        if absent:
            raise UsageError(f"no VM with id {absent[0]} in the database")
    text = dumps(document)
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise UsageError(f"{args.out}: {error.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0
