"""Every Domain XML of the shared corpus through parse_domain, in one process.

Expectations come from lxml read directly (plain, unhardened, over the same bytes)
and, for three named files, from device counts taken by reading the files by hand.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
from lxml import etree

from monitor.cli import main
from monitor.domxml.parser import parse_domain
from monitor.errors import XmlError
from monitor.model.domain import ParsedDomain

pytestmark = pytest.mark.corpus

LIBVIRT_FOLDERS = ("status", "hotplug", "xml2xml", "xmlconf-in")
# Well-formed files whose root is neither a domain, a domstatus nor a device.
REFUSED_ROOTS = {"disk_updated_snippet.xml": "devices"}
# Not well-formed on purpose (libvirt's negative test; VDSM's sibling <disk> fragment).
BROKEN = {"broken-xml-invalid.xml", "disk_devices.xml"}


class Swept(NamedTuple):
    path: Path
    plain: object  # the root lxml gives with its default parser, or None
    result: ParsedDomain | XmlError


def _paths(corpus: Path) -> list[Path]:
    paths = [p for folder in LIBVIRT_FOLDERS for p in (corpus / "libvirt" / folder).rglob("*.xml")]
    paths += (corpus / "vdsm").rglob("*.xml")
    return sorted(paths)


def _sweep(path: Path) -> Swept:
    data = path.read_bytes()
    try:
        plain = etree.fromstring(data)
    except etree.XMLSyntaxError:
        plain = None
    try:
        result = parse_domain(data)
    except XmlError as error:
        result = error
    return Swept(path, plain, result)


@pytest.fixture(scope="module")
def swept(corpus) -> list[Swept]:
    found = [_sweep(path) for path in _paths(corpus)]
    assert len(found) > 2000, "the corpus should hold over 2000 XML files"
    return found


@pytest.fixture(scope="module")
def parsed(swept) -> list[tuple[Swept, ParsedDomain]]:
    return [(s, s.result) for s in swept if isinstance(s.result, ParsedDomain)]


def plain_devices(root) -> list:
    """The VM's device elements, read with lxml alone."""
    if root.tag == "domain":
        devices = root.find("devices")
    elif root.tag == "domstatus":
        devices = root.find("domain/devices")
    else:
        return [root]
    return [] if devices is None else [c for c in devices if isinstance(c.tag, str)]


def by_name(swept, name: str) -> Swept:
    (found,) = [s for s in swept if s.path.name == name]
    return found


def test_broken_files_raise_a_one_line_xml_error(swept):
    broken = {s.path.name: s.result for s in swept if s.plain is None}
    assert set(broken) == BROKEN
    for name, result in broken.items():
        assert isinstance(result, XmlError), name
        assert str(result).startswith("malformed XML at line "), name
        assert "\n" not in str(result)


def test_other_roots_are_refused_by_name(swept):
    refused = {
        s.path.name: s.result for s in swept
        if s.plain is not None and isinstance(s.result, XmlError)
    }
    assert set(refused) == set(REFUSED_ROOTS)
    for name, root in REFUSED_ROOTS.items():
        assert f"<{root}>" in str(refused[name])


def test_every_well_formed_document_parses(swept, parsed):
    expected = len(swept) - len(BROKEN) - len(REFUSED_ROOTS)
    assert len(parsed) == expected
    kinds = Counter(result.source_kind for _, result in parsed)
    assert kinds["domstatus"] == 14
    assert kinds["device"] == 35 + 38  # hotplug/devices + status/blockdisk-fragments
    assert kinds["domain"] > 2000


def test_every_device_element_is_reported_in_order(parsed):
    for swept_file, result in parsed:
        expected = [element.tag for element in plain_devices(swept_file.plain)]
        assert [device.tag for device in result.devices] == expected, swept_file.path.name
        assert [device.position for device in result.devices] == list(range(len(expected)))


def test_every_address_attribute_is_kept(parsed):
    compared = 0
    for swept_file, result in parsed:
        for element, device in zip(plain_devices(swept_file.plain), result.devices):
            address = element.find("address")
            expected = dict(address.attrib) if address is not None else {}
            assert device.address.attrs == expected, (swept_file.path.name, device)
            compared += bool(expected)
    assert compared > 6000


def test_every_alias_is_kept_and_vdsm_user_aliases_are_uuids(parsed):
    user_aliases = 0
    for swept_file, result in parsed:
        vdsm = "vdsm" in swept_file.path.parts
        for element, device in zip(plain_devices(swept_file.plain), result.devices):
            alias = element.find("alias")
            name = (alias.get("name") if alias is not None else None) or ""
            assert device.alias.name == name
            if vdsm and name.startswith("ua-"):
                assert device.alias.user_uuid == str(uuid.UUID(name[3:]))
                user_aliases += 1
    assert user_aliases >= 100


def test_templated_uuids_are_none_and_real_ones_normalized(parsed):
    for swept_file, result in parsed:
        if result.source_kind == "device":
            continue
        domain = swept_file.plain if swept_file.plain.tag == "domain" else \
            swept_file.plain.find("domain")
        text = (domain.findtext("uuid") or "").strip()
        if text.startswith("{") or not text:
            assert result.uuid is None, swept_file.path.name
        else:
            assert result.uuid == str(uuid.UUID(text)), swept_file.path.name


# Counted by reading each file's <devices> by hand (see the test module docstring).
HAND_COUNTED = [
    pytest.param("vm_hibernated_390.xml", {
        ("emulator", "emulator"): 1, ("disk", "cdrom"): 1, ("disk", "disk"): 1,
        ("controller", "usb"): 1, ("controller", "virtio-serial"): 1,
        ("controller", "virtio-scsi"): 1, ("controller", "pci"): 1, ("controller", "ide"): 1,
        ("interface", "bridge"): 1, ("channel", "unix"): 2, ("channel", "spicevmc"): 1,
        ("input", "input"): 2, ("graphics", "spice"): 1, ("sound", "ich6"): 1,
        ("video", "qxl"): 1, ("balloon", "memballoon"): 1, ("rng", "virtio"): 1,
    }, id="vdsm-vm_hibernated_390"),
    pytest.param("qemuhotplug-base-live+hostdev-pci.xml", {
        ("emulator", "emulator"): 1, ("controller", "usb"): 1, ("controller", "ide"): 1,
        ("controller", "virtio-scsi"): 1, ("controller", "pci"): 1,
        ("controller", "virtio-serial"): 1, ("input", "input"): 2, ("audio", "audio"): 1,
        ("hostdev", "pci"): 1, ("balloon", "memballoon"): 1,
    }, id="hotplug-hostdev-pci"),
]


@pytest.mark.parametrize(("name", "expected"), HAND_COUNTED)
def test_device_kinds_of_named_files(swept, name, expected):
    result = by_name(swept, name).result
    assert Counter((d.type, d.device) for d in result.devices) == expected


def test_status_file_reports_the_domain_devices_not_the_private_ones(swept):
    result = by_name(swept, "modern-in.xml").result
    assert result.source_kind == "domstatus"
    assert Counter(d.tag for d in result.devices) == {
        "audio": 1, "channel": 2, "console": 1, "controller": 9, "disk": 3, "emulator": 1,
        "graphics": 1, "hostdev": 2, "input": 3, "interface": 1, "memballoon": 1,
        "redirdev": 2, "rng": 1, "serial": 1, "sound": 1, "video": 1,
    }
    assert "device" not in {d.tag for d in result.devices}  # domstatus/devices/device


@pytest.mark.parametrize("relative", [
    "vdsm/vm_hibernated_390.xml",
    "libvirt/status/modern-in.xml",
    "libvirt/hotplug/devices/qemuhotplug-watchdog-user-alias.xml",
])
@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["table", "json"])
def test_cli_devices_on_corpus_files(corpus, capsys, relative, json_flag):
    code = main(["devices", str(corpus / relative), *json_flag])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == ""
    assert captured.out.strip()
