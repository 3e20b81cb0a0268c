"""``monitor db init``: create or upgrade the schema, and say what was done."""

from __future__ import annotations

import argparse

from monitor.cli.options import add_db_option


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "db", help="database maintenance", description="Database maintenance."
    )
    verbs = parser.add_subparsers(dest="db_verb", metavar="ACTION", required=True)
    init = verbs.add_parser(
        "init",
        help="create or upgrade the schema (Alembic)",
        description="Create the schema in an empty database, or upgrade it to this "
        "version of monitor. Safe to run again: an up-to-date schema is left alone.",
    )
    add_db_option(init)
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    from monitor.settings import load_settings
    from monitor.store import Store

    url = load_settings(db=args.db, config=args.config).db_url
    with Store.open(url, create=False) as store:
        result = store.upgrade()
        if not result.changed:
            print(f"schema already at revision {result.after} (newest): {store.url}")
        elif result.before is None:
            print(f"schema created at revision {result.after}: {store.url}")
        else:
            print(f"schema upgraded from revision {result.before} to {result.after}: {store.url}")
    return 0
