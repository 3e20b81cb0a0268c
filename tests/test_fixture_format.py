"""The recorded fixture format (docs/worker.md, "Recorded fixtures"): reading, refusing, writing, round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.errors import FixtureError
from monitor.hosts.fixture import read_fixture
from monitor.hosts.fixture_writer import FixtureWriter
from monitor.hosts.source import VmReport

VM_A = "aaaaaaaa-0000-4000-8000-000000000001"
VM_B = "bbbbbbbb-0000-4000-8000-000000000002"
XML_A = b"<domain type='test'>\n  <uuid>AAAAAAAA-0000-4000-8000-000000000001</uuid>\n</domain>"


def put(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def up(hash_value: str | None = "h1") -> dict:
    return {"vms": {VM_A: {"status": "Up", "hash": hash_value}}}


def test_ticks_in_numeric_order_hosts_in_name_order(tmp_path):
    for tick in ("0010", "0002", "00003"):
        for host in ("zeta", "alpha", "mid.host-1"):
            put(tmp_path, f"ticks/{tick}/{host}.json", json.dumps(up()))
    put(tmp_path, "ticks/.gitkeep", "")
    fixture = read_fixture(tmp_path)
    assert [tick.number for tick in fixture.ticks] == [2, 3, 10]
    assert [tick.path.name for tick in fixture.ticks] == ["0002", "00003", "0010"]
    assert fixture.ticks[0].hosts == ("alpha", "mid.host-1", "zeta")
    assert fixture.hosts == ("alpha", "mid.host-1", "zeta")


def test_inventory_and_expected_paths(tmp_path):
    put(tmp_path, "ticks/0001/h.json", json.dumps(up()))
    bare = read_fixture(tmp_path)
    assert bare.inventory_path is None
    assert bare.expected_path == tmp_path / "expected.json"
    assert not bare.has_expected
    put(tmp_path, "inventory.json", '{"vms": [], "devices": []}')
    put(tmp_path, "expected.json", '{"vms": [], "devices": []}')
    full = read_fixture(tmp_path)
    assert full.inventory_path == tmp_path / "inventory.json"
    assert full.has_expected


def test_answers_reports_errors_and_locks(tmp_path):
    put(tmp_path, "ticks/0001/ok.json", json.dumps(
        {"vms": {VM_A.upper(): {"status": "Up", "hash": "h1"}, VM_B: {"status": "Paused"}}}))
    put(tmp_path, "ticks/0001/down.json", '{"error": "unreachable"}')
    put(tmp_path, "ticks/0001/busy.json", json.dumps({"error": "refused", **up()}))
    put(tmp_path, "ticks/0001/locks.json", json.dumps([VM_B.upper()]))
    tick = read_fixture(tmp_path).ticks[0]
    assert tick.hosts == ("busy", "down", "ok")
    assert tick.locks == frozenset({VM_B})
    ok = tick.answer("ok")
    assert ok.error is None
    assert ok.reports == {VM_A: VmReport("Up", "h1"), VM_B: VmReport("Paused", None)}
    assert ok.xml_path(VM_A) == tmp_path / "ticks/0001/ok" / f"{VM_A}.xml"
    assert tick.answer("down").error == "unreachable" and tick.answer("down").reports == {}
    assert tick.answer("busy").error == "refused"
    assert tick.answer("busy").reports == {VM_A: VmReport("Up", "h1")}
    assert tick.answer("absent") is None


@pytest.mark.parametrize("entry", [
    pytest.param({"status": "Up"}, id="hash-missing"),
    pytest.param({"status": "Up", "hash": None}, id="hash-null"),
    pytest.param({"status": "Up", "hash": ""}, id="hash-empty"),
])
def test_hash_not_yet_reads_as_none(tmp_path, entry):
    put(tmp_path, "ticks/0001/h.json", json.dumps({"vms": {VM_A: entry}}))
    assert read_fixture(tmp_path).ticks[0].answer("h").reports == {VM_A: VmReport("Up", None)}


@pytest.mark.parametrize("relative, content, message", [
    pytest.param("ticks/1/h.json", json.dumps(up()), "4 or more digits", id="tick-3-digits-short"),
    pytest.param("ticks/first/h.json", json.dumps(up()), "4 or more digits", id="tick-not-number"),
    pytest.param("ticks/0001", "a file", "4 or more digits", id="tick-is-a-file"),
    pytest.param("ticks/0001/h.json", "{not json", "not valid JSON", id="malformed-json"),
    pytest.param("ticks/0001/h.json", '{"error": "exploded"}', "unknown error 'exploded'",
                 id="unknown-error"),
    pytest.param("ticks/0001/h.json", '["Up"]', "expected", id="not-an-object"),
    pytest.param("ticks/0001/h.json", '{"vms": {}, "extra": 1}', "unknown keys", id="extra-key"),
    pytest.param("ticks/0001/h.json", '{"vms": {"not-a-uuid": {"status": "Up"}}}',
                 "not a UUID", id="vm-id-not-uuid"),
    pytest.param("ticks/0001/h.json", json.dumps({"vms": {VM_A: {"hash": "h"}}}),
                 "status", id="status-missing"),
    pytest.param("ticks/0001/h.json", json.dumps({"vms": {VM_A: {"status": "Up", "hash": 7}}}),
                 "hash must be", id="hash-not-string"),
    pytest.param("ticks/0001/h.json", json.dumps({"error": "timeout", **up()}),
                 "reports no vms", id="timeout-with-vms"),
    pytest.param("ticks/0001/bad host.json", json.dumps(up()), "not a host name",
                 id="host-name-with-space"),
    pytest.param("ticks/0001/locks.json", '{"vms": []}', "JSON list", id="locks-not-list"),
    pytest.param("ticks/0001/locks.json", '["nope"]', "not a UUID", id="locks-not-uuid"),
])
def test_unusable_fixture_is_one_line_naming_the_file(tmp_path, relative, content, message):
    put(tmp_path, "ticks/0002/ok.json", json.dumps(up()))
    bad = put(tmp_path, relative, content)
    with pytest.raises(FixtureError) as raised:
        read_fixture(tmp_path)
    text = str(raised.value)
    assert message in text
    assert str(bad) in text or str(bad.parent) in text
    assert "\n" not in text


def test_duplicate_tick_number_is_refused(tmp_path):
    put(tmp_path, "ticks/0001/h.json", json.dumps(up()))
    put(tmp_path, "ticks/00001/h.json", json.dumps(up()))
    with pytest.raises(FixtureError, match="tick 1 is also"):
        read_fixture(tmp_path)


def test_directory_without_ticks_is_not_a_fixture(tmp_path):
    with pytest.raises(FixtureError, match="no ticks/ folder"):
        read_fixture(tmp_path)


def test_writer_json_form_and_verbatim_xml(tmp_path):
    writer = FixtureWriter(tmp_path)
    writer.write_inventory({"vms": [{"name": "a", "id": VM_A}], "devices": []})
    writer.write_tick(1, "host-a", {VM_A: VmReport("Up", "h1")}, {VM_A.upper(): XML_A})
    inventory = (tmp_path / "inventory.json").read_text()
    assert inventory == json.dumps(
        {"devices": [], "vms": [{"id": VM_A, "name": "a"}]}, sort_keys=True, indent=2) + "\n"
    assert (tmp_path / "ticks/0001/host-a.json").read_text().endswith("}\n")
    assert (tmp_path / f"ticks/0001/host-a/{VM_A}.xml").read_bytes() == XML_A


def test_writer_round_trips_through_the_reader(tmp_path):
    writer = FixtureWriter(tmp_path)
    writer.write_tick(1, "a", {VM_A: VmReport("Up", "h1"), VM_B: VmReport("Paused", None)},
                      {VM_A: XML_A}, locks={VM_B})
    writer.write_tick(1, "b", "unreachable", locks={VM_A})
    writer.write_tick(12, "a", {VM_A: VmReport("Up", "h2")}, error="refused")
    writer.write_tick(12, "b", "timeout")
    writer.write_expected({"vms": [], "devices": []})
    fixture = read_fixture(tmp_path)
    first, last = fixture.ticks
    assert (first.number, last.number) == (1, 12)
    assert first.answer("a").reports == {VM_A: VmReport("Up", "h1"), VM_B: VmReport("Paused", None)}
    assert first.answer("a").xml_path(VM_A).read_bytes() == XML_A
    assert first.answer("b").error == "unreachable"
    assert first.locks == frozenset({VM_A, VM_B})
    assert last.locks == frozenset()
    assert last.answer("a").error == "refused"
    assert last.answer("a").reports == {VM_A: VmReport("Up", "h2")}
    assert last.answer("b").error == "timeout"
    assert fixture.has_expected


@pytest.mark.parametrize("host, reports, kwargs, message", [
    pytest.param("h", "exploded", {}, "unknown host error", id="unknown-error"),
    pytest.param("h", {VM_A: VmReport("Up", "h")}, {"error": "timeout"}, "reports no vms",
                 id="timeout-with-reports"),
    pytest.param("qemu:///system", "timeout", {}, "cannot be a host name", id="uri-as-host"),
    pytest.param("locks", "timeout", {}, "cannot be a host name", id="locks-as-host"),
    pytest.param("h", {"nope": VmReport("Up", "h")}, {}, "not a UUID", id="vm-id-not-uuid"),
])
def test_writer_refuses_what_the_reader_would(tmp_path, host, reports, kwargs, message):
    with pytest.raises(FixtureError, match=message):
        FixtureWriter(tmp_path).write_tick(1, host, reports, **kwargs)
