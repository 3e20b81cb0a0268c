"""``monitor start VM_ID --host URI``: run a VM on a libvirt host with our Domain XML."""

from __future__ import annotations

import argparse

from monitor.cli.options import add_db_option, parse_vm_id

EPILOG = """\
The XML is what 'monitor domxml VM_ID' prints: managed devices carry ua-<device id>
aliases, so the next poll of that host finds every one of them by its alias. The VM is
recorded with status WaitForLaunch on the host the worker knows: the name of the
config's [[hosts]] with this URI (--config, $MONITOR_CONFIG), else --host-name, which
is then required (a warning when no configured host has that name). The worker
reconciles the VM once that host reports it Up. The command holds the VM's devices lock
while it runs.

example:
  monitor start 6d1a8a53-7f2c-4b8e-9a41-3c5e2f0b7d19 --host qemu+ssh://root@host1/system --config monitor.toml
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "start", help="start a VM on a libvirt host",
        description="Build a VM's Domain XML from the DB, start it on a libvirt host "
        "(transient: a refused start leaves nothing defined), and record which host runs it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vm_id", metavar="VM_ID")
    parser.add_argument("--host", required=True, metavar="URI", help="a libvirt URI")
    parser.add_argument("--host-name", metavar="NAME",
                        help="the host's name in the DB ([A-Za-z0-9._-]+); default: the "
                        "name of the config's [[hosts]] with this URI")
    add_db_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from monitor.commands.start import host_name_for, start_vm
    from monitor.settings import host_settings
    from monitor.wiring import open_store, settings_from
    from monitor.worker.sources import build_source

    vm_id = parse_vm_id(args.vm_id)
    settings = settings_from(args)
    name, warning = host_name_for(args.host, args.host_name, settings.hosts,
                                  settings.config_path)
    source = build_source(host_settings(name=name, uri=args.host))
    with open_store(settings) as store:
        try:
            start_vm(store, vm_id, source, name)
        finally:
            source.close()
    print(f"started VM {vm_id} on {name} ({args.host}); the next poll reconciles it")
    if warning:  # about what was recorded: once it is
        print(f"monitor: warning: {warning}", file=sys.stderr)
    return 0
