"""oVirt metadata: found by namespace whatever the prefix, typed by VDSM's hints."""

from __future__ import annotations

import pytest

from monitor.domxml.metadata import read_typed
from monitor.domxml.parser import parse_domain
from monitor.model.domain import EMPTY_METADATA

VM_NS = "http://ovirt.org/vm/1.0"
TUNE_NS = "http://ovirt.org/vm/tune/1.0"


def metadata_of(corpus, relative: str):
    return parse_domain((corpus / "vdsm" / relative).read_bytes()).metadata


def synthetic(metadata_body: str) -> bytes:
    return (f"<domain><name>m</name><metadata>{metadata_body}</metadata>"
            "<devices/></domain>").encode()


# --- the corpus -------------------------------------------------------------------


@pytest.mark.corpus
def test_typed_vm_values(corpus):
    values = metadata_of(corpus, "vm_hibernated_390.xml").values
    assert values == {
        "clusterVersion": "4.2",
        "destroy_on_reboot": False,  # type="bool", written "False"
        "launchPaused": "false",  # no type hint: stays text
        "memGuaranteedSize": 1024,
        "minGuaranteedMemoryMb": 1024,
        "resumeBehavior": "auto_resume",
        "startTime": 1523801666.38,
    }
    assert isinstance(values["memGuaranteedSize"], int)
    assert isinstance(values["startTime"], float)


@pytest.mark.corpus
def test_device_entries_by_mac_and_by_disk_name(corpus):
    metadata = metadata_of(corpus, "vm_hibernated_390.xml")
    nic, disk = metadata.devices
    assert nic.attrs == {"mac_address": "00:1a:4a:16:10:5f"}
    assert nic.values == {"network": "ovirtmgmt", "specParams": {}, "vm_custom": {}}
    assert metadata.disk_entry("vda") is disk
    assert disk.values["guestName"] == "/dev/vda"
    assert disk.values["imageID"] == "4351c1d2-0d5e-469e-ab98-a0b31d7780e4"
    assert metadata.disk_entry("vdb") is None


@pytest.mark.corpus
def test_volume_chain_is_a_list_of_dicts(corpus):
    chain = metadata_of(corpus, "vm_hibernated_390.xml").disk_entry("vda").values["volumeChain"]
    assert [node["volumeID"] for node in chain] == [
        "0ad717a6-caac-450c-ae50-e41bc78a9ab5",
        "32f04728-7e05-4ef1-82e1-c9feb569587f",
    ]
    assert all(node["leaseOffset"] == 0 and isinstance(node["leaseOffset"], int)
               for node in chain)
    assert chain[1]["path"].endswith("/32f04728-7e05-4ef1-82e1-c9feb569587f")


@pytest.mark.corpus
def test_tune_qos_under_the_ns0_prefix(corpus):
    """vm_hibernated_390.xml writes <ns0:qos/> for the tune namespace: found by URI."""
    metadata = metadata_of(corpus, "vm_hibernated_390.xml")
    assert metadata != EMPTY_METADATA
    assert metadata.qos == {}


@pytest.mark.corpus
def test_unprefixed_children_of_an_engine_vm(corpus):
    metadata = metadata_of(corpus, "hostedengine_lease.xml")
    assert metadata.values == {
        "minGuaranteedMemoryMb": 2048,
        "clusterVersion": "4.2",
        "launchPaused": "false",
        "resumeBehavior": "auto_resume",
    }
    assert metadata.custom == {}
    assert metadata.disk_entry("vda").values["shared"] == "exclusive"
    assert metadata.devices[0].attrs == {"mac_address": "00:1a:4c:10:3f:15"}
    assert metadata.devices[0].values == {"custom": {}}


@pytest.mark.corpus
def test_custom_block_is_a_dict(corpus):
    custom = metadata_of(corpus, "vm_compat41.xml").custom
    assert sorted(custom) == [
        "device_0f60872b-599c-4c9f-9596-3245e5f248f6",
        "device_0f60872b-599c-4c9f-9596-3245e5f248f6device_3d6952d0-9074-4216-a837-7b09cf8c1334",
    ]
    assert all(value.startswith("VmDevice:{") for value in custom.values())


@pytest.mark.corpus
def test_compat41_device_ids_and_payload(corpus):
    metadata = metadata_of(corpus, "vm_compat41.xml")
    rng = [d for d in metadata.devices if d.attrs.get("devtype") == "rng"]
    assert rng[0].values["deviceId"] == "6fd96b61-ed99-4441-81c5-a011a701b136"
    floppy = metadata_of(corpus, "vm_sysprep_floppy.xml").disk_entry("fda")
    assert floppy.values == {"payload": {"file": "bogus"}}


@pytest.mark.corpus
def test_qos_only_and_no_metadata(corpus):
    only_qos = metadata_of(corpus, "domain.xml")  # <ovirt:qos/> under the tune URI
    assert (only_qos.values, only_qos.devices, only_qos.qos) == ({}, (), {})
    assert metadata_of(corpus, "vm_hosted_engine_42.xml") is EMPTY_METADATA


# --- synthetic cases --------------------------------------------------------------


def test_any_prefix_is_read_by_namespace_uri():
    data = synthetic(
        f"<ns0:vm xmlns:ns0='{VM_NS}'><ns0:memGuaranteedSize type='int'>512"
        "</ns0:memGuaranteedSize><ns0:device devtype='disk' name='sda'>"
        "<ns0:guestName>/dev/sda</ns0:guestName></ns0:device></ns0:vm>"
        f"<ns1:qos xmlns:ns1='{TUNE_NS}'><ns1:vcpuLimit>50</ns1:vcpuLimit></ns1:qos>"
    )
    metadata = parse_domain(data).metadata
    assert metadata.values == {"memGuaranteedSize": 512}
    assert metadata.disk_entry("sda").values == {"guestName": "/dev/sda"}
    assert metadata.qos == {"vcpuLimit": "50"}


def test_other_applications_metadata_is_ignored():
    data = synthetic(
        "<app:config xmlns:app='http://example.org/app'><app:x>1</app:x></app:config>"
        f"<v:vm xmlns:v='{VM_NS}'><v:a>1</v:a><o:b xmlns:o='http://example.org/o'>2</o:b></v:vm>"
    )
    assert parse_domain(data).metadata.values == {"a": "1"}
    assert parse_domain(synthetic("<app:config xmlns:app='http://e.org/a'/>")).metadata \
        is EMPTY_METADATA


def test_wrong_namespace_for_vm_is_not_ovirt():
    data = synthetic("<vm><memGuaranteedSize type='int'>1</memGuaranteedSize></vm>")
    assert parse_domain(data).metadata is EMPTY_METADATA


TYPED = [
    pytest.param("42", "int", 42, id="int"),
    pytest.param(" 42 ", "int", 42, id="int-with-spaces"),
    pytest.param("4.2", "int", "4.2", id="int-that-does-not-fit"),
    pytest.param("1.5", "float", 1.5, id="float"),
    pytest.param("fast", "float", "fast", id="float-that-does-not-fit"),
    pytest.param("true", "bool", True, id="bool-true"),
    pytest.param("FALSE", "bool", False, id="bool-any-case"),
    pytest.param("yes", "bool", "yes", id="bool-that-does-not-fit"),
    pytest.param("", "int", "", id="empty-int"),
    pytest.param("text", None, "text", id="no-hint"),
    pytest.param("7", "controller", "7", id="unknown-hint"),
]


@pytest.mark.parametrize(("text", "hint", "expected"), TYPED)
def test_read_typed(text, hint, expected):
    found = read_typed(text, hint)
    assert found == expected
    assert type(found) is type(expected)
