"""Options shared by several verbs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL (postgresql:// uses psycopg 3); default: $MONITOR_DB_URL, "
        "then the config file, then an SQLite file in your data folder",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="config file (TOML); default $MONITOR_CONFIG"
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print data as JSON")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def parse_vm_id(text: str, what: str = "VM id") -> str:
    """A VM id from the command line as the DB keys it (lower-case UUID), or a one-line error."""
    from monitor.errors import UsageError
    from monitor.model.ids import normalize_uuid

    canonical = normalize_uuid(text)
    if canonical is None:
        raise UsageError(f"{what} {text!r} is not a UUID")
    return canonical
