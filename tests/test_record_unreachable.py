"""``monitor record`` on a host it cannot reach fails as ``monitor start`` does
(docs/worker.md, "Turning a field problem into a fixture"); a host that fails a later
tick is recorded as that tick's ``{"error": ...}``."""

from __future__ import annotations

import json

from conftest import FIXTURES

from monitor.cli import main
from monitor.commands.record import record
from monitor.errors import HostUnreachable
from monitor.hosts.fixture import read_fixture
from monitor.hosts.fixture_writer import FixtureWriter
from monitor.hosts.source import VmReport

# A local socket that is not there: refused at once, no DNS, the same on every machine.
NOWHERE = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"


def test_record_on_an_unreachable_host_fails_like_start(libvirt_module, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    inventory = FIXTURES / "vm-start" / "inventory.json"
    vm_id = json.loads(inventory.read_text())["vms"][0]["id"]
    assert main(["load", str(inventory), "--db", url]) == 0
    capsys.readouterr()

    started = main(["start", vm_id, "--host", NOWHERE, "--host-name", "h1", "--db", url])
    start_err = capsys.readouterr().err.strip().splitlines()
    out = tmp_path / "case"
    recorded = main(["record", "--host", NOWHERE, "--host-name", "h1", "--out", str(out),
                     "--db", url])
    captured = capsys.readouterr()

    assert (recorded, started) == (6, 6)
    assert captured.err.strip().splitlines() == start_err
    assert len(start_err) == 1 and start_err[0].startswith(
        f"monitor: error: host h1: connecting to {NOWHERE} failed: ")
    assert "recorded" not in captured.out
    assert not (out / "ticks").exists() and not (out / "inventory.json").exists()


class FailsAfterFirstTick:
    """A host that answers its first poll and is unreachable afterwards."""

    name = "h1"

    def __init__(self) -> None:
        self.polls = 0

    def poll(self) -> dict[str, VmReport]:
        self.polls += 1
        if self.polls > 1:
            raise HostUnreachable("host h1: polling failed: connection reset")
        return {}

    def dump(self, vm_ids):
        raise AssertionError("nothing changed: nothing to dump")

    def close(self) -> None:
        pass


def test_a_host_failing_a_later_tick_is_recorded_as_its_error(tmp_path):
    summary = record(FailsAfterFirstTick(), FixtureWriter(tmp_path / "case"), ticks=2,
                     interval_s=0)
    assert summary.ticks == 2
    ticks = read_fixture(tmp_path / "case").ticks
    assert [(t.number, t.answer("h1").error) for t in ticks] == [(1, None), (2, "unreachable")]
