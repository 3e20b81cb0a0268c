"""``monitor devices FILE [--json]``: what the parser sees in one Domain XML file."""

from __future__ import annotations

import argparse

from monitor.cli.options import add_json_option, print_json

HELP = "show the devices the parser reads from a Domain XML file"
DESCRIPTION = """\
Read one XML file as the engine does and list every child of <devices>: its position,
tag, oVirt type/device, alias (user aliases ua-<uuid> flagged) and address.

FILE may hold a <domain> (live or inactive), a <domstatus> (libvirt's status file;
the VM's devices are domstatus/domain/devices) or a lone device element. Any other
root is refused. Values that do not fit a type are shown as the text they are.
With --json, natural keys (the non-empty ones) and the oVirt metadata are included.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "devices",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="a Domain XML file")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.domxml.parser import parse_file

    parsed = parse_file(args.file)
    if args.json:
        print_json(as_json(parsed))
    else:
        print(render_table(parsed))
    return 0


def compact_address(attrs: dict[str, str]) -> str:
    """``pci domain=0x0000 bus=0x00 slot=0x03 function=0x0``: type first, then the rest."""
    if not attrs:
        return "-"
    rest = " ".join(f"{key}={value}" for key, value in attrs.items() if key != "type")
    return " ".join(part for part in (attrs.get("type", "?"), rest) if part)


def render_table(parsed) -> str:
    header = f"VM {parsed.uuid or '-'}  name {parsed.name or '-'}  ({parsed.source_kind}, " \
             f"{len(parsed.devices)} devices)"
    rows = [("#", "TAG", "TYPE", "DEVICE", "ALIAS", "USER", "ADDRESS")]
    for device in parsed.devices:
        rows.append((
            str(device.position),
            device.tag,
            device.type,
            device.device,
            device.alias.name or "-",
            "user" if device.alias.is_user else "",
            compact_address(device.address.attrs),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = [header]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def as_json(parsed) -> dict:
    """The parsed document as plain data: VM identity, devices with keys, metadata."""
    return {
        "uuid": parsed.uuid,
        "name": parsed.name,
        "source_kind": parsed.source_kind,
        "devices": [_device_json(device) for device in parsed.devices],
        "metadata": {
            "values": parsed.metadata.values,
            "custom": parsed.metadata.custom,
            "devices": [
                {"attrs": entry.attrs, "values": entry.values}
                for entry in parsed.metadata.devices
            ],
            "qos": parsed.metadata.qos,
        },
    }


def _device_json(device) -> dict:
    keys = {
        name: value.node_device_name() if name == "host_address" else value
        for name, value in device.keys._asdict().items()
        if value is not None and value is not False and value != ""
    }
    return {
        "position": device.position,
        "tag": device.tag,
        "type": device.type,
        "device": device.device,
        "alias": device.alias.name,
        "user_alias_uuid": device.alias.user_uuid,
        "address": device.address.attrs,
        "keys": keys,
    }
