"""``monitor db init``, ``monitor load`` and ``monitor export`` through the real CLI."""

from __future__ import annotations

import json

import pytest

from monitor.cli import main
from monitor.store import dumps
from monitor.store.migrate import head_revision

VM_A = "0a000000-0000-4000-8000-000000000001"
VM_B = "0b000000-0000-4000-8000-000000000002"

DOCUMENT = {
    "vms": [
        {"definition": {}, "hash": "abc", "hash_time": "2024-05-01T12:00:00Z", "host": "host1",
         "id": VM_A, "last_error": None, "last_error_hash": None, "name": "a", "status": "Up"},
        {"definition": {"memory_mib": 512}, "hash": None, "hash_time": None, "host": "host1",
         "id": VM_B, "last_error": None, "last_error_hash": None, "name": "b", "status": "Down"},
    ],
    "devices": [
        {"address": {"type": "pci", "slot": "0x05"},
         "alias": "ua-1a000000-0000-4000-8000-000000000001", "custom_properties": {},
         "device": "disk", "device_id": "1a000000-0000-4000-8000-000000000001",
         "host_device": None, "is_managed": True, "is_plugged": True, "is_readonly": False,
         "logical_name": "vda", "spec_params": {}, "type": "disk", "vm_id": VM_A},
        {"address": {}, "alias": "", "custom_properties": {}, "device": "memballoon",
         "device_id": "2b000000-0000-4000-8000-000000000002", "host_device": None,
         "is_managed": True, "is_plugged": True, "is_readonly": False, "logical_name": None,
         "spec_params": {"model": "virtio"}, "type": "balloon", "vm_id": VM_B},
    ],
}


@pytest.fixture
def inventory_file(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text(dumps(DOCUMENT))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_db_init_creates_then_leaves_the_schema(db_url, capsys):
    head = head_revision()  # the newest migration under monitor/store/migrations/versions
    assert head is not None
    code, out, err = run(capsys, "db", "init", "--db", db_url)
    assert (code, err) == (0, "")
    assert out.startswith(f"schema created at revision {head}")
    code, out, _ = run(capsys, "db", "init", "--db", db_url)
    assert code == 0 and out.startswith(f"schema already at revision {head}")


def test_load_then_export_gives_the_file_back(db_url, capsys, inventory_file):
    code, out, err = run(capsys, "load", str(inventory_file), "--db", db_url)
    assert (code, err) == (0, "")
    assert out.startswith("loaded 2 VMs and 2 device rows")
    assert out.count("\n") == 1
    code, out, err = run(capsys, "export", "--db", db_url)
    assert (code, err) == (0, "")
    assert out == inventory_file.read_text()


def test_export_one_vm_to_a_file(db_url, capsys, inventory_file, tmp_path):
    run(capsys, "load", str(inventory_file), "--db", db_url)
    out_file = tmp_path / "one.json"
    code, out, _ = run(capsys, "export", "--vm", VM_B.upper(), "--out", str(out_file),
                       "--db", db_url)
    assert (code, out) == (0, "")
    exported = json.loads(out_file.read_text())
    assert [vm["id"] for vm in exported["vms"]] == [VM_B]
    assert exported["devices"] == DOCUMENT["devices"][1:]


@pytest.mark.parametrize(
    ("argv", "exit_code", "message"),
    [
        pytest.param(["export", "--vm", "ff000000-0000-4000-8000-000000000000"], 2,
                     "no VM with id ff000000-0000-4000-8000-000000000000", id="unknown-vm"),
        pytest.param(["export", "--vm", "nope"], 2, "--vm 'nope' is not a UUID", id="not-uuid"),
        pytest.param(["load", "/nonexistent/inventory.json"], 2, "no such file", id="no-file"),
    ],
)
def test_usage_errors_are_one_line(db_url, capsys, argv, exit_code, message):
    code, out, err = run(capsys, *argv, "--db", db_url)
    assert code == exit_code
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_bad_json_file_is_one_line_and_loads_nothing(db_url, capsys, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"vms": [}')
    code, _, err = run(capsys, "load", str(path), "--db", db_url)
    assert code != 0
    assert err == f"monitor: error: {path}: not valid JSON: Expecting value at line 1 column 10\n"


def test_a_bad_entry_names_the_file_and_the_entry(db_url, capsys, tmp_path):
    broken = json.loads(dumps(DOCUMENT))
    broken["devices"][1]["device_id"] = "2B000000-0000-4000-8000-000000000002"
    path = tmp_path / "upper.json"
    path.write_text(json.dumps(broken))
    code, _, err = run(capsys, "load", str(path), "--db", db_url)
    assert code == 2
    assert err.startswith(f"monitor: error: {path}: devices[1]: device_id is not a lower-case UUID")
    assert err.count("\n") == 1
    code, out, _ = run(capsys, "export", "--db", db_url)
    assert json.loads(out) == {"devices": [], "vms": []}


def test_an_unreachable_database_is_one_line(capsys, inventory_file):
    code, _, err = run(capsys, "load", str(inventory_file),
                       "--db", "postgresql://postgres@127.0.0.1:1/test")
    assert code == 5
    assert err.startswith("monitor: error: database postgresql+psycopg://postgres@127.0.0.1:1/test")
    assert err.count("\n") == 1
