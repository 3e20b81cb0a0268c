"""Every fixture replayed through the worker's tick, with --check, on SQLite and PostgreSQL;
and, per fault scenario, what each tick wrote and what it did not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import FIXTURES
from monitor.cli import main
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import LoopingReplaySource
from monitor.store import Store
from monitor.store.inventory import load_document, read_document
from monitor.tick.host_tick import TickContext
from monitor.tick.replay import replay
from monitor.worker.host_job import HostJob

DEMO = FIXTURES.parent / "monitor" / "demo" / "recording"  # what `monitor run` plays
FIXTURE_DIRS = sorted(p for p in FIXTURES.iterdir() if (p / "ticks").is_dir()) + [DEMO]


def test_every_fixture_has_expected():
    assert len(FIXTURE_DIRS) >= 11
    assert all((p / "expected.json").is_file() for p in FIXTURE_DIRS)


@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=[p.name for p in FIXTURE_DIRS])
def test_replay_check_passes(fixture, db_url, capsys):
    assert main(["replay", str(fixture), "--check", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "check: OK" in out


class Clock:
    """The engine's clocks, one second further on each reading: report times stay ordered."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)) -> None:
        self.now = start
        self.elapsed = 0.0

    def utc(self) -> datetime:
        self.now += timedelta(seconds=1)
        self.elapsed += 1.0
        return self.now

    def monotonic(self) -> float:
        return self.elapsed


def run_fixture(name: str, db_url: str, clock: Clock | None = None):
    """Replay a fixture; return its per-tick summaries {(tick, host): summary} and the store."""
    store = Store.open(db_url)
    context = TickContext(store=store, holder="test-worker", clock=clock or Clock())
    summaries = {}
    replay(read_fixture(FIXTURES / name), context,
           on_tick=lambda number, summary: summaries.__setitem__((number, summary.host), summary))
    return summaries, store


def vm_named(store: Store, name: str):
    with store.transaction() as tx:
        return next(vm for vm in tx.export()["vms"] if vm["name"] == name)


def test_vm_start_adds_unmanaged_rows_then_writes_nothing(db_url):
    ticks, store = run_fixture("vm-start", db_url)
    first, second = ticks[(1, "host-a")], ticks[(2, "host-a")]
    assert first.rules["user-alias"] == 7 and first.new == 9 and first.unplugged == 0
    assert (second.fetched, second.rows_written) == (0, 0)
    with store.transaction() as tx:
        rows = tx.export()["devices"]
    unmanaged = sorted(r["device"] for r in rows if not r["is_managed"])
    assert unmanaged == ["pci", "pci", "pci", "pci", "pci", "sata", "spicevmc", "unix",
                         "virtio-serial"]
    assert all(r["alias"].startswith("ua-") for r in rows if r["is_managed"] and r["type"] != "graphics")


def test_hotplug_lock_skips_the_vm_and_keeps_its_hash(db_url):
    ticks, store = run_fixture("hotplug-lock", db_url)
    locked = ticks[(2, "host-a")]
    assert locked.skipped["locked"] == 1
    assert (locked.fetched, locked.applied, locked.rows_written) == (0, 0, 0)
    applied = ticks[(3, "host-a")]
    assert applied.applied == 1 and applied.rules["user-alias"] == 8
    vm_id = vm_named(store, "locked")["id"]
    with store.transaction() as tx:
        assert tx.locked_vms([vm_id], Clock().utc()) == set()


def test_malformed_xml_is_recorded_never_as_hash(db_url):
    store = Store.open(db_url)
    context = TickContext(store=store, holder="test-worker", clock=Clock())
    fixture = read_fixture(FIXTURES / "malformed-xml")
    first_tick_only = fixture._replace(ticks=fixture.ticks[:1])
    replay(first_tick_only, context)
    broken, wrong, good = (vm_named(store, n) for n in ("broken", "wrong-uuid", "good"))
    assert broken["hash"] is None and broken["last_error_hash"].startswith("sha256-of-broken")
    assert "malformed XML at line" in broken["last_error"]
    assert wrong["hash"] is None and "is for VM" in wrong["last_error"]
    assert good["hash"] is not None and good["last_error"] is None
    with store.transaction() as tx:
        assert tx.last_xml(broken["id"]) is not None  # kept for diagnose

    ticks = {}  # the second tick on the DB as it is (no inventory reload)
    replay(fixture._replace(ticks=fixture.ticks[1:2], inventory_path=None), context,
           on_tick=lambda n, s: ticks.__setitem__(n, s))
    assert ticks[2].fetched == 0 and ticks[2].skipped["known-bad-hash"] == 2


def test_agent_restart_advances_hashes_and_writes_no_row(db_url):
    ticks, store = run_fixture("agent-restart", db_url)
    restart = ticks[(2, "host-a")]
    assert (restart.applied, restart.rows_written) == (3, 0)
    with store.transaction() as tx:
        assert all(vm["hash"].startswith("agent-restart-") for vm in tx.export()["vms"])


def test_host_timeout_backs_off_one_host_only(db_url):
    ticks, store = run_fixture("host-timeout", db_url)
    assert ticks[(1, "host-a")].host_error == "timeout"
    assert ticks[(1, "host-b")].applied == 1 and ticks[(1, "host-b")].errors["missing"] == 1
    assert ticks[(2, "host-a")].host_error == "refused"
    assert ticks[(2, "host-b")].applied == 1  # the VM the dump left out, retried
    assert ticks[(3, "host-a")].applied == 1
    assert vm_named(store, "on-a")["hash"] is not None


def test_migration_moves_the_vm_and_ignores_the_late_source(db_url):
    ticks, store = run_fixture("migration", db_url)
    assert ticks[(2, "host-b")].skipped["other-host"] == 1
    assert ticks[(3, "host-b")].applied == 1
    assert ticks[(4, "host-a")].skipped["other-host"] == 1
    vm = vm_named(store, "migrating")
    assert (vm["host"], vm["status"]) == ("host-b", "Up")


def test_vanished_vm_is_down_after_two_successful_polls_logged_once(db_url, caplog):
    with caplog.at_level("WARNING", logger="monitor.tick"):
        ticks, store = run_fixture("vm-vanished", db_url)
    assert [n for (n, host), summary in sorted(ticks.items()) if summary.vanished] == [5]
    assert ticks[(5, "host-a")].vanished == 1
    statuses = {name: (vm_named(store, name)["host"], vm_named(store, name)["status"])
                for name in ("gone", "stays", "flaky", "source", "launching", "restarted")}
    assert statuses == {"gone": ("host-a", "Down"), "stays": ("host-a", "Up"),
                        "flaky": ("host-a", "Up"), "source": ("host-a", "Migration Source"),
                        "launching": ("host-a", "WaitForLaunch"),
                        "restarted": ("host-b", "Up")}
    assert ticks[(4, "host-b")].applied == 1  # moved from Down, and fetched
    gone = vm_named(store, "gone")["id"]
    with store.transaction() as tx:  # its rows stay as the last report left them
        assert all(r["is_plugged"] for r in tx.export([gone])["devices"])
    logged = [r for r in caplog.records if r.getMessage().startswith("vanished")]
    assert [(r.host, r.vm) for r in logged] == [("host-a", gone)]


def test_nic_replug_keeps_one_row(db_url):
    ticks, store = run_fixture("nic-unplug-replug", db_url)
    assert ticks[(2, "host-a")].unplugged == 1
    with store.transaction() as tx:
        nics = [r for r in tx.export()["devices"] if r["type"] == "interface"]
    assert len(nics) == 1 and nics[0]["is_plugged"] and nics[0]["address"]


def test_qemu_hotplug_recorded_on_a_real_host(db_url):
    """Recorded from libvirt 9.0 and QEMU 7.2 by tests/test_real_qemu.py: a NIC row
    found by MAC and unplugged forgets libvirt's alias net0, which libvirt then hands
    to another NIC (tick 4): that one is foreign, the row stays unplugged."""
    # its inventory holds the live DB's report times: the replay's clock starts later
    ticks, store = run_fixture("qemu-hotplug", db_url,
                               Clock(start=datetime(2027, 1, 1, tzinfo=timezone.utc)))
    host = "qemu-local"
    assert ticks[(2, host)].rules["mac"] == 1 and ticks[(2, host)].new == 1  # NIC, channel
    assert (ticks[(3, host)].unplugged, ticks[(3, host)].deleted) == (1, 1)
    reused = ticks[(4, host)]
    assert "mac" not in reused.rules and reused.new == 2  # the DIMM and the USB device
    assert reused.foreign == ticks[(3, host)].foreign + 1
    with store.transaction() as tx:
        nics = [r for r in tx.export()["devices"] if r["type"] == "interface"]
    assert [(nic["is_plugged"], nic["alias"], nic["address"]) for nic in nics] == [(False, "", {})]


def test_emit_dicts_writes_one_line_per_applied_vm(tmp_path, capsys):
    out = tmp_path / "dicts.jsonl"
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["replay", str(FIXTURES / "disk-hotplug"), "--db", url,
                 "--emit-dicts", str(out)]) == 0
    import json
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2
    assert {d["matchedBy"] for d in lines[1]["devices"]} >= {"user-alias", "stored-alias"}


def test_check_fails_on_a_difference(tmp_path, capsys):
    import shutil
    copy = tmp_path / "fx"
    shutil.copytree(FIXTURES / "vm-start", copy)
    expected = (copy / "expected.json").read_text().replace('"is_plugged": true', '"is_plugged": false', 1)
    (copy / "expected.json").write_text(expected)
    assert main(["replay", str(copy), "--check", "--db", f"sqlite:///{tmp_path / 'm.db'}"]) == 1
    out = capsys.readouterr().out
    assert ".is_plugged: expected False, actual True" in out


def test_unusable_fixture_is_one_line(tmp_path, capsys):
    (tmp_path / "ticks" / "1").mkdir(parents=True)
    assert main(["replay", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'm.db'}"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=[p.name for p in FIXTURE_DIRS])
def test_every_fixture_vm_is_runnable(fixture, domain_rng):
    """`monitor domxml` of every VM, before and after the replay, validates against libvirt's schema (docs/run-vm.md, "How it is tested")."""
    import json

    from lxml import etree

    from monitor.domxml.builder import build_domain_xml
    from monitor.store.inventory import parse_document

    checked = 0
    for name in ("inventory.json", "expected.json"):
        path = fixture / name
        if not path.exists():
            continue
        document = parse_document(json.loads(path.read_text()))
        for vm in document.vms:
            xml = build_domain_xml(vm, document.rows.get(vm.id, []))
            tree = etree.fromstring(xml)
            assert domain_rng.validate(tree), (vm.name, domain_rng.error_log.last_error)
            checked += 1
    assert checked >= 2


def test_the_worker_loop_holds_a_locked_vm_in_the_same_tick_as_replay(db_url):
    """``monitor run`` on a fixture takes a tick's locks.json before that tick's poll,
    as ``monitor replay`` does: the VM is skipped in tick 2 and applied in tick 3."""
    replayed, store = run_fixture("hotplug-lock", db_url)
    store.close()
    fixture = read_fixture(FIXTURES / "hotplug-lock")
    with Store.open(db_url) as store:
        load_document(store, read_document(fixture.inventory_path))
        seen = []
        job = HostJob(LoopingReplaySource(fixture, "host-a"),
                      TickContext(store=store, holder="test-worker", clock=Clock()),
                      interval_s=1.0, backoff_max_s=1.0, on_summary=seen.append)
        for _ in fixture.ticks:
            job()
    outcome = [(s.applied, s.skipped["locked"]) for s in seen]
    assert outcome == [(replayed[(n, "host-a")].applied, replayed[(n, "host-a")].skipped["locked"])
                       for n in (1, 2, 3)]
    assert outcome[1:] == [(0, 1), (1, 0)]
