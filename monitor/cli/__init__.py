"""The ``monitor`` command line: one module per verb, errors as one line on stderr."""

from __future__ import annotations

import argparse
import importlib
import sys

from monitor import __version__, logfields
from monitor.errors import MonitorError

# Each module defines ``register(subparsers)``; heavy imports stay inside its run function.
VERB_MODULES = (
    "run",
    "replay",
    "diagnose",
    "devices",
    "db",
    "inventory",
    "domxml",
    "start",
    "record",
    "bench",
)

DESCRIPTION = """\
Reconcile a virtualization manager's device rows with libvirt's live Domain XML.

Hosts report a devices hash per VM; for the VMs whose hash changed the engine fetches
their Domain XML, matches every reported device to its DB row (user alias ua-<uuid>,
stored alias, natural key, address), explains each decision, and applies the result
to the database together with the VM's new hash.
"""

EPILOG = """\
first steps:
  monitor run                          play the bundled recording on the default SQLite DB
  monitor devices vm.xml               what the parser sees in a Domain XML file
  monitor replay fixtures/disk-hotplug --check --db sqlite:///:memory:
  monitor diagnose VM_ID               why each device did or did not match

every verb that touches the database takes --db URL (after the verb); otherwise
MONITOR_DB_URL, then the config file, then an SQLite file in your data folder.
Run 'monitor VERB --help' for each verb.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"monitor.cli.{name}")
        except ModuleNotFoundError as missing:
            if missing.name == f"monitor.cli.{name}":
                continue  # verb not built yet
            raise
        module.register(subparsers)
    for verb in subparsers.choices.values():  # -v after the verb counts as well as before
        verb.add_argument("-v", "--verbose", action="count", default=0, dest="verb_verbose",
                          help="more log output (-vv for debug)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logfields.configure(args.verbose + args.verb_verbose + getattr(args, "default_verbosity", 0))
    try:
        return int(args.func(args) or 0)
    except MonitorError as error:
        print(f"monitor: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("monitor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
