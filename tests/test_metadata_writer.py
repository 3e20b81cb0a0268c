"""The oVirt metadata writer: typed values, device entries keyed as the host agent looks
them up, and a replacement that keeps everything that is not ours."""

from __future__ import annotations

import copy
import uuid

import pytest
from lxml import etree

from monitor.domxml.builder import build_domain_xml
from monitor.domxml.metadata_writer import (
    OUR_TAGS,
    ovirt_metadata_element,
    replace_ovirt_metadata,
    write_typed,
)
from monitor.domxml.namespaces import OVIRT_VM
from monitor.errors import DefinitionError, XmlError
from monitor.model.rows import DeviceRow, VmRecord

VM_ID = "3f0e1a52-8c1d-4e0b-9d5a-2b7c6e4f8a10"
NS = {"v": OVIRT_VM}


def ident(name: str) -> str:
    return str(uuid.uuid5(uuid.UUID(VM_ID), name))


def vm_record(**definition) -> VmRecord:
    return VmRecord(id=VM_ID, name="md", definition=definition)


def row(type: str, device: str, name: str, **fields) -> DeviceRow:
    return DeviceRow(device_id=ident(name), vm_id=VM_ID, type=type, device=device, **fields)


def sample_rows() -> list[DeviceRow]:
    return [
        row("disk", "disk", "root", spec_params={"pool_id": ident("p"), "domain_id": ident("d"),
            "image_id": ident("i"), "volume_id": ident("v")}, logical_name="/dev/vda"),
        row("disk", "cdrom", "cd"),
        row("interface", "bridge", "nic", spec_params={"mac_address": "00:1a:4a:16:01:57",
            "network": "blue"}, custom_properties={"queues": "4"}),
        row("mdev", "vfio", "vgpu", host_device="mdev_4b20d080_1b54_4048_85b3_a6a62d165c01",
            spec_params={"mdev_type": "nvidia-11"}),
        row("watchdog", "i6300esb", "wd", custom_properties={"hint": "x"}),
        row("channel", "unix", "found", is_managed=False, custom_properties={"x": "y"}),
    ]


def entries(metadata: etree._Element) -> list[dict[str, str]]:
    return [dict(entry.attrib) for entry in metadata.iterfind("v:vm/v:device", NS)]


# --- values and entries --------------------------------------------------------------


@pytest.mark.parametrize(
    "value, hint, text",
    [
        pytest.param(True, "bool", "true", id="true"),
        pytest.param(False, "bool", "false", id="false"),
        pytest.param(3, "int", "3", id="int"),
        pytest.param(-7, "int", "-7", id="negative-int"),
        pytest.param(0.25, "float", "0.25", id="float"),
        pytest.param(1521453447.17, "float", "1521453447.17", id="float-time"),
        pytest.param("4.2", None, "4.2", id="string-stays-untyped"),
        pytest.param("", None, None, id="empty-string"),
    ],
)
def test_values_carry_the_agents_type_hints(value, hint, text):
    parent = etree.Element("vm")
    element = write_typed(parent, OVIRT_VM, "key", value)
    assert (element.get("type"), element.text or None) == (hint, text)


@pytest.mark.parametrize("value", [None, [1], {"a": 1}], ids=["none", "list", "dict"])
def test_values_of_other_types_are_refused(value):
    with pytest.raises(DefinitionError, match="unsupported type"):
        write_typed(etree.Element("vm"), OVIRT_VM, "key", value)


def test_device_entries_are_keyed_the_way_the_agent_looks_them_up():
    metadata = ovirt_metadata_element(vm_record(), sample_rows())
    assert entries(metadata) == [
        {"devtype": "disk", "name": "vda"},
        {"mac_address": "00:1a:4a:16:01:57"},
        {"devtype": "hostdev", "uuid": "4b20d080-1b54-4048-85b3-a6a62d165c01"},
        {"devtype": "watchdog", "name": "ua-" + ident("wd")},
    ]  # no entry: a CD-ROM with nothing to say, an unmanaged row (no alias to key it)


@pytest.mark.parametrize(
    "attrs, path, expected",
    [
        pytest.param({"devtype": "disk"}, "v:imageID", ident("i"), id="disk-image"),
        pytest.param({"devtype": "disk"}, "v:guestName", "/dev/vda", id="disk-guest-name"),
        pytest.param({"mac_address": "00:1a:4a:16:01:57"}, "v:network", "blue", id="nic-network"),
        pytest.param({"mac_address": "00:1a:4a:16:01:57"}, "v:custom/v:queues", "4",
                     id="nic-custom"),
        pytest.param({"devtype": "hostdev"}, "v:mdevType", "nvidia-11", id="mdev-type"),
        pytest.param({"devtype": "watchdog"}, "v:custom/v:hint", "x", id="other-custom"),
    ],
)
def test_device_entry_values(attrs, path, expected):
    metadata = ovirt_metadata_element(vm_record(), sample_rows())
    for entry in metadata.iterfind("v:vm/v:device", NS):
        if all(entry.get(k) == v for k, v in attrs.items()):
            assert entry.findtext(path, namespaces=NS) == expected
            return
    raise AssertionError(f"no entry {attrs}")


def test_vm_values_are_sorted_then_devices_then_custom():
    metadata = ovirt_metadata_element(
        vm_record(metadata={"zeta": 1, "alpha": "a"}, custom_properties={"sap": "true"}),
        sample_rows(),
    )
    names = [etree.QName(child).localname for child in metadata.find("v:vm", NS)]
    values = names[: names.index("device")]
    assert values == sorted(values) and "alpha" in values and "zeta" in values
    assert names[-1] == "custom" and set(names[len(values):-1]) == {"device"}


# --- replacing our part of an existing document --------------------------------------

FOREIGN = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- written by someone else -->
<?other-tool keep="this"?>
<domain type="kvm" xmlns:ext="http://example.com/ext">
  <name>md</name>
  <uuid>{VM_ID}</uuid>
  <title>a title</title>
  <metadata>
    <!-- keep this comment -->
    <app:settings xmlns:app="http://example.com/app/1.0"><app:mode level="3">fast</app:mode></app:settings>
    <?app-pi inside metadata?>
    <ovirt-tune:qos xmlns:ovirt-tune="http://ovirt.org/vm/tune/1.0"><ovirt-tune:old>1</ovirt-tune:old></ovirt-tune:qos>
    <plain>no namespace at all</plain>
    <ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0"><ovirt-vm:stale>yes</ovirt-vm:stale><clusterVersion>4.1</clusterVersion></ovirt-vm:vm>
    <lookalike:vm xmlns:lookalike="http://ovirt.org/vm/1.0/not-ours">mixed <b>content</b> tail</lookalike:vm>
  </metadata>
  <memory unit="KiB">1048576</memory>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
  <ext:extension ext:attr="1"/>
</domain>
<!-- after the root -->
""".encode()


def without_ours(xml: bytes) -> str:
    """The document with our two elements removed, in canonical form (comments kept)."""
    root = etree.fromstring(xml)
    tree = root.getroottree()
    for element in list(root.iterfind("metadata/*")):
        if element.tag in OUR_TAGS:
            element.getparent().remove(element)
    return etree.canonicalize(tree, with_comments=True, strip_text=True)


def ours(xml: bytes) -> list[str]:
    root = etree.fromstring(xml)
    return [etree.canonicalize(copy.deepcopy(el), strip_text=True)
            for el in root.iterfind("metadata/*") if el.tag in OUR_TAGS]


def test_replacement_keeps_everything_that_is_not_ours():
    replaced = replace_ovirt_metadata(FOREIGN, vm_record(), sample_rows())
    assert without_ours(replaced) == without_ours(FOREIGN)
    text = replaced.decode()
    for kept in ("written by someone else", "<?other-tool", "<?app-pi inside metadata?>",
                 "keep this comment", "after the root", "mixed <b>content</b> tail"):
        assert kept in text, kept
    assert "stale" not in text and "4.1" not in text and "ovirt-tune:old" not in text


def test_replacement_writes_what_the_builder_writes():
    vm, rows = vm_record(qos={"vcpuLimit": 40}), sample_rows()
    replaced = replace_ovirt_metadata(FOREIGN, vm, rows)
    assert ours(replaced) == ours(build_domain_xml(vm, rows))


def test_replacement_takes_the_place_of_the_first_of_ours():
    replaced = etree.fromstring(replace_ovirt_metadata(FOREIGN, vm_record(), sample_rows()))
    tags = [child.tag for child in replaced.find("metadata") if isinstance(child.tag, str)]
    assert tags == ["{http://example.com/app/1.0}settings", *sorted(OUR_TAGS, reverse=True),
                    "plain", "{http://ovirt.org/vm/1.0/not-ours}vm"]


def test_replacing_twice_gives_the_same_bytes():
    once = replace_ovirt_metadata(FOREIGN, vm_record(), sample_rows())
    assert replace_ovirt_metadata(once, vm_record(), sample_rows()) == once


def test_replacing_with_new_rows_changes_only_ours():
    once = replace_ovirt_metadata(FOREIGN, vm_record(), sample_rows())
    again = replace_ovirt_metadata(once, vm_record(metadata={"clusterVersion": "4.4"}), [])
    assert without_ours(again) == without_ours(FOREIGN)
    assert entries(etree.fromstring(again).find("metadata")) == []
    version = etree.fromstring(again).findtext("metadata/v:vm/v:clusterVersion", namespaces=NS)
    assert version == "4.4"


@pytest.mark.corpus
def test_metadata_is_created_after_the_identity_when_absent(domain_rng):
    rows = sample_rows()[:3]
    built = build_domain_xml(vm_record(), rows)
    root = etree.fromstring(built)
    root.remove(root.find("metadata"))
    replaced = replace_ovirt_metadata(etree.tostring(root), vm_record(), rows)
    children = [child.tag for child in etree.fromstring(replaced)]
    assert children[:3] == ["name", "uuid", "metadata"]
    assert ours(replaced) == ours(built)
    assert domain_rng.validate(etree.fromstring(replaced)), str(domain_rng.error_log.last_error)


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["vm_sysprep_floppy.xml", "hostedengine_lease.xml",
                                  "domain_disk_block.xml", "active-merge/00-before.xml"])
def test_engine_and_agent_documents_keep_their_other_parts(corpus, name):
    original = (corpus / "vdsm" / name).read_bytes()
    replaced = replace_ovirt_metadata(original, vm_record(), sample_rows())
    assert without_ours(replaced) == without_ours(original)
    assert replace_ovirt_metadata(replaced, vm_record(), sample_rows()) == replaced


@pytest.mark.parametrize(
    "document, message",
    [
        pytest.param(b"<domain><name>x</name>", "malformed", id="malformed"),
        pytest.param(b'<!DOCTYPE domain [<!ENTITY x "y">]><domain><name>&x;</name></domain>',
                     "DOCTYPE", id="doctype-with-entity"),
        pytest.param(b"<!DOCTYPE domain><domain/>", "DOCTYPE", id="bare-doctype"),
        pytest.param(b"<network/>", "not <domain>", id="not-a-domain"),
    ],
)
def test_hostile_or_wrong_documents_are_one_xml_error(document, message):
    with pytest.raises(XmlError, match=message) as error:
        replace_ovirt_metadata(document, vm_record(), [])
    assert "\n" not in str(error.value)
