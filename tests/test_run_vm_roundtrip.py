"""Run-VM round trip on libvirt's real test driver, in-process: generate, start, poll.

The test driver keeps only ua- aliases, adds implicit controllers and a video device,
assigns no PCI address and cannot hot-plug; a running VM is changed by destroy,
define, create on the same connection (docs/architecture.md, "Host sources").
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from conftest import REPO
from monitor.cli import main
from monitor.commands.record import record
from monitor.commands.start import start_vm
from monitor.domxml.builder import build_domain_xml
from monitor.errors import UsageError
from monitor.hosts.fixture import read_fixture
from monitor.hosts.fixture_writer import FixtureWriter
from monitor.model.rows import DeviceRow, VmRecord
from monitor.store import Store
from monitor.tick.host_tick import TickContext, run_tick

pytestmark = pytest.mark.libvirt
sys.path.insert(0, str(REPO / "scripts"))
import make_fixtures as scenarios  # noqa: E402


@pytest.fixture
def conn(libvirt_module):
    connection = libvirt_module.open("test:///default")
    yield connection
    for domain in connection.listAllDomains():
        if domain.name().startswith("rt-"):
            persistent = domain.isPersistent()  # a transient domain is gone once destroyed
            if domain.isActive():
                domain.destroy()
            if persistent:
                domain.undefine()
    connection.close()


def unique_vm(name: str) -> VmRecord:
    vm = scenarios.vm_record(f"rt-{name}-{uuid.uuid4().hex[:6]}", host=None, status="Down")
    return replace(vm, id=str(uuid.uuid4()))


def rows_for(vm: VmRecord) -> list[DeviceRow]:
    return [replace(r, vm_id=vm.id, device_id=str(uuid.uuid4()))
            for r in scenarios.managed_rows(vm)]


def load(store: Store, vm: VmRecord, rows: list[DeviceRow]) -> None:
    with store.transaction() as tx:
        tx.replace_vm(vm, rows)


def export_rows(store: Store, vm_id: str) -> list[dict]:
    with store.transaction() as tx:
        return tx.export([vm_id])["devices"]


def test_generate_start_poll_round_trip(conn, db_url):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    store = Store.open(db_url)
    vm, rows = unique_vm("trip"), None
    rows = rows_for(vm)
    load(store, vm, rows)
    source = LibvirtHostSource("test:///default", "localhost", connection=conn)
    start_vm(store, vm.id, source, "localhost")
    context = TickContext(store=store, holder="test")

    first = run_tick(source, context)
    assert first.applied >= 1 and first.conflicts == 0
    after = {r["device_id"]: r for r in export_rows(store, vm.id)}
    managed = {r.device_id for r in rows}
    aliased = {r.device_id for r in rows if r.type not in ("graphics",)}
    # every managed device matched by its user alias; nothing unplugged; no new managed row
    assert {d for d, r in after.items() if r["alias"].startswith("ua-")} == aliased
    assert all(after[d]["is_plugged"] for d in managed)
    assert {d for d, r in after.items() if r["is_managed"]} == managed
    # what libvirt added by itself became unmanaged rows
    added = sorted((r["type"], r["device"]) for r in after.values() if not r["is_managed"])
    assert added and all(kind in ("controller", "channel", "memory", "redir") for kind, _ in added)
    with store.transaction() as tx:
        stored = tx.vm(vm.id)
    assert stored.hash and stored.host == "localhost" and stored.status == "Up"

    second = run_tick(source, context)
    assert second.rows_written == 0 and second.skipped["unchanged"] >= 1

    # change the VM: one disk removed, one NIC added (destroy, define, create)
    removed = next(r for r in rows if r.type == "disk" and r.device == "disk")
    nic2 = replace(next(r for r in rows if r.type == "interface"), device_id=str(uuid.uuid4()),
                   spec_params={"mac_address": "00:1a:4a:16:99:01"})
    changed_rows = [r for r in rows if r.device_id != removed.device_id] + [nic2]
    load(store, replace(stored, definition=vm.definition), rows + [nic2])
    source.redefine_and_restart(build_domain_xml(vm, changed_rows))
    third = run_tick(source, context)
    final = {r["device_id"]: r for r in export_rows(store, vm.id)}
    assert third.unplugged == 1 and not final[removed.device_id]["is_plugged"]
    assert final[nic2.device_id]["is_plugged"] and final[nic2.device_id]["alias"] == f"ua-{nic2.device_id}"
    assert final[removed.device_id]["address"] == {}


def test_start_command_records_the_configured_host(conn, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = tmp_path / "monitor.toml"
    config.write_text('[[hosts]]\nname = "test-a"\nuri = "test:///default"\n')
    store = Store.open(url)
    vm = unique_vm("cli")
    load(store, vm, rows_for(vm))
    assert main(["start", vm.id, "--host", "test:///default", "--db", url,
                 "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert f"started VM {vm.id} on test-a" in out and err == ""
    assert conn.lookupByUUIDString(vm.id).isActive()
    with store.transaction() as tx:
        stored = tx.vm(vm.id)
    assert (stored.host, stored.status) == ("test-a", "WaitForLaunch")


def test_start_without_a_configured_host_needs_a_name_and_warns(conn, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    store = Store.open(url)
    vm = unique_vm("named")
    load(store, vm, rows_for(vm))
    assert main(["start", vm.id, "--host", "test:///default", "--db", url]) == 2
    err = capsys.readouterr().err
    assert err == ("monitor: error: --host test:///default: no config file; give --host-name "
                   "NAME, the name the worker polls this host by\n")
    assert vm.id not in {d.UUIDString() for d in conn.listAllDomains()}  # nothing started
    assert main(["start", vm.id, "--host", "test:///default", "--host-name", "lab1",
                 "--db", url]) == 0
    out, err = capsys.readouterr()
    assert err == ("monitor: warning: host lab1 is in no configuration (no config file): "
                   "no worker reading it reconciles this VM\n")
    with store.transaction() as tx:
        assert tx.vm(vm.id).host == "lab1"


class _RefusingHost:
    """A test-driver connection whose host refuses to start any domain (a fake: every
    other call reaches the real driver, which keeps whatever gets defined)."""

    def __init__(self, connection, libvirt_module):
        self._connection = connection
        self._libvirt = libvirt_module

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def _refuse(self, *args):
        raise self._libvirt.libvirtError("internal error: qemu unexpectedly closed the monitor")

    createXML = _refuse

    def defineXML(self, xml):
        domain = self._connection.defineXML(xml)
        domain.create = self._refuse
        return domain


def test_a_refused_start_leaves_nothing_defined(conn, libvirt_module, tmp_path):
    from monitor.errors import HostRefused
    from monitor.hosts.libvirt_source import LibvirtHostSource

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    vm = unique_vm("refused")
    load(store, vm, rows_for(vm))
    source = LibvirtHostSource("test:///default", "localhost",
                               connection=_RefusingHost(conn, libvirt_module))
    with pytest.raises(HostRefused, match="starting a domain failed"):
        start_vm(store, vm.id, source, "localhost")
    assert vm.id not in {domain.UUIDString() for domain in conn.listAllDomains()}
    with store.transaction() as tx:
        assert (tx.vm(vm.id).status, tx.locked_vms([vm.id], datetime.now(timezone.utc))) == (
            "Down", set())


def test_start_refuses_a_running_vm_before_touching_its_definition(conn, libvirt_module,
                                                                   tmp_path):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    vm = unique_vm("running")
    rows = rows_for(vm)
    load(store, vm, rows)
    domain = conn.defineXML(build_domain_xml(vm, rows).decode())
    domain.create()
    defined = domain.XMLDesc(libvirt_module.VIR_DOMAIN_XML_INACTIVE)
    load(store, vm, [r for r in rows if r.type != "rng"])  # the next start would differ
    source = LibvirtHostSource("test:///default", "localhost", connection=conn)
    with pytest.raises(UsageError, match=f"VM {vm.id} is already running on localhost"):
        start_vm(store, vm.id, source, "localhost")
    assert domain.XMLDesc(libvirt_module.VIR_DOMAIN_XML_INACTIVE) == defined and domain.isActive()


def test_start_is_transient(conn, tmp_path):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    vm = unique_vm("transient")
    load(store, vm, rows_for(vm))
    start_vm(store, vm.id, LibvirtHostSource("test:///default", "h", connection=conn), "h")
    domain = conn.lookupByUUIDString(vm.id)
    assert domain.isActive() and not domain.isPersistent()


def test_start_unknown_vm_is_one_line(tmp_path, capsys, libvirt_module):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["start", str(uuid.uuid4()), "--host", "test:///default", "--host-name", "h",
                 "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("monitor: error: no VM with id") and err.count("\n") == 1


def test_record_with_changes_between_ticks(conn, tmp_path):
    from monitor.hosts.libvirt_source import LibvirtHostSource

    vm = unique_vm("rec")
    rows = rows_for(vm)
    source = LibvirtHostSource("test:///default", "localhost", connection=conn)
    source.start_domain(build_domain_xml(vm, rows))
    without_rng = [r for r in rows if r.type != "rng"]
    summary = record(source, FixtureWriter(tmp_path / "fx"), ticks=3, interval_s=0,
                     between_ticks=lambda n: n == 1 and source.redefine_and_restart(
                         build_domain_xml(vm, without_rng)))
    fixture = read_fixture(tmp_path / "fx")
    assert summary.ticks == 3 and len(fixture.ticks) == 3
    xml_dirs = [fixture.ticks[i].answer("localhost").xml_path(vm.id).exists() for i in range(3)]
    assert xml_dirs == [True, True, False]  # dumped on the first tick and on the change only
    inventory = json.loads((tmp_path / "fx" / "inventory.json").read_text())
    recorded = {d["device_id"] for d in inventory["devices"] if d["vm_id"] == vm.id}
    assert recorded == {r.device_id for r in rows if r.type != "graphics"}


def test_record_takes_the_inventory_before_the_first_tick(conn, tmp_path):
    """A live worker on the same DB applies a change while the host is recorded: the
    inventory is the DB before tick 1, so replaying tick 1 cannot undo that change."""
    from monitor.hosts.libvirt_source import LibvirtHostSource

    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = Store.open(url)
    vm = unique_vm("live")
    rows = rows_for(vm)
    load(store, vm, rows)
    recorded = LibvirtHostSource("test:///default", "localhost", connection=conn)
    worker = LibvirtHostSource("test:///default", "localhost", connection=conn)
    context = TickContext(store=store, holder="worker")
    start_vm(store, vm.id, worker, "localhost")
    run_tick(worker, context)
    with store.transaction() as tx:
        before = tx.export([vm.id])

    def change_and_reconcile(tick: int) -> None:
        worker.redefine_and_restart(build_domain_xml(vm, [r for r in rows if r.type != "rng"]))
        assert run_tick(worker, context).unplugged == 1  # the live worker applies it

    record(recorded, FixtureWriter(tmp_path / "fx"), ticks=2, interval_s=0, store=store,
           between_ticks=change_and_reconcile)
    inventory = json.loads((tmp_path / "fx" / "inventory.json").read_text())
    assert only(inventory, vm.id) == before  # (test:///default also runs its own "test")
    with store.transaction() as tx:
        live = tx.export([vm.id])
    replayed = tmp_path / "replayed.db"
    assert main(["replay", str(tmp_path / "fx"), "--db", f"sqlite:///{replayed}"]) == 0
    with Store.open(f"sqlite:///{replayed}") as again, again.transaction() as tx:
        assert without_hash_time(tx.export([vm.id])) == without_hash_time(live)


def only(document: dict, vm_id: str) -> dict:
    return {"vms": [vm for vm in document["vms"] if vm["id"] == vm_id],
            "devices": [row for row in document["devices"] if row["vm_id"] == vm_id]}


def without_hash_time(document: dict) -> dict:
    return {**document, "vms": [{k: v for k, v in vm.items() if k != "hash_time"}
                                for vm in document["vms"]]}


def test_record_command_on_a_node_file(libvirt_module, tmp_path, capsys):
    node = scenarios.REPO / "fixtures" / "testdriver-recorded"
    assert (node / "inventory.json").exists()  # the committed recording replays in CI
    folder = tmp_path / "node"
    folder.mkdir()
    sys.path.insert(0, str(REPO / "scripts"))
    import record_testdriver_fixture as recorder

    node_path = recorder.node_file(folder)
    out = tmp_path / "out"
    assert main(["record", "--host", f"test://{node_path}", "--host-name", "testhost",
                 "--out", str(out), "--ticks", "2", "--interval", "0",
                 "--db", f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    assert "2 VMs (0 from the DB), 2 XML files" in capsys.readouterr().out
    assert main(["replay", str(out), "--db", f"sqlite:///{tmp_path / 'r.db'}"]) == 0
