"""``monitor record``: write a live libvirt host as a replayable fixture."""

from __future__ import annotations

import argparse

from monitor.cli.options import add_db_option

EPILOG = """\
Each tick polls the host and dumps the VMs whose hash changed since the previous tick
(all of them on the first). The inventory is the DB before the first tick (the VMs it
places on this host are read before the first poll); VMs it does not know are made
from their first XML: one VM per domain, one managed row per device with a ua-<uuid> alias. Replay the result with 'monitor replay DIR', then write its
expected.json with --write-expected and review it.

example:
  monitor record --host qemu+ssh://root@host1/system --host-name host1 --out case-123 --ticks 5 --interval 10
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "record", help="record a libvirt host as a fixture directory",
        description="Poll a libvirt host for a few ticks and write what it answered in "
        "the fixture format (docs/worker.md).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, metavar="URI", help="a libvirt URI")
    parser.add_argument("--host-name", required=True, metavar="NAME",
                        help="the host's name in the fixture and the DB")
    parser.add_argument("--out", required=True, metavar="DIR", help="the fixture directory")
    parser.add_argument("--ticks", type=int, default=1, metavar="N", help="ticks (default 1)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="S",
                        help="seconds between ticks (default 5)")
    add_db_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monitor.commands.record import record
    from monitor.errors import UsageError
    from monitor.hosts.fixture_writer import FixtureWriter
    from monitor.settings import host_settings
    from monitor.wiring import open_store, settings_from
    from monitor.worker.sources import build_source

    if args.ticks < 1:
        raise UsageError("--ticks must be at least 1")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}: the folder is not empty")
    # Every tick reads every VM's XML (a full resync each poll): a recording shows what
    # libvirt says at each tick, whether or not an event announced the change.
    source = build_source(host_settings(name=args.host_name, uri=args.host),
                          resync_interval_s=0)
    with open_store(settings_from(args)) as store:
        try:
            summary = record(source, FixtureWriter(out), ticks=args.ticks,
                             interval_s=args.interval, store=store)
        finally:
            source.close()
    print(f"recorded {summary.ticks} ticks of {args.host_name} into {out}: "
          f"{summary.vms} VMs ({summary.from_db} from the DB), {summary.xml_files} XML files")
    return 0
