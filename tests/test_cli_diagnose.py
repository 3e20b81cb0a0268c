"""``monitor diagnose``: from the XML the engine kept, or a file; text and JSON; one-line errors."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES
from monitor.cli import main

NIC = FIXTURES / "nic-unplug-replug"


@pytest.fixture
def replayed(db_url, capsys):
    assert main(["replay", str(NIC), "--db", db_url]) == 0
    capsys.readouterr()
    assert main(["export", "--db", db_url]) == 0
    vm_id = json.loads(capsys.readouterr().out)["vms"][0]["id"]
    return db_url, vm_id


def test_diagnose_reads_the_last_fetched_xml(replayed, capsys):
    url, vm_id = replayed
    assert main(["diagnose", vm_id, "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("from the XML fetched at ")
    assert "17 matched, 0 new unmanaged, 1 foreign, 0 in conflict" in out
    assert "writes: updates 0, inserts 0, deletes 0" in out  # already applied


def test_diagnose_a_file_shows_what_applying_would_change(replayed, capsys):
    url, vm_id = replayed
    older = next((NIC / "ticks" / "0002" / "host-a").glob("*.xml"))
    assert main(["diagnose", vm_id, "--xml", str(older), "--db", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vm"] == vm_id and report["xml"] == str(older)
    effects = {row["effect"] for row in report["rows"]}
    assert "unplug" in effects  # the NIC is absent from that XML


@pytest.mark.parametrize("argv, message", [
    pytest.param(["diagnose", "not-a-uuid"], "is not a UUID", id="bad-id"),
    pytest.param(["diagnose", "00000000-0000-4000-8000-000000000000"], "no VM with id",
                 id="unknown-vm"),
])
def test_diagnose_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main(argv + ["--db", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_diagnose_without_a_fetched_xml_asks_for_one(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["load", str(NIC / "inventory.json"), "--db", url]) == 0
    vm_id = json.loads((NIC / "inventory.json").read_text())["vms"][0]["id"]
    assert main(["diagnose", vm_id, "--db", url]) == 2
    assert "no XML fetched yet; pass --xml FILE" in capsys.readouterr().err
