"""A DB error inside a batch: the batch is rolled back and retried VM by VM; the failing
VM keeps its old hash and rows, the others apply. The error is a real one, raised by a
trigger in the database (SQLite and PostgreSQL), not a patched function. The emitters
get a VM only after the transaction that applied it committed (docs/architecture.md,
"Adapters")."""

from __future__ import annotations

import sqlalchemy as sa

from conftest import FIXTURES
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import ReplayHostSource
from monitor.legacy.dicts import ConvertedVm
from monitor.store import Store
from monitor.store.inventory import load_document, read_document
from monitor.tick.host_tick import TickContext, run_tick

AGENT_RESTART = FIXTURES / "agent-restart"


def fail_updates_of(url: str, vm_id: str) -> None:
    """Make every UPDATE of one VM's row fail inside the database."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(sa.text(
                "CREATE TRIGGER fail_one BEFORE UPDATE ON vms "
                f"WHEN NEW.id = '{vm_id}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"))
        else:
            connection.execute(sa.text(
                "CREATE FUNCTION fail_one() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'injected failure'; END $$"))
            connection.execute(sa.text(
                "CREATE TRIGGER fail_one BEFORE UPDATE ON vms FOR EACH ROW "
                f"WHEN (NEW.id = '{vm_id}') EXECUTE FUNCTION fail_one()"))
    engine.dispose()


def test_failed_batch_is_retried_vm_by_vm(db_url):
    store = Store.open(db_url)
    load_document(store, read_document(AGENT_RESTART / "inventory.json"))
    fixture = read_fixture(AGENT_RESTART)
    vm_ids = sorted(fixture.ticks[0].answer("host-a").reports)
    doomed = vm_ids[1]
    fail_updates_of(db_url, doomed)
    with store.transaction() as tx:
        before = tx.export([doomed])

    context = TickContext(store=store, holder="test", batch_size=10)
    summary = run_tick(ReplayHostSource(fixture.ticks[0], "host-a"), context)

    assert summary.errors["db"] == 1
    assert summary.applied == len(vm_ids) - 1
    with store.transaction() as tx:
        after = tx.export(vm_ids)
        locks = tx.locked_vms(vm_ids, context.clock.utc())
    hashes = {vm["id"]: vm["hash"] for vm in after["vms"]}
    assert hashes[doomed] is None  # not advanced
    assert all(hashes[vm_id] for vm_id in vm_ids if vm_id != doomed)
    assert [d for d in after["devices"] if d["vm_id"] == doomed] == before["devices"]
    assert locks == set()  # released even though one VM failed


class CommittedHashes:
    """An emitter that reads, in a transaction of its own, the hash each VM it is handed
    has in the database at that moment."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: dict[str, str | None] = {}

    def handle(self, vm_id: str, converted: ConvertedVm) -> None:
        with self.store.transaction() as tx:
            self.seen[vm_id] = tx.vm(vm_id).hash


def test_emitters_get_committed_vms_only(db_url):
    store = Store.open(db_url)
    load_document(store, read_document(AGENT_RESTART / "inventory.json"))
    answer = read_fixture(AGENT_RESTART).ticks[0].answer("host-a")
    vm_ids = sorted(answer.reports)
    doomed = vm_ids[1]
    fail_updates_of(db_url, doomed)
    emitter = CommittedHashes(store)

    context = TickContext(store=store, holder="test", batch_size=10, emitters=[emitter])
    summary = run_tick(ReplayHostSource(read_fixture(AGENT_RESTART).ticks[0], "host-a"), context)

    assert summary.errors["db"] == 1  # its batch was rolled back, then it failed alone
    assert emitter.seen == {vm_id: answer.reports[vm_id].hash  # already committed
                            for vm_id in vm_ids if vm_id != doomed}


def test_an_unusable_document_is_recorded_by_the_batch_that_reads_it(db_url):
    """Each document is read in the batch that applies it (docs/worker.md, "One tick of
    one host", step 6): a malformed one is recorded there, as its VM's last error with
    the document kept and its lock released, and the rest of the batch applies; when the
    batch is rolled back and retried VM by VM, the record is made again in its own."""
    store = Store.open(db_url)
    load_document(store, read_document(AGENT_RESTART / "inventory.json"))
    tick = read_fixture(AGENT_RESTART).ticks[0]
    answer = tick.answer("host-a")
    vm_ids = sorted(answer.reports)
    broken, doomed = vm_ids[0], vm_ids[1]
    fail_updates_of(db_url, doomed)

    class BrokenFirst(ReplayHostSource):
        def dump(self, wanted):
            xmls = dict(super().dump(wanted))
            xmls[broken] = b"<domain><uuid>"
            return xmls

    context = TickContext(store=store, holder="test", batch_size=10)
    summary = run_tick(BrokenFirst(tick, "host-a"), context)

    assert summary.errors["xml"] == 1 and summary.errors["db"] == 1
    assert summary.applied == len(vm_ids) - 2 and summary.fetched == len(vm_ids)
    with store.transaction() as tx:
        record = tx.vm(broken)
        kept = tx.last_xml(broken)
        locks = tx.locked_vms(vm_ids, context.clock.utc())
    assert record.hash is None and record.last_error_hash == answer.reports[broken].hash
    assert record.last_error.startswith("malformed XML at line 1")
    assert kept is not None and kept[0] == b"<domain><uuid>"
    assert locks == set()
