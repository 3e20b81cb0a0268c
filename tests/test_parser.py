"""parse_domain: vocabulary, aliases, addresses, root dispatch, natural keys, limits."""

from __future__ import annotations

import pytest

from monitor.domxml.vocabulary import size_in_mib
from monitor.domxml.parser import parse_domain
from monitor.errors import XmlError
from monitor.model import hostaddress
from monitor.settings import Limits

VM_UUID = "c7a5fdbd-edaf-9455-926a-d65c16db1809"
DEVICE_UUID = "6799f347-bd30-4a32-96bc-bea668053e0a"


def domain(devices: str, extra: str = "") -> bytes:
    return (
        f"<domain type='kvm'><name>vm1</name><uuid>{VM_UUID}</uuid>{extra}"
        f"<devices>{devices}</devices></domain>"
    ).encode()


def only_device(xml: str):
    (device,) = parse_domain(domain(xml)).devices
    return device


# --- vocabulary (docs/architecture.md) ---------------------------------------------

VOCABULARY = [
    pytest.param("<disk type='file' device='disk'/>", "disk", "disk", id="disk-disk"),
    pytest.param("<disk type='file' device='cdrom'/>", "disk", "cdrom", id="disk-cdrom"),
    pytest.param("<disk type='block' device='lun'/>", "disk", "lun", id="disk-lun"),
    pytest.param("<disk type='file'/>", "disk", "disk", id="disk-default-device"),
    pytest.param("<interface type='bridge'/>", "interface", "bridge", id="nic-bridge"),
    pytest.param("<interface type='network'/>", "interface", "bridge", id="nic-network"),
    pytest.param("<interface type='hostdev'/>", "interface", "hostdev", id="nic-hostdev"),
    pytest.param("<controller type='usb'/>", "controller", "usb", id="controller-usb"),
    pytest.param("<controller type='scsi' model='virtio-scsi'/>", "controller", "virtio-scsi",
                 id="controller-virtio-scsi"),
    pytest.param("<controller type='scsi' model='lsilogic'/>", "controller", "scsi",
                 id="controller-scsi-lsilogic"),
    pytest.param("<video><model type='qxl'/></video>", "video", "qxl", id="video-qxl"),
    pytest.param("<video/>", "video", "video", id="video-without-model"),
    pytest.param("<graphics type='spice'/>", "graphics", "spice", id="graphics-spice"),
    pytest.param("<memballoon model='virtio'/>", "balloon", "memballoon", id="balloon"),
    pytest.param("<channel type='unix'/>", "channel", "unix", id="channel-unix"),
    pytest.param("<redirdev bus='usb' type='spicevmc'/>", "redir", "spicevmc", id="redirdev"),
    pytest.param("<hostdev mode='subsystem' type='pci'/>", "hostdev", "pci", id="hostdev-pci"),
    pytest.param("<hostdev mode='subsystem' type='usb'/>", "hostdev", "usb", id="hostdev-usb"),
    pytest.param("<hostdev mode='subsystem' type='scsi'/>", "hostdev", "scsi", id="hostdev-scsi"),
    pytest.param("<hostdev mode='subsystem' type='mdev' model='vfio-pci'/>", "mdev", "vfio",
                 id="hostdev-mdev"),
    pytest.param("<memory model='dimm'/>", "memory", "memory", id="memory-dimm"),
    pytest.param("<rng model='virtio'/>", "rng", "virtio", id="rng"),
    pytest.param("<watchdog model='i6300esb' action='reset'/>", "watchdog", "i6300esb",
                 id="watchdog"),
    pytest.param("<sound model='ich6'/>", "sound", "ich6", id="sound"),
    pytest.param("<smartcard mode='passthrough' type='spicevmc'/>", "smartcard", "passthrough",
                 id="smartcard-mode"),
    pytest.param("<console type='pty'/>", "console", "pty", id="console"),
    pytest.param("<tpm model='tpm-crb'/>", "tpm", "tpm-crb", id="tpm"),
    pytest.param("<panic model='isa'/>", "panic", "isa", id="panic"),
    pytest.param("<panic/>", "panic", "panic", id="panic-without-model"),
    pytest.param("<input type='tablet' bus='usb'/>", "input", "input", id="input"),
    pytest.param("<emulator>/usr/bin/qemu</emulator>", "emulator", "emulator", id="emulator"),
    pytest.param("<frobnicator kind='x'/>", "frobnicator", "frobnicator", id="unknown-tag"),
]


@pytest.mark.parametrize(("xml", "type_", "device"), VOCABULARY)
def test_vocabulary(xml, type_, device):
    found = only_device(xml)
    assert (found.type, found.device) == (type_, device)


def test_unknown_tag_is_kept_with_its_tag():
    found = only_device("<frobnicator><alias name='frob0'/></frobnicator>")
    assert found.tag == "frobnicator"
    assert found.alias.name == "frob0"


def test_every_element_child_is_a_device_and_comments_are_skipped():
    parsed = parse_domain(domain("<!-- a comment --><disk/><?pi x?><interface/>\n<x-y/>"))
    assert [d.tag for d in parsed.devices] == ["disk", "interface", "x-y"]
    assert [d.position for d in parsed.devices] == [0, 1, 2]


# --- aliases ----------------------------------------------------------------------

ALIASES = [
    pytest.param(f"ua-{DEVICE_UUID}", f"ua-{DEVICE_UUID}", DEVICE_UUID, id="user-alias"),
    pytest.param(f"ua-{DEVICE_UUID.upper()}", f"ua-{DEVICE_UUID.upper()}", DEVICE_UUID,
                 id="user-alias-upper-case"),
    pytest.param("ua-not-a-uuid", "ua-not-a-uuid", None, id="ua-malformed-is-libvirt-style"),
    pytest.param("ua-6799f347-bd30", "ua-6799f347-bd30", None, id="ua-short-uuid"),
    pytest.param("virtio-disk0", "virtio-disk0", None, id="libvirt-alias"),
    pytest.param("", "", None, id="empty-name"),
]


@pytest.mark.parametrize(("name", "alias_name", "user_uuid"), ALIASES)
def test_alias(name, alias_name, user_uuid):
    found = only_device(f"<disk><alias name='{name}'/></disk>")
    assert found.alias.name == alias_name
    assert found.alias.user_uuid == user_uuid
    assert found.alias.is_user is (user_uuid is not None)


def test_device_without_alias_has_empty_alias():
    found = only_device("<disk/>")
    assert not found.alias
    assert found.alias.name == ""


# --- addresses --------------------------------------------------------------------

ADDRESSES = [
    pytest.param({"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x03",
                  "function": "0x0", "multifunction": "on"}, id="pci"),
    pytest.param({"type": "drive", "controller": "0", "bus": "1", "target": "0", "unit": "0"},
                 id="drive"),
    pytest.param({"type": "ccw", "cssid": "0xfe", "ssid": "0x0", "devno": "0x0001"}, id="ccw"),
    pytest.param({"type": "spapr-vio", "reg": "0x30000000"}, id="spapr-vio"),
    pytest.param({"type": "isa", "iobase": "0x505", "irq": "4"}, id="isa"),
    pytest.param({"type": "usb", "bus": "0", "port": "1.2"}, id="usb"),
    pytest.param({"type": "virtio-serial", "controller": "0", "bus": "0", "port": "3"},
                 id="virtio-serial"),
    pytest.param({"type": "dimm", "slot": "0", "base": "0x100000000"}, id="dimm"),
    pytest.param({"type": "pci", "bus": "not-a-number"}, id="value-that-does-not-fit"),
]


@pytest.mark.parametrize("attrs", ADDRESSES)
def test_address_keeps_every_attribute_as_string(attrs):
    rendered = " ".join(f"{k}='{v}'" for k, v in attrs.items())
    found = only_device(f"<controller type='x'><address {rendered}/></controller>")
    assert found.address.attrs == attrs


def test_address_is_the_direct_child_never_a_nested_one():
    found = only_device(
        "<hostdev mode='subsystem' type='pci'><source>"
        "<address domain='0x0000' bus='0x05' slot='0x00' function='0x1'/></source>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></hostdev>"
    )
    assert found.address.attrs["slot"] == "0x07"
    nested_only = only_device(
        "<hostdev mode='subsystem' type='pci'><source>"
        "<address domain='0x0000' bus='0x05' slot='0x00' function='0x1'/></source></hostdev>"
    )
    assert nested_only.address.attrs == {}


# --- roots ------------------------------------------------------------------------


def test_domain_identity():
    parsed = parse_domain(domain("<disk/>"))
    assert (parsed.uuid, parsed.name, parsed.source_kind) == (VM_UUID, "vm1", "domain")


def test_uuid_that_does_not_fit_is_none_not_an_error():
    parsed = parse_domain(b"<domain><name>t</name><uuid>{vm_uuid}</uuid><devices/></domain>")
    assert parsed.uuid is None
    assert parsed.name == "t"


def test_domstatus_reads_the_vm_devices_not_the_private_ones():
    xml = (
        "<domstatus state='running' pid='1'><devices><device alias='net0'/>"
        "<device alias='ua-x'/></devices>"
        f"<domain type='kvm' id='1'><name>s</name><uuid>{VM_UUID}</uuid><devices>"
        "<disk device='disk'><alias name='virtio-disk0'/></disk></devices></domain></domstatus>"
    ).encode()
    parsed = parse_domain(xml)
    assert parsed.source_kind == "domstatus"
    assert parsed.uuid == VM_UUID
    assert [(d.tag, d.alias.name) for d in parsed.devices] == [("disk", "virtio-disk0")]


def test_domstatus_without_domain_is_refused():
    with pytest.raises(XmlError, match="domstatus"):
        parse_domain(b"<domstatus><devices/></domstatus>")


def test_lone_device_element_is_one_device():
    parsed = parse_domain(
        b"<watchdog model='ib700' action='poweroff'><alias name='ua-x'/></watchdog>"
    )
    assert parsed.source_kind == "device"
    assert parsed.uuid is None
    ((found),) = parsed.devices
    assert (found.tag, found.type, found.device, found.alias.name) == (
        "watchdog", "watchdog", "ib700", "ua-x")


@pytest.mark.parametrize("root", ["devices", "network", "capabilities", "frobnicator"])
def test_other_roots_are_refused_by_name(root):
    with pytest.raises(XmlError, match=f"<{root}>"):
        parse_domain(f"<{root}/>".encode())


def test_domain_without_devices_has_none():
    assert parse_domain(b"<domain><name>x</name></domain>").devices == ()


# --- natural keys -----------------------------------------------------------------

KEYS = [
    pytest.param("<interface type='bridge'><mac address='00:1A:4A:16:01:12'/></interface>",
                 {"mac": "00:1a:4a:16:01:12"}, id="nic-mac-lower-cased"),
    pytest.param("<interface type='bridge'><mac address='zz:zz'/></interface>",
                 {"mac": "zz:zz"}, id="nic-mac-that-does-not-fit-stays-string"),
    pytest.param("<disk device='disk'><source file='/images/a.img'/>"
                 "<target dev='vda' bus='virtio'/><serial> abc </serial></disk>",
                 {"source": "/images/a.img", "target_dev": "vda", "target_bus": "virtio",
                  "serial": "abc"}, id="disk-file"),
    pytest.param("<disk type='block' device='lun'><source dev='/dev/mapper/3600a'/>"
                 "<readonly/></disk>",
                 {"source": "/dev/mapper/3600a", "readonly": True}, id="disk-block-readonly"),
    pytest.param("<disk type='network'><source protocol='rbd' name='pool/image'/></disk>",
                 {"source": "pool/image"}, id="disk-network-name"),
    pytest.param("<disk type='volume'><source pool='p' volume='vol1'/></disk>",
                 {"source": "vol1"}, id="disk-volume"),
    pytest.param("<disk type='file' device='cdrom'><source file=''/></disk>",
                 {}, id="disk-empty-source"),
    pytest.param("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
                 "bus='0x05' slot='0x00' function='0x1'/></source></hostdev>",
                 {"host_address": hostaddress.pci("0", "5", "0", "1")}, id="hostdev-pci"),
    pytest.param("<hostdev mode='subsystem' type='usb'><source><address bus='1' device='5'/>"
                 "</source></hostdev>",
                 {"host_address": hostaddress.usb("1", "5")}, id="hostdev-usb"),
    pytest.param("<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/>"
                 "<product id='0xbeef'/></source></hostdev>", {}, id="hostdev-usb-by-vendor"),
    pytest.param("<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/>"
                 "<address bus='0' target='2' unit='6'/></source></hostdev>",
                 {"host_address": hostaddress.scsi(0, 0, 2, 6)}, id="hostdev-scsi"),
    pytest.param("<hostdev mode='subsystem' type='scsi'><source protocol='iscsi' "
                 "name='iqn.2014-08.com.example:iscsi-nopool/1'><host name='example.org'/>"
                 "</source></hostdev>", {}, id="hostdev-scsi-iscsi"),
    pytest.param("<hostdev mode='subsystem' type='mdev'><source><address "
                 "uuid='53764D0E-85A0-42B4-AF5C-2046B460B1DC'/></source></hostdev>",
                 {"host_address": hostaddress.mdev("53764d0e-85a0-42b4-af5c-2046b460b1dc")},
                 id="hostdev-mdev"),
    pytest.param("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
                 "bus='zz' slot='0x00' function='0x1'/></source></hostdev>",
                 {}, id="hostdev-pci-that-does-not-fit"),
    pytest.param("<interface type='hostdev'><mac address='52:54:00:6d:90:02'/><source>"
                 "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"
                 "</source></interface>",
                 {"mac": "52:54:00:6d:90:02"},
                 id="nic-hostdev-sriov"),
    pytest.param("<controller type='scsi' index='0x1' model='virtio-scsi'/>",
                 {"index": 1, "model": "virtio-scsi"}, id="controller"),
    pytest.param("<controller type='pci' index='many'/>",
                 {"index": "many"},
                 id="controller-index-that-does-not-fit"),
    pytest.param("<memory model='dimm'><target><size unit='KiB'>524288</size><node>1</node>"
                 "</target></memory>",
                 {"node": 1, "size": 512},
                 id="memory-kib"),
    pytest.param("<memory model='dimm'><target><size unit='GiB'>2</size><node>0</node>"
                 "</target></memory>",
                 {"node": 0, "size": 2048},
                 id="memory-gib"),
    pytest.param("<memory model='dimm'><target><size>1000</size><node>x</node></target></memory>",
                 {"node": "x", "size": "1000"},
                 id="memory-values-that-do-not-fit"),
    pytest.param("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
                 "</channel>",
                 {"target_type": "virtio", "target_name": "org.qemu.guest_agent.0"},
                 id="channel"),
    # A kind's children are found in one pass (domxml/vocabulary.py): as lxml's find,
    # the first child of a tag counts, comments and other namespaces' elements do not.
    pytest.param("<disk type='file' device='disk'><!-- x --><target dev='vdb'/>"
                 "<target dev='vdc' bus='scsi'/><serial> S1 </serial><serial>S2</serial>"
                 "<readonly/></disk>",
                 {"target_dev": "vdb", "serial": "S1", "readonly": True},
                 id="disk-first-child-of-each-tag"),
    pytest.param("<disk type='file' device='disk' xmlns:x='urn:x'><x:target dev='vdz'/>"
                 "<x:serial>X</x:serial><serial/><source file=''/><source dev='/dev/b'/></disk>",
                 {}, id="disk-empty-serial-other-namespace-and-first-source"),
    pytest.param("<channel type='unix'><target/><target type='virtio' name='n'/></channel>",
                 {}, id="channel-first-target-has-no-attributes"),
    # Singletons are told apart by their kind (and video/graphics by `device`): no fields.
    pytest.param("<video><model type='vga' vram='16384'/></video>", {}, id="video"),
    pytest.param("<memballoon model='none'/>", {}, id="balloon"),
    pytest.param("<input type='mouse' bus='ps2'/>", {}, id="input-has-no-keys"),
]


@pytest.mark.parametrize(("xml", "expected"), KEYS)
def test_natural_keys(xml, expected):
    keys = only_device(xml).keys
    found = {
        name: value for name, value in keys._asdict().items()
        if value is not None and value is not False
    }
    assert found == expected


def test_keys_are_read_once_and_cached():
    found = only_device("<interface type='bridge'><mac address='00:1a:4a:16:01:12'/></interface>")
    assert found.keys is found.keys


SIZES = [
    pytest.param("1024", None, 1, id="default-kib"),
    pytest.param("1048576", "b", 1, id="bytes-b"),
    pytest.param("1048576", "bytes", 1, id="bytes"),
    pytest.param("2048", "k", 2, id="k"),
    pytest.param("3", "M", 3, id="M"),
    pytest.param("3", "MiB", 3, id="MiB"),
    pytest.param("1", "G", 1024, id="G"),
    pytest.param("1000000", "MB", "1000000", id="MB-not-whole-mib"),
    pytest.param("1048576", "MB", 1000000, id="MB-decimal"),
    pytest.param("1024", "KB", "1024", id="KB-decimal-not-whole-mib"),
    pytest.param("1536", "KiB", "1536", id="not-whole-mib-stays-text"),
    pytest.param("12", "furlongs", "12", id="unknown-unit-stays-text"),
    pytest.param("lots", "KiB", "lots", id="not-a-number-stays-text"),
]


@pytest.mark.parametrize(("text", "unit", "expected"), SIZES)
def test_size_in_mib(text, unit, expected):
    assert size_in_mib(text, unit) == expected


# --- limits -----------------------------------------------------------------------


def test_too_many_devices():
    with pytest.raises(XmlError, match="more than 3 devices"):
        parse_domain(domain("<disk/>" * 4), limits=Limits(max_devices=3))
    assert len(parse_domain(domain("<disk/>" * 3), limits=Limits(max_devices=3)).devices) == 3


def test_too_many_bytes_is_refused_before_parsing():
    data = domain("<disk/>")
    with pytest.raises(XmlError, match=f"{len(data)} bytes, over the limit of 20"):
        parse_domain(data, limits=Limits(max_xml_bytes=20))


def test_too_deep():
    nested = "<a>" * 10 + "</a>" * 10
    data = domain(f"<disk>{nested}</disk>")  # disk at depth 3, the deepest <a> at 13
    with pytest.raises(XmlError, match="deeper than 12 levels"):
        parse_domain(data, limits=Limits(max_depth=12))
    assert parse_domain(data, limits=Limits(max_depth=13)).devices[0].tag == "disk"


# --- devices digest ---------------------------------------------------------------

from monitor.domxml.canonical import devices_digest  # noqa: E402

BASE_DEVICES = """
  <devices>
    <disk type='file' device='disk'>
      <source file='/images/a.img'/>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-6799f347-bd30-4a32-96bc-bea668053e0a'/>
    </disk>
    <interface type='bridge'><mac address='00:1a:4a:16:01:12'/></interface>
  </devices>
"""
BASE = f"<domain type='kvm'><name>a</name>{BASE_DEVICES}</domain>"

SAME_DIGEST = [
    pytest.param(BASE.replace("\n    ", "\n\t"), id="indentation"),
    pytest.param(BASE.replace("type='file' device='disk'", 'device="disk" type="file"'),
                 id="attribute-order-and-quotes"),
    pytest.param(BASE.replace("<devices>", "<devices><!-- hot-plugged -->"), id="comment"),
    pytest.param(BASE.replace("<name>a</name>", "<name>b</name><memory>1</memory>"),
                 id="change-outside-devices"),
    pytest.param(f"<domstatus><devices/><domain>{BASE_DEVICES}</domain></domstatus>",
                 id="same-devices-in-domstatus"),
    pytest.param(BASE.replace("<domain type='kvm'>",
                              "<domain type='kvm' xmlns:ovirt-vm='http://ovirt.org/vm/1.0'>"),
                 id="namespace-declared-on-root"),
]

OTHER_DIGEST = [
    pytest.param(BASE.replace("vda", "vdb"), id="attribute-value"),
    pytest.param(BASE.replace("</devices>", "<rng model='virtio'/></devices>"), id="added-device"),
    pytest.param(BASE.replace("<target dev='vda'", "serial<target dev='vda'"), id="text-content"),
    pytest.param(BASE.replace("<alias name='ua-6799f347-bd30-4a32-96bc-bea668053e0a'/>", ""),
                 id="alias-removed"),
]


@pytest.mark.parametrize("variant", SAME_DIGEST)
def test_devices_digest_ignores_formatting(variant):
    assert devices_digest(variant.encode()) == devices_digest(BASE.encode())


@pytest.mark.parametrize("variant", OTHER_DIGEST)
def test_devices_digest_changes_with_any_device(variant):
    assert devices_digest(variant.encode()) != devices_digest(BASE.encode())


def test_devices_digest_is_a_sha256_hex_and_refuses_other_roots():
    digest = devices_digest(BASE.encode())
    assert len(digest) == 64 and int(digest, 16) >= 0
    with pytest.raises(XmlError, match="<disk>"):
        devices_digest(b"<disk/>")
