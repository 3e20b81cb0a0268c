"""The inventory document: checked on load, written back exactly by export."""

from __future__ import annotations

import copy
import json

import pytest

from monitor.errors import UsageError
from monitor.store import Store, dumps, export_document, load_document, read_document
from monitor.store.inventory import parse_document

VM_A = "0a000000-0000-4000-8000-000000000001"
VM_B = "0b000000-0000-4000-8000-000000000002"
VM_C = "0c000000-0000-4000-8000-000000000003"


def vm_entry(vm_id: str, **fields) -> dict:
    entry = {
        "definition": {}, "hash": None, "hash_time": None, "host": "host1", "id": vm_id,
        "last_error": None, "last_error_hash": None, "name": "vm-" + vm_id[:2], "status": "Up",
    }
    entry.update(fields)
    return entry


def device_entry(vm_id: str, device_id: str, **fields) -> dict:
    entry = {
        "address": {}, "alias": "", "custom_properties": {}, "device": "usb",
        "device_id": device_id, "host_device": None, "is_managed": False, "is_plugged": True,
        "is_readonly": False, "logical_name": None, "spec_params": {}, "type": "controller",
        "vm_id": vm_id,
    }
    entry.update(fields)
    return entry


def odd_document() -> dict:
    """Several VMs and values a normalizing store would rewrite (it must not)."""
    return {
        "vms": [
            vm_entry(VM_A, hash="8d3f", hash_time="2024-05-01T12:00:00Z",
                     definition={"memory_mib": 2048, "os": {"arch": "x86_64"}, "cpus": 2}),
            vm_entry(VM_B, host="host-2.example", status="Migration Source",
                     hash="", hash_time="2024-05-01T12:00:00.250000Z",
                     last_error_hash="beef", last_error="line 3: mismatched tag"),
            vm_entry(VM_C, host=None, status=None),
        ],
        "devices": [
            device_entry(VM_A, "1a000000-0000-4000-8000-000000000001", type="interface",
                         device="bridge", alias="ua-1a000000-0000-4000-8000-000000000001",
                         is_managed=True,
                         address={"type": "pci", "domain": "0x0000", "bus": "0x01",
                                  "slot": "0x03", "function": "0x0"},
                         spec_params={"mac_address": "52:54:00:AB:CD:EF", "inbound": {}},
                         custom_properties={"vnic": {"queues": [1, 2, 3], "on": True}}),
            device_entry(VM_A, "2a000000-0000-4000-8000-000000000002", type="disk",
                         device="lun", is_managed=True, is_plugged=False, is_readonly=True,
                         logical_name="/dev/sda",
                         spec_params={"lun_id": "360014051F2C9B1E0A7E4A8B9C0D1E2F3",
                                      "index": "0x1A", "ratio": 0.5}),
            device_entry(VM_A, "3a000000-0000-4000-8000-000000000003", type="hostdev",
                         device="pci", host_device="pci_0000_05_00_1",
                         spec_params={"uuid": "5F2A0000-AAAA-4BBB-8CCC-DDDDDDDDDDDD"}),
            device_entry(VM_B, "0b000000-0000-4000-8000-00000000000a", alias="usb",
                         spec_params={"index": 0, "model": "qemu-xhci"}),
        ],
    }


@pytest.fixture
def store(db_url):
    with Store.open(db_url) as opened:
        yield opened


def test_load_then_export_round_trips_exactly(store):
    document = odd_document()
    summary = load_document(store, copy.deepcopy(document))
    assert (summary.vms, summary.rows) == (3, 4)
    exported = export_document(store)
    assert exported == document
    assert dumps(exported) == dumps(document)


def test_load_replaces_only_the_listed_vms(store):
    load_document(store, odd_document())
    replacement = {
        "vms": [vm_entry(VM_A, name="renamed")],
        "devices": [device_entry(VM_A, "9a000000-0000-4000-8000-000000000009")],
    }
    load_document(store, replacement)
    exported = export_document(store)
    by_vm = {vm["id"]: vm for vm in exported["vms"]}
    assert by_vm[VM_A]["name"] == "renamed"
    assert [d["device_id"] for d in exported["devices"] if d["vm_id"] == VM_A] == [
        "9a000000-0000-4000-8000-000000000009"
    ]
    original = odd_document()
    assert by_vm[VM_B] == original["vms"][1]
    assert [d for d in exported["devices"] if d["vm_id"] == VM_B] == original["devices"][3:]


def test_export_of_some_vms(store):
    load_document(store, odd_document())
    exported = export_document(store, [VM_B, VM_C])
    assert [vm["id"] for vm in exported["vms"]] == [VM_B, VM_C]
    assert {d["vm_id"] for d in exported["devices"]} == {VM_B}


def test_export_sorts_vms_and_rows(store):
    document = odd_document()
    document["vms"].reverse()
    document["devices"].reverse()
    load_document(store, document)
    exported = export_document(store)
    assert exported == odd_document()


def test_left_out_fields_take_their_defaults_and_times_become_utc(store):
    load_document(store, {
        "vms": [{"id": VM_A, "name": "minimal", "hash_time": "2024-05-01T14:00:00+02:00"}],
        "devices": [{"device_id": "1a000000-0000-4000-8000-000000000001", "vm_id": VM_A,
                     "type": "balloon", "device": "memballoon"}],
    })
    exported = export_document(store)
    assert exported["vms"] == [vm_entry(VM_A, name="minimal", host=None, status=None,
                                        hash_time="2024-05-01T12:00:00Z")]
    assert exported["devices"] == [device_entry(
        VM_A, "1a000000-0000-4000-8000-000000000001", type="balloon", device="memballoon",
        is_managed=True)]


def test_a_bad_document_changes_nothing(store):
    load_document(store, odd_document())
    broken = odd_document()
    broken["vms"][0]["name"] = "changed"
    broken["devices"][2]["is_plugged"] = "yes"
    with pytest.raises(UsageError):
        load_document(store, broken)
    assert export_document(store) == odd_document()


_DELETE = object()


def _with(path: str, value):
    """The odd document with one value replaced (``path`` like ``devices.1.vm_id``)."""
    document = odd_document()
    *parents, last = path.split(".")
    target = document
    for step in parents:
        target = target[int(step)] if step.isdigit() else target[step]
    if value is _DELETE:
        del target[last if not last.isdigit() else int(last)]
    else:
        target[int(last) if last.isdigit() else last] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param([], "not an inventory document", id="not-an-object"),
        pytest.param({"devices": []}, "vms is missing", id="no-vms"),
        pytest.param({"vms": [], "rows": []}, "unknown top-level key 'rows'", id="top-level-typo"),
        pytest.param({"vms": {}}, "vms is not a list", id="vms-not-list"),
        pytest.param(_with("vms.1", "x"), "vms[1] is not an object", id="vm-not-object"),
        pytest.param(_with("vms.0.name", _DELETE), "vms[0]: name is missing", id="vm-no-name"),
        pytest.param(_with("vms.2.id", VM_C.upper()), "vms[2]: id is not a lower-case UUID",
                     id="vm-upper-id"),
        pytest.param(_with("vms.2.id", VM_A), f"vms[2]: duplicate id {VM_A}", id="vm-duplicate"),
        pytest.param(_with("vms.0.host", "qemu+ssh://h/system"), "vms[0]: host is not a host name",
                     id="host-uri"),
        pytest.param(_with("vms.0.hash_time", "2024-05-01T12:00:00"),
                     "vms[0]: hash_time has no UTC offset", id="naive-time"),
        pytest.param(_with("vms.0.hash_time", "yesterday"),
                     "vms[0]: hash_time is not an ISO 8601 time", id="bad-time"),
        pytest.param(_with("vms.0.definition", []), "vms[0]: definition is not an object",
                     id="definition-list"),
        pytest.param(_with("devices.3.device_id", "not-a-uuid"),
                     "devices[3]: device_id is not a lower-case UUID", id="device-id"),
        pytest.param(_with("devices.3.device_id", "0B000000-0000-4000-8000-00000000000A"),
                     "devices[3]: device_id is not a lower-case UUID", id="device-id-upper"),
        pytest.param(_with("devices.1.vm_id", "ff000000-0000-4000-8000-000000000000"),
                     "devices[1]: vm_id ff000000-0000-4000-8000-000000000000 is not among",
                     id="row-of-unlisted-vm"),
        pytest.param(_with("devices.1.device_id", "1a000000-0000-4000-8000-000000000001"),
                     "devices[1]: duplicate device_id", id="row-duplicate"),
        pytest.param(_with("devices.0.is_plugged", "true"),
                     "devices[0]: is_plugged is not true or false", id="bool-as-string"),
        pytest.param(_with("devices.0.address.bus", 1),
                     "devices[0]: address has a value that is not a string", id="address-number"),
        pytest.param(_with("devices.0.type", _DELETE), "devices[0]: type is missing",
                     id="row-no-type"),
        pytest.param(_with("devices.0.specParams", {}), "devices[0]: unknown field 'specParams'",
                     id="row-unknown-field"),
        pytest.param(_with("devices.2.logical_name", 7), "devices[2]: logical_name is not a string",
                     id="logical-name-number"),
    ],
)
def test_a_bad_document_names_the_bad_entry(document, message):
    with pytest.raises(UsageError) as failure:
        parse_document(document)
    assert message in str(failure.value)
    assert "\n" not in str(failure.value)


def test_the_odd_document_is_valid():
    inventory = parse_document(odd_document())
    assert [vm.id for vm in inventory.vms] == [VM_A, VM_B, VM_C]
    assert [len(inventory.rows[vm_id]) for vm_id in (VM_A, VM_B, VM_C)] == [3, 1, 0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b'{"vms": [', "not valid JSON: Expecting value at line 1 column 10",
                     id="truncated"),
        pytest.param(b"\xff\xfe{}", "not UTF-8 text", id="not-utf8"),
    ],
)
def test_read_document_errors_are_one_line(tmp_path, content, message):
    path = tmp_path / "inventory.json"
    path.write_bytes(content)
    with pytest.raises(UsageError) as failure:
        read_document(path)
    assert str(failure.value) == f"{path}: {message}"


def test_read_document_of_a_missing_file(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_document(tmp_path / "absent.json")


def test_dumps_sorts_keys_and_ends_with_a_newline():
    text = dumps({"vms": [{"name": "é", "id": "x"}], "devices": []})
    assert text.endswith("}\n")
    assert text.index('"devices"') < text.index('"vms"')
    assert text.index('"id"') < text.index('"name"')
    assert json.loads(text)["vms"][0]["name"] == "é"
