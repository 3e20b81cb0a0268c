"""Hostile JSON and endless files: one line and the documented exit code, never a traceback.

Every JSON input goes through ``monitor.inputfile.read_json``: ``monitor load``'s
document (exit 2), a fixture's ``<host>.json`` and ``locks.json`` (exit 4), its
``inventory.json`` and ``expected.json``. Files are read with their limit, so
``/dev/zero`` and a 50 MB Domain XML cost the limit, not their size (checked in a
child process whose address space is capped, where reading them whole would fail).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.domxml.metadata import read_typed
from monitor.errors import FixtureError, MonitorError, UsageError
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import ReplayHostSource
from monitor.inputfile import MAX_JSON_DEPTH, parse_json
from monitor.settings import Limits
from monitor.store.inventory import dumps, read_document

VM = "aaaaaaaa-0000-4000-8000-000000000001"


def vm_entry(**fields) -> str:
    entry = {"id": VM, "name": "a", **fields}
    return json.dumps({"vms": [entry]})


HOSTILE = [
    pytest.param("[" * 100_000 + "]" * 100_000, "nested deeper than", id="nested-100000"),
    pytest.param("[" * 500 + "]" * 500, f"nested deeper than {MAX_JSON_DEPTH}", id="nested-500"),
    pytest.param('{"vms": [{"id": "%s", "name": "a", "definition": {"n": %s}}]}'
                 % (VM, "9" * 4301), "integer", id="integer-4301-digits"),
    pytest.param('{"vms": [{"id": "%s", "name": "\\ud800"}]}' % VM, "lone surrogate",
                 id="lone-surrogate-value"),
    pytest.param('{"vms": [{"id": "%s", "name": "a", "definition": {"\\udfff": 1}}]}' % VM,
                 "lone surrogate", id="lone-surrogate-key"),
    pytest.param('{"vms": [{"id": "%s", "name": "a", "definition": {"x": NaN}}]}' % VM,
                 "NaN is not a JSON number", id="nan"),
    pytest.param('{"vms": [{"id": "%s", "name": "a", "definition": {"x": -Infinity}}]}' % VM,
                 "-Infinity is not a JSON number", id="infinity"),
    pytest.param('{"vms": [{"id": "%s", "name": "a", "definition": {"x": 1e999}}]}' % VM,
                 "too large for a float", id="overflowing-float"),
    pytest.param(b"\x00" * 4096, "a NUL byte at offset 0", id="nul-bytes"),
]
# An inventory's hash_time at the calendar's edges (UTC moves it past year 1 or 9999).
HASH_TIMES = [
    pytest.param(vm_entry(hash_time="0001-01-01T00:00:00+01:00"), "outside the calendar",
                 id="hash-time-before-year-1"),
    pytest.param(vm_entry(hash_time="9999-12-31T23:59:59-01:00"), "outside the calendar",
                 id="hash-time-after-year-9999"),
    pytest.param(vm_entry(hash_time="10000-01-01T00:00:00Z"), "not an ISO 8601 time",
                 id="hash-time-year-10000"),
]


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(("content", "message"), HOSTILE + HASH_TIMES)
def test_monitor_load_refuses_in_one_line_with_exit_2(tmp_path, capsys, content, message):
    path = _write(tmp_path, "inventory.json", content)
    code = main(["load", str(path), "--db", f"sqlite:///{tmp_path / 'monitor.db'}"])
    captured = capsys.readouterr()
    assert code == UsageError.exit_code == 2
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith(f"monitor: error: {path}: ")
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(("content", "message"), HOSTILE)
@pytest.mark.parametrize("name", ["ticks/0001/h.json", "ticks/0001/locks.json"])
def test_a_fixture_file_refuses_in_one_line(tmp_path, name, content, message):
    _write(tmp_path, "ticks/0001/h.json", json.dumps({"vms": {}}))
    bad = _write(tmp_path, name, content)
    with pytest.raises(FixtureError) as refused:
        read_fixture(tmp_path)
    text = str(refused.value)
    assert text.startswith(f"{bad}: ") and message in text and "\n" not in text


def test_replay_of_such_a_fixture_exits_4_in_one_line(tmp_path, capsys):
    _write(tmp_path, "ticks/0001/h.json", '{"vms": {"%s": {"status": NaN}}}' % VM)
    code = main(["replay", str(tmp_path), "--db", "sqlite://"])
    captured = capsys.readouterr()
    assert code == FixtureError.exit_code == 4
    assert captured.err.count("\n") == 1 and "NaN is not a JSON number" in captured.err


def test_inventory_and_expected_of_a_fixture_go_through_the_same_reader(tmp_path):
    _write(tmp_path, "ticks/0001/h.json", json.dumps({"vms": {}}))
    _write(tmp_path, "inventory.json", "[" * 100_000)
    with pytest.raises(UsageError, match="nested deeper than"):
        read_document(read_fixture(tmp_path).inventory_path)


def test_what_json_allows_still_reads():
    document = parse_json(json.dumps({"a": [1, 2.5, "\u00e9\U0001f600", None, True],
                                      "deep": [[[[1]]]], "big": 10 ** 4000}).encode())
    assert document["big"] == 10 ** 4000 and document["a"][2] == "\u00e9\U0001f600"
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(nested.encode()) is not None


def test_nan_is_never_exported_as_invalid_json():
    with pytest.raises(MonitorError, match="not a JSON number"):
        dumps({"vms": [{"definition": {"x": math.nan}}]})
    # A VDSM float hint on "nan" or "inf" keeps the text: it never becomes a number.
    assert [read_typed(text, "float") for text in ("nan", "inf", "-Infinity", "1.5")] == \
        ["nan", "inf", "-Infinity", 1.5]


# --- endless and oversized files ------------------------------------------------------

CAP_BYTES = 1024 * 1024 * 1024  # address space of the child: far below reading /dev/zero


def _capped_child(code: str) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, preexec_fn=cap, env={**os.environ, "PYTHONPATH": "."},
                          cwd=Path(__file__).resolve().parent.parent)


def test_monitor_load_of_dev_zero_is_refused_at_once(tmp_path):
    done = _capped_child(
        "import sys; from monitor.cli import main; "
        f"sys.exit(main(['load', '/dev/zero', '--db', 'sqlite:///{tmp_path}/m.db']))")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == "monitor: error: /dev/zero: a NUL byte at offset 0: not JSON text\n"


def test_a_fixture_file_that_is_dev_zero_is_refused_at_once(tmp_path):
    _write(tmp_path, "ticks/0001/h.json", json.dumps({"vms": {}}))
    (tmp_path / "ticks/0001/locks.json").symlink_to("/dev/zero")
    done = _capped_child(
        "from monitor.hosts.fixture import read_fixture\n"
        "from monitor.errors import FixtureError\n"
        f"try:\n    read_fixture({str(tmp_path)!r})\n"
        "except FixtureError as error:\n    print(error)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("locks.json: a NUL byte at offset 0: not JSON text")


@pytest.mark.parametrize("target", ["dev-zero", "50-mb-file"])
def test_a_fixture_xml_is_read_only_up_to_its_limit(tmp_path, target):
    limits = Limits()
    _write(tmp_path, "ticks/0001/h.json", json.dumps({"vms": {VM: {"status": "Up",
                                                                    "hash": "h"}}}))
    xml = tmp_path / f"ticks/0001/h/{VM}.xml"
    xml.parent.mkdir(parents=True)
    if target == "dev-zero":
        xml.symlink_to("/dev/zero")
    else:
        with open(xml, "wb") as handle:  # sparse: 50 MB on paper, nothing on disk
            handle.truncate(50 * 1024 * 1024)
    source = ReplayHostSource(read_fixture(tmp_path).ticks[0], "h")  # the default limits
    dumped = source.dump([VM])
    assert len(dumped[VM]) == limits.max_xml_bytes + 1  # enough for the parse to refuse it


@pytest.mark.parametrize("edge", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
def test_a_hash_time_on_the_calendars_edge_loads_and_exports_on_both_databases(
        db_url, tmp_path, capsys, edge):
    path = _write(tmp_path, "inventory.json", vm_entry(hash_time=edge))
    assert main(["load", str(path), "--db", db_url]) == 0
    assert main(["export", "--db", db_url]) == 0
    exported = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert exported["vms"][0]["hash_time"] == edge
