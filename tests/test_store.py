"""The store on SQLite and PostgreSQL: schema, hashes, rows, locks, errors."""

from __future__ import annotations

import contextlib
import importlib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import psycopg.errors
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.bench.fleet import Fleet
from monitor.errors import StoreError
from monitor.model.changes import RowUpdate, VmChanges
from monitor.model.rows import DeviceRow, VmRecord, VmState
from monitor.settings import MAX_TICK_THREADS, default_db_url
from monitor.store import HashAdvance, LastXmls, Store
from monitor.store import batch_writes
from monitor.store.engine import is_transient, parse_url
from monitor.store.migrate import alembic_config, head_revision
from monitor.store.schema import FILLFACTOR, metadata

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def vm_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def device_id(n: int) -> str:
    return f"d0000000-0000-4000-8000-{n:012d}"


def vm(n: int, **fields) -> VmRecord:
    return VmRecord(id=vm_id(n), name=f"vm{n}", host="host1", status="Up", **fields)


def row(vm_n: int, dev_n: int, **fields) -> DeviceRow:
    return DeviceRow(device_id=device_id(dev_n), vm_id=vm_id(vm_n), type="controller",
                     device="usb", **fields)


@pytest.fixture
def store(db_url):
    with Store.open(db_url) as opened:
        yield opened


# --- schema -----------------------------------------------------------------------------


def test_first_open_creates_the_schema_at_head(db_url):
    with Store.open(db_url) as store:
        with store.transaction() as tx:
            assert tx.count_rows() == 0
        assert store.upgrade() == (head_revision(), head_revision())


def test_open_without_create_leaves_an_empty_database_empty(db_url):
    with Store.open(db_url, create=False) as store:
        with pytest.raises(StoreError) as failure:
            with store.transaction() as tx:
                tx.count_rows()
        assert "\n" not in str(failure.value)
        assert failure.value.transient is False
        first = store.upgrade()
        assert (first.before, first.after, first.changed) == (None, head_revision(), True)
        assert store.upgrade().changed is False


def test_the_migrated_database_matches_schema_py(store, db_url):
    engine = sa.create_engine(parse_url(db_url))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_rewritten_tables_leave_room_for_in_place_updates_on_postgresql(db_url):
    """docs/performance.md: a full tick's updates stay in their page (fillfactor).
    A PostgreSQL storage parameter: SQLite has none."""
    Store.open(db_url).close()
    engine = sa.create_engine(parse_url(db_url))
    with engine.connect() as connection:
        options = dict(connection.execute(sa.text(
            "SELECT relname, array_to_string(reloptions, ',') FROM pg_class "
            "WHERE relname IN ('vms', 'vm_devices', 'vm_device_locks') "
            "AND relnamespace = current_schema()::regnamespace")).all())
    engine.dispose()
    assert options == {"vms": f"fillfactor={FILLFACTOR}",
                       "vm_devices": f"fillfactor={FILLFACTOR}", "vm_device_locks": None}


def test_every_tick_thread_and_the_lease_keeper_hold_a_connection_at_once(db_url):
    """A tick keeps its connection while it waits for its host's dump: sixteen slow hosts
    must not leave the lease keeper (nor a tick) waiting for one (docs/operations.md,
    "What is bounded")."""
    holders = MAX_TICK_THREADS + 1
    all_in = threading.Barrier(holders + 1, timeout=30)
    done = threading.Event()
    read: list[int] = []

    def hold(store: Store) -> None:
        with store.pinned():
            with store.read() as tx:
                read.append(len(tx.vms_on_host("host-a")))
            all_in.wait()  # its connection still pinned
            done.wait(30)

    with Store.open(db_url) as store:
        threads = [threading.Thread(target=hold, args=(store,)) for _ in range(holders)]
        for thread in threads:
            thread.start()
        try:
            all_in.wait()
            held = store._engine.pool.checkedout()
        finally:
            done.set()
            for thread in threads:
                thread.join()
    assert (held, read) == (holders, [0] * holders)


def test_a_second_open_of_an_existing_schema_works(db_url):
    Store.open(db_url).close()
    with Store.open(db_url) as again:
        assert again.dialect in ("sqlite", "postgresql")
        with again.transaction() as tx:
            tx.upsert_vm(vm(1))
        with again.transaction() as tx:
            assert tx.vm(vm_id(1)).name == "vm1"


def test_the_default_sqlite_folder_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with Store.open(default_db_url()) as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "data" / "monitor" / "monitor.db").is_file()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        pytest.param("postgresql://u@h/db", "postgresql+psycopg", id="postgresql"),
        pytest.param("postgres://u@h/db", "postgresql+psycopg", id="postgres"),
        pytest.param("postgresql+psycopg://u@h/db", "postgresql+psycopg", id="explicit"),
        pytest.param("sqlite:///x.db", "sqlite", id="sqlite"),
    ],
)
def test_postgres_urls_mean_psycopg_3(url, driver):
    assert parse_url(url).drivername == driver


def test_the_url_shown_hides_the_password():
    store = Store.open("postgresql://user:secret@127.0.0.1:1/x", create=False)
    assert "secret" not in store.url
    assert store.url.startswith("postgresql+psycopg://user:")
    store.close()


# --- VMs and hashes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report_time", "advanced"),
    [
        pytest.param(T0 - timedelta(microseconds=1), False, id="older-refused"),
        pytest.param(T0, True, id="equal-accepted"),
        pytest.param(T0 + timedelta(seconds=5), True, id="newer-accepted"),
        pytest.param(T0.astimezone(timezone(timedelta(hours=2))), True,
                     id="same-instant-other-zone"),
    ],
)
def test_advance_hash_refuses_an_older_report(store, report_time, advanced):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1, hash="old", hash_time=T0))
    with store.transaction() as tx:
        before = tx.vm(vm_id(1))
        assert tx.advance_hash(vm_id(1), "new", report_time, status="Paused") is advanced
    with store.transaction() as tx:
        after = tx.vm(vm_id(1))
    if advanced:
        assert (after.hash, after.hash_time, after.status) == ("new", report_time, "Paused")
    else:
        assert after == before


def test_advance_hash_on_a_vm_never_applied_and_clears_the_last_error(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1))
        tx.record_error(vm_id(1), "bad", "not XML")
        assert tx.advance_hash(vm_id(1), "good", T0, host="host2") is True
        assert tx.advance_hash(vm_id(2), "good", T0) is False  # unknown VM
        stored = tx.vm(vm_id(1))
    assert (stored.hash, stored.host, stored.status) == ("good", "host2", "Up")
    assert (stored.last_error_hash, stored.last_error) == (None, None)
    assert stored.hash_time == T0 and stored.hash_time.tzinfo is not None


def test_advance_hashes_returns_the_vms_advanced(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1, hash="a", hash_time=T0))
        tx.upsert_vm(vm(2, hash="b", hash_time=T0))
        tx.upsert_vm(vm(3))
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)
    with store.transaction() as tx:
        advanced = tx.advance_hashes([
            HashAdvance(vm_id(1), "a2", later, status="Paused"),
            HashAdvance(vm_id(2), "b2", earlier),
            HashAdvance(vm_id(3), "c2", earlier, host="host9"),
            HashAdvance(vm_id(4), "d2", later),
        ])
    assert advanced == {vm_id(1), vm_id(3)}
    with store.transaction() as tx:
        stored = tx.vms([vm_id(1), vm_id(2), vm_id(3), vm_id(4)])
    assert sorted(stored) == [vm_id(1), vm_id(2), vm_id(3)]
    assert (stored[vm_id(1)].hash, stored[vm_id(1)].status) == ("a2", "Paused")
    assert (stored[vm_id(2)].hash, stored[vm_id(2)].hash_time) == ("b", T0)
    assert (stored[vm_id(3)].hash, stored[vm_id(3)].host) == ("c2", "host9")


def test_advance_hashes_after_lock_vms_guards_with_the_hash_times_read_under_the_lock(store):
    """On PostgreSQL ``lock_vms`` reads the hash times it locks and ``advance_hashes``
    decides on them without a second read; the guard is the same on both databases."""
    with store.transaction() as tx:
        tx.upsert_vm(vm(1, hash="a", hash_time=T0))
        tx.upsert_vm(vm(2, hash="b", hash_time=T0))
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)
    with store.transaction() as tx:
        before = tx.now(utc_now)
        locked_at = tx.lock_vms([vm_id(2), vm_id(1), vm_id(9)], utc_now)
        assert before <= locked_at <= tx.now(utc_now)  # the database's clock, with the lock
        advanced = tx.advance_hashes([HashAdvance(vm_id(1), "a2", later),
                                      HashAdvance(vm_id(2), "b2", earlier),
                                      HashAdvance(vm_id(9), "z", later)], locked_at)
        assert advanced == {vm_id(1)}
        # Advanced in this transaction: a second advance decides on the new time.
        assert tx.advance_hashes([HashAdvance(vm_id(1), "a3", T0)]) == set()
        assert tx.advance_hashes([HashAdvance(vm_id(2), "b3", T0)]) == {vm_id(2)}
    with store.transaction() as tx:
        stored = tx.vms([vm_id(1), vm_id(2)])
    assert (stored[vm_id(1)].hash, stored[vm_id(1)].hash_time) == ("a2", later)
    assert (stored[vm_id(2)].hash, stored[vm_id(2)].hash_time) == ("b3", T0)


def test_a_batch_writes_the_changes_of_the_vms_it_advanced_and_every_last_xml(store):
    """``advance_and_write`` (docs/worker.md, "A batch's writes"; one statement on
    PostgreSQL): the row changes of a VM whose hash does not advance are not written,
    the last XML of every VM is."""
    with store.transaction() as tx:
        tx.replace_vms([(vm(1, hash="a", hash_time=T0), [row(1, 1), row(1, 2)]),
                        (vm(2, hash="b", hash_time=T0), [row(2, 3)])])
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)
    with store.transaction() as tx:
        advanced = tx.advance_and_write(
            [HashAdvance(vm_id(1), "a2", later), HashAdvance(vm_id(2), "b2", earlier)],
            [VmChanges(vm_id(1), updates=(RowUpdate(device_id(1), False, {}, "", None, None),),
                       inserts=(row(1, 4, is_managed=False),), deletes=(device_id(2),)),
             VmChanges(vm_id(2), deletes=(device_id(3),))],
            later, LastXmls([(vm_id(1), b"<domain>1</domain>"), (vm_id(2), "<d>2</d>")], later))
    assert advanced == {vm_id(1)}
    with store.transaction() as tx:
        stored = tx.vms([vm_id(1), vm_id(2)])
        rows = tx.rows([vm_id(1), vm_id(2)])
        xmls = [tx.last_xml(vm_id(1)), tx.last_xml(vm_id(2))]
    assert (stored[vm_id(1)].hash, stored[vm_id(1)].hash_time) == ("a2", later)
    assert (stored[vm_id(2)].hash, stored[vm_id(2)].hash_time) == ("b", T0)
    assert [(r.device_id, r.is_plugged) for r in rows[vm_id(1)]] == [
        (device_id(1), False), (device_id(4), True)]
    assert [r.device_id for r in rows[vm_id(2)]] == [device_id(3)]  # not advanced: kept
    assert xmls == [(b"<domain>1</domain>", later), (b"<d>2</d>", later)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_batchs_documents_past_the_statement_bound_go_in_more_statements(store,
                                                                            monkeypatch):
    """PostgreSQL takes a value of at most 1 GB: the batch statement carries at most
    ``XML_BYTES_PER_STATEMENT`` bytes of documents, the rest go in more statements of
    the same transaction (a document larger than the bound alone)."""
    monkeypatch.setattr(batch_writes, "XML_BYTES_PER_STATEMENT", 10)
    with store.transaction() as tx:
        tx.replace_vms([(vm(n), []) for n in range(4)])
    documents = [(vm_id(0), b"<a>1</a>"), (vm_id(1), b"<b/>"), (vm_id(2), "<c>twelve</c>"),
                 (vm_id(3), b"<d/>")]
    sent = []
    sa.event.listen(store._engine, "before_cursor_execute",
                    lambda *event: sent.append(event[2].split()[0]))
    with store.transaction() as tx:
        advanced = tx.advance_and_write([HashAdvance(vm_id(0), "h", T0)], [], T0,
                                        LastXmls(documents, T0))
    assert advanced == {vm_id(0)}
    # [a] with the batch's writes (8 + 4 bytes would pass 10), then [b], [c] (13 bytes:
    # alone), [d]
    assert sent == ["SELECT"] + ["WITH"] * 4, sent  # the hash times read first
    with store.transaction() as tx:
        assert [tx.last_xml(vm_id(n))[0] for n in range(4)] == [
            b"<a>1</a>", b"<b/>", b"<c>twelve</c>", b"<d/>"]


def test_a_batch_that_fails_writes_nothing_of_it(store):
    """One part of the batch's writes fails (a row of a VM the database does not know):
    the hash, the other rows and the last XMLs are not written either."""
    with store.transaction() as tx:
        tx.replace_vms([(vm(1, hash="a", hash_time=T0), [row(1, 1)])])
    later = T0 + timedelta(seconds=1)
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.advance_and_write(
            [HashAdvance(vm_id(1), "a2", later)],
            [VmChanges(vm_id(1), deletes=(device_id(1),),
                       inserts=(row(7, 2),))],  # vm 7: no such VM
            later, LastXmls([(vm_id(1), b"<domain/>")], later))
    with store.transaction() as tx:
        assert tx.vm(vm_id(1)).hash == "a"
        assert [r.device_id for r in tx.rows([vm_id(1)])[vm_id(1)]] == [device_id(1)]
        assert tx.last_xml(vm_id(1)) is None


def test_a_naive_report_time_is_refused(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1))
    with pytest.raises(ValueError, match="naive"), store.transaction() as tx:
        tx.advance_hashes([HashAdvance(vm_id(1), "a", datetime(2024, 5, 1, 12))])


def test_vm_states_and_host_reads_what_the_plan_decides_on(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1, hash="a", hash_time=T0))
        tx.upsert_vm(vm(2))
        tx.set_status(vm_id(2), "Down", host="elsewhere")
        tx.upsert_vm(vm(3))
        tx.record_error(vm_id(3), "bad", "not XML")
        before = tx.now(utc_now)
        states, read_at = tx.vm_states_and_host([vm_id(1), vm_id(2), vm_id(4)], vm(3).host,
                                                utc_now)
        assert before <= read_at <= tx.now(utc_now)  # the database's clock at the read
        records = tx.vms([vm_id(1), vm_id(2), vm_id(3)])
        nothing, read_then = tx.vm_states_and_host([vm_id(4)], "no-such-host", utc_now)
        assert nothing == {} and read_at <= read_then <= tx.now(utc_now)
    assert sorted(states) == [vm_id(1), vm_id(2), vm_id(3)]  # 3: on the host; 4: unknown
    for vm_key, state in states.items():
        record = records[vm_key]
        assert state == tuple(getattr(record, name) for name in VmState._fields)
    assert states[vm_id(3)].last_error_hash == "bad"


def test_the_first_read_looks_up_by_id_only_the_vms_the_db_places_elsewhere(store):
    """The host's VMs by the host index; by id only the asked VMs the DB places on
    another host or does not know (docs/performance.md, "The seventh wave")."""
    with store.transaction() as tx:
        for n in (1, 2, 3):
            tx.upsert_vm(vm(n))
        tx.set_status(vm_id(3), "MigrationSource", host="host2")
    selects = []

    def count_selects(_connection, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    sa.event.listen(store._engine, "before_cursor_execute", count_selects)
    try:
        with store.read() as tx:
            steady, _ = tx.vm_states_and_host([vm_id(1), vm_id(2)], "host1", utc_now)
        assert (sorted(steady), len(selects)) == ([vm_id(1), vm_id(2)], 1)
        with store.read() as tx:
            mixed, _ = tx.vm_states_and_host([vm_id(1), vm_id(3), vm_id(9)], "host1", utc_now)
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", count_selects)
    assert sorted(mixed) == [vm_id(1), vm_id(2), vm_id(3)]  # 2: on host1, not reported
    assert mixed[vm_id(3)].host == "host2" and len(selects) == 3


def test_the_report_time_is_the_database_clock_when_the_poll_returned(store):
    """SQLite has no clock: the process's, read when the poll returned (before waiting
    for the write lock); PostgreSQL: its own, at the tick's first read."""
    polled_at = utc_now()
    with store.transaction() as tx:
        _states, read_at = tx.vm_states_and_host([], "host1", utc_now)
        report_time = tx.report_time(polled_at, read_at)
    assert report_time == (read_at if store.dialect == "postgresql" else polled_at)


def test_record_error_and_set_status_never_touch_the_hash(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1, hash="applied", hash_time=T0))
        tx.record_error(vm_id(1), "broken", "line 1: not well-formed")
        tx.set_status(vm_id(1), "Migration Source")
        tx.set_status(vm_id(1), "Up", host="host2")
        stored = tx.vm(vm_id(1))
    assert (stored.hash, stored.hash_time) == ("applied", T0)
    assert (stored.last_error_hash, stored.last_error) == ("broken", "line 1: not well-formed")
    assert (stored.status, stored.host) == ("Up", "host2")


def test_vms_on_host(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1))
        tx.upsert_vm(vm(2))
        tx.upsert_vm(VmRecord(id=vm_id(3), name="elsewhere", host="host2"))
        assert sorted(tx.vms_on_host("host1")) == [vm_id(1), vm_id(2)]
        assert tx.vms_on_host("nowhere") == {}


# --- rows -------------------------------------------------------------------------------


def test_apply_changes_inserts_updates_and_deletes(store):
    with store.transaction() as tx:
        tx.replace_vm(vm(1), [row(1, 1), row(1, 2), row(1, 3)])
        tx.replace_vm(vm(2), [row(2, 4)])
    changes = [
        VmChanges(
            vm_id(1),
            updates=(RowUpdate(device_id(1), False, {}, "ua-x", "vda", None),),
            inserts=(row(1, 9, alias="usb0"),),
            deletes=(device_id(2), device_id(3)),
        ),
        VmChanges(vm_id(2), updates=(RowUpdate(device_id(4), True, {"type": "pci", "bus": "0x01"},
                                               "usb1", None, "pci_0000_00_01_0"),)),
        VmChanges(vm_id(3)),
    ]
    with store.transaction() as tx:
        assert tx.apply_changes(changes) == 5
        rows = tx.rows([vm_id(1), vm_id(2)])
    assert [r.device_id for r in rows[vm_id(1)]] == [device_id(1), device_id(9)]
    updated = rows[vm_id(1)][0]
    assert (updated.is_plugged, updated.address, updated.alias, updated.logical_name) == (
        False, {}, "ua-x", "vda")
    assert rows[vm_id(2)][0].address == {"type": "pci", "bus": "0x01"}
    assert rows[vm_id(2)][0].host_device == "pci_0000_00_01_0"


def test_apply_changes_can_replace_a_row_by_the_same_id(store):
    with store.transaction() as tx:
        tx.replace_vm(vm(1), [row(1, 1, alias="old")])
        tx.apply_changes([VmChanges(vm_id(1), inserts=(row(1, 1, alias="new"),),
                                    deletes=(device_id(1),))])
        assert [r.alias for r in tx.rows([vm_id(1)])[vm_id(1)]] == ["new"]


def test_rows_reads_many_vms_in_a_few_selects(store):
    vm_count, per_vm = 1200, 3
    with store.transaction() as tx:
        tx.replace_vms([
            (vm(n), [row(n, n * 10 + k) for k in reversed(range(per_vm))]) for n in range(vm_count)
        ])
    selects = []

    def count_selects(_connection, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count_selects)
    try:
        with store.transaction() as tx:
            rows = tx.rows([vm_id(n) for n in range(vm_count)] + [vm_id(99999)])
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count_selects)
    assert len(selects) == 3  # 1201 ids in chunks of 500
    assert len(rows) == vm_count + 1 and rows[vm_id(99999)] == []
    assert all(
        [r.device_id for r in rows[vm_id(n)]] == [device_id(n * 10 + k) for k in range(per_vm)]
        for n in range(vm_count)
    )


def test_a_failing_transaction_rolls_back_and_says_why_in_one_line(store):
    with store.transaction() as tx:
        tx.replace_vm(vm(1), [row(1, 1)])
    with pytest.raises(StoreError) as failure:
        with store.transaction() as tx:
            tx.apply_changes([VmChanges(vm_id(1), deletes=(device_id(1),))])
            tx.apply_changes([VmChanges(vm_id(7), inserts=(row(7, 2),))])  # no such VM
    assert "\n" not in str(failure.value)
    assert failure.value.transient is False
    assert isinstance(failure.value.__cause__, sa.exc.IntegrityError)
    with store.transaction() as tx:
        assert tx.count_rows() == 1


def test_pinned_transactions_share_one_connection_and_each_commits_or_rolls_back(store):
    """A tick's transactions share one connection (``Store.pinned``); each is still
    its own transaction, and a transaction opened inside another gets its own."""
    connections = []
    with store.pinned():
        with store.transaction() as tx:
            tx.upsert_vm(vm(1))
            connections.append(tx._connection)
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.upsert_vm(vm(2))
            connections.append(tx._connection)
            raise RuntimeError("rolled back")
        with store.transaction() as tx:
            assert sorted(tx.vms([vm_id(1), vm_id(2)])) == [vm_id(1)]
            connections.append(tx._connection)
            if store.dialect == "postgresql":  # SQLite would wait for its own write lock
                with store.transaction() as inner:
                    assert inner._connection is not tx._connection
    assert connections[0] is connections[1] is connections[2]
    # kept for the thread's next block (test_a_thread_keeps_its_connection_between_blocks)
    assert not connections[0].closed
    with store.transaction() as first:
        pass
    with store.transaction() as second:
        assert second._connection is not first._connection  # not pinned: one each


def _pinned_connection(store: Store):
    with store.pinned(), store.transaction() as tx:
        return tx._connection


def test_a_thread_keeps_its_connection_between_blocks(db_url):
    """docs/performance.md, "The eleventh wave" and "The fourteenth wave": a tick's
    checkout and return, saved."""
    found: list = []
    with Store.open(db_url) as store:
        first, again = _pinned_connection(store), _pinned_connection(store)
        other = threading.Thread(target=lambda: found.append(_pinned_connection(store)))
        other.start()
        other.join()
        first.invalidate()  # the database dropped it: the next block takes another
        replaced = _pinned_connection(store)
        # the other thread has ended: its connection was closed at the last keeping
        assert (first.closed, found[0].closed, replaced.closed) == (True, True, False)
    assert first is again and found[0] is not first and replaced is not first
    assert replaced.closed  # closed with the store


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_kept_postgresql_connection_whose_session_ended_is_replaced(db_url):
    """Between two blocks the server ended the kept connection's session (a restart, an
    operator's ``pg_terminate_backend``): the next block gets a new connection and its
    transaction works, with no error (``engine.idle_session_lost``)."""
    admin = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    with Store.open(db_url) as store:
        first = _pinned_connection(store)
        backend = first.connection.driver_connection.info.backend_pid
        with admin.connect() as other:
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({backend}, 10000)").scalar()
        with store.pinned(), store.transaction() as tx:
            tx.replace_vms([(vm(1), [])])
            assert tx._connection is not first
            assert tx._connection.connection.driver_connection.info.backend_pid != backend
        assert first.closed
        with store.transaction() as tx:
            assert tx.vm(vm_id(1)) is not None
    admin.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_kept_connections_are_not_reused_once_the_sessions_settings_change(db_url):
    """``limit_idle_transactions`` (``monitor run``'s lease keeper, at its start) is for
    every session: a connection a thread kept from before is replaced by one that has
    it, and one a block left in autocommit or in a transaction is not kept at all."""
    def idle_timeout(connection) -> str:
        return connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar()

    with Store.open(db_url) as store:
        before = _pinned_connection(store)
        store.limit_idle_transactions(42)
        with store.pinned(), store.transaction() as tx:
            assert tx._connection is not before
            assert idle_timeout(tx._connection) == "42s"
        assert before.closed
        with store.pinned():
            with store.transaction() as tx:
                kept = tx._connection
            kept.connection.driver_connection.autocommit = True  # as a broken block would
        assert kept.closed
        assert _pinned_connection(store) is not kept


def test_an_exception_in_the_block_rolls_back(store):
    with pytest.raises(KeyError):
        with store.transaction() as tx:
            tx.upsert_vm(vm(1))
            raise KeyError("caller bug")
    with store.transaction() as tx:
        assert tx.vm(vm_id(1)) is None


# --- last XML and locks -----------------------------------------------------------------


def test_last_xml_keeps_the_latest(store):
    with store.transaction() as tx:
        tx.upsert_vm(vm(1))
        assert tx.last_xml(vm_id(1)) is None
        tx.save_last_xml(vm_id(1), b"<domain>1</domain>", T0)
        tx.save_last_xml(vm_id(1), b"<domain>2</domain>", T0 + timedelta(seconds=1))
        assert tx.last_xml(vm_id(1)) == (b"<domain>2</domain>", T0 + timedelta(seconds=1))
        tx.upsert_vm(vm(2))
        later = T0 + timedelta(seconds=2)
        tx.save_last_xmls([(vm_id(1), b"<domain>3</domain>"), (vm_id(2), "<d>\u00e9</d>")], later)
        assert tx.last_xml(vm_id(1))[0] == b"<domain>3</domain>"
        assert tx.last_xml(vm_id(2)) == ("<d>\u00e9</d>".encode(), later)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_last_xml_is_compressed_with_lz4_on_postgresql(db_url):
    """docs/performance.md, "The tenth wave": a document large enough for the server to
    compress is stored with lz4 (migration 0005), and reads back as it was written;
    downgrading gives the column back the server's default. A server without lz4 (before
    14, or built without it) keeps pglz, and the migration leaves the column alone."""
    document = Fleet(1, 1).document(0, 0).xml  # ~9 KB: compressed by the server
    with Store.open(db_url) as store:
        with store.transaction() as tx:
            tx.upsert_vm(vm(1))
            tx.save_last_xmls([(vm_id(1), document)], T0)
        with store.transaction() as tx:
            assert tx.last_xml(vm_id(1)) == (document, T0)
    engine = sa.create_engine(parse_url(db_url))
    with engine.begin() as connection:
        has_lz4 = connection.execute(_MIGRATION_0005.SERVER_HAS_LZ4).scalar()
        stored = connection.execute(sa.text(
            "SELECT pg_column_compression(xml) FROM vm_last_xml")).scalar_one()
        command.downgrade(alembic_config(connection), "0004")
        after_downgrade = connection.execute(sa.text(_XML_COMPRESSION)).scalar_one()
        command.upgrade(alembic_config(connection), "head")
        after_upgrade = connection.execute(sa.text(_XML_COMPRESSION)).scalar_one()
    engine.dispose()
    expected = ("lz4", "", "l") if has_lz4 else ("pglz", "", "")
    assert (stored, after_downgrade, after_upgrade) == expected


_MIGRATION_0005 = importlib.import_module("monitor.store.migrations.versions.0005_last_xml_lz4")
# The column's own method: "l" (lz4), "p" (pglz), "" (the server's default).
_XML_COMPRESSION = ("SELECT attcompression FROM pg_attribute WHERE attname = 'xml' "
                    "AND attrelid = (current_schema() || '.vm_last_xml')::regclass")


@pytest.mark.parametrize(
    ("first_holder", "first_at", "taken"),
    [
        pytest.param(None, None, True, id="free"),
        pytest.param("hotplug", T0 - timedelta(seconds=5), False, id="held-by-another"),
        pytest.param("hotplug", T0 - timedelta(seconds=31), True, id="expired"),
        pytest.param("tick", T0 - timedelta(seconds=5), True, id="already-ours"),
    ],
)
def test_try_lock(store, first_holder, first_at, taken):
    with store.transaction() as tx:
        if first_holder:
            assert tx.try_lock(vm_id(1), first_holder, first_at, 30.0) is True
    with store.transaction() as tx:
        assert tx.try_lock(vm_id(1), "tick", T0, 30.0) is taken
        holder_now = "tick" if taken else first_holder
        assert tx.locked_vms([vm_id(1)], T0 + timedelta(seconds=1)) == {vm_id(1)}
        assert tx.try_lock(vm_id(1), "third", T0 + timedelta(seconds=1), 30.0) is False
        tx.release_lock(vm_id(1), "someone-else")
        assert tx.locked_vms([vm_id(1)], T0) == {vm_id(1)}
        tx.release_lock(vm_id(1), holder_now)
        assert tx.locked_vms([vm_id(1)], T0) == set()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("stored", "read"), [
    pytest.param("2024-05-01 12:00:00.250000", T0 + timedelta(microseconds=250_000),
                 id="as-the-engine-writes"),
    pytest.param("2024-05-01 12:00:00", T0, id="no-fraction"),
    pytest.param("2024-05-01T14:00:00+02:00", T0, id="with-an-offset"),
])
def test_sqlite_times_are_read_as_utc_whatever_wrote_them(db_url, stored, read):
    """SQLite stores naive UTC text; a time is read back aware, in UTC, also one written
    by hand with an offset (docs/performance.md, "The sixth wave": read in one call)."""
    with Store.open(db_url) as store, store.transaction() as tx:
        tx.upsert_vm(vm(1))
        tx._connection.exec_driver_sql("UPDATE vms SET hash_time = ?", (stored,))
        states, _read_at = tx.vm_states_and_host([vm_id(1)], "host1", utc_now)
    assert states[vm_id(1)].hash_time == read
    assert states[vm_id(1)].hash_time.utcoffset() == timedelta(0)


def test_take_locks_takes_the_free_expired_and_ours_at_the_database_clock(store):
    """``take_locks`` (a tick's ``Fence.take``): the same rule as ``try_lock_many``, at
    the database's clock (on PostgreSQL the upsert's own, with no read of it before)."""
    with store.transaction() as tx:
        now = tx.now(utc_now)
        tx.try_lock(vm_id(1), "hotplug", now, 60)  # held by another
        tx.try_lock(vm_id(2), "hotplug", now - timedelta(seconds=90), 60)  # expired
        tx.try_lock(vm_id(3), "tick", now - timedelta(seconds=10), 60)  # ours
    with store.transaction() as tx:
        before = tx.now(utc_now)
        held = tx.take_locks([vm_id(n) for n in (4, 3, 2, 1)], "tick", 30, "t1", utc_now)
        after = tx.now(utc_now)
    assert held == {vm_id(2), vm_id(3), vm_id(4)}
    with store.transaction() as tx:
        # each taken lock expires 30 s after the clock at the taking, and has the token
        expiring = tx.locks_held([vm_id(n) for n in range(1, 5)], "tick", "t1",
                                 before + timedelta(seconds=29.9))
        assert expiring == {vm_id(2), vm_id(3), vm_id(4)}
        assert tx.locks_held([vm_id(2)], "tick", "t1", after + timedelta(seconds=30)) == set()
        assert tx.take_locks([], "tick", 30, "t1", utc_now) == set()


def test_try_lock_many_takes_the_free_expired_and_ours(store):
    with store.transaction() as tx:
        tx.try_lock(vm_id(1), "hotplug", T0, 60)  # held by another
        tx.try_lock(vm_id(2), "hotplug", T0 - timedelta(seconds=90), 60)  # expired
        tx.try_lock(vm_id(3), "tick", T0 - timedelta(seconds=10), 60)  # ours
    with store.transaction() as tx:
        held = tx.try_lock_many([vm_id(n) for n in (4, 3, 2, 1)], "tick", T0, 60)
    assert held == {vm_id(2), vm_id(3), vm_id(4)}
    with store.transaction() as tx:
        assert tx.locked_vms([vm_id(n) for n in range(1, 5)], T0 + timedelta(seconds=59)) == {
            vm_id(1), vm_id(2), vm_id(3), vm_id(4)}
        tx.release_locks([vm_id(n) for n in range(1, 5)], "tick")
        assert tx.locked_vms([vm_id(n) for n in range(1, 5)], T0) == {vm_id(1)}
        assert tx.try_lock_many([], "tick", T0, 60) == set()


def test_locked_vms_ignores_expired_and_free(store):
    with store.transaction() as tx:
        tx.try_lock(vm_id(1), "a", T0, 10)
        tx.try_lock(vm_id(2), "b", T0 - timedelta(seconds=60), 10)
        assert tx.locked_vms([vm_id(n) for n in range(1, 4)], T0) == {vm_id(1)}


# --- errors -----------------------------------------------------------------------------


def test_an_unreachable_server_is_a_transient_one_line_error():
    with pytest.raises(StoreError) as failure:
        Store.open("postgresql://postgres@127.0.0.1:1/test")
    assert failure.value.transient is True
    assert "\n" not in str(failure.value)
    assert "127.0.0.1" in str(failure.value)
    assert isinstance(failure.value.__cause__, sa.exc.OperationalError)


def _wrapped(original: Exception, kind=sa.exc.OperationalError) -> sa.exc.DBAPIError:
    return kind("SELECT 1", {}, original)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(_wrapped(sqlite3.OperationalError("database is locked")), True,
                     id="sqlite-locked"),
        pytest.param(_wrapped(sqlite3.OperationalError("no such table: vms")), False,
                     id="sqlite-no-table"),
        pytest.param(_wrapped(sqlite3.IntegrityError("FOREIGN KEY constraint failed"),
                              sa.exc.IntegrityError), False, id="sqlite-integrity"),
        pytest.param(_wrapped(psycopg.errors.SerializationFailure("x")), True,
                     id="pg-serialization"),
        pytest.param(_wrapped(psycopg.errors.DeadlockDetected("x")), True, id="pg-deadlock"),
        pytest.param(_wrapped(psycopg.errors.LockNotAvailable("x")), True, id="pg-lock-timeout"),
        pytest.param(_wrapped(psycopg.errors.UniqueViolation("x"), sa.exc.IntegrityError),
                     False, id="pg-unique"),
        pytest.param(_wrapped(psycopg.OperationalError("server closed the connection")), True,
                     id="pg-connection-lost"),
    ],
)
def test_transient_errors(error, transient):
    assert is_transient(error) is transient


def test_a_schema_newer_than_this_program_is_refused_in_one_line(db_url):
    Store.open(db_url).close()
    engine = sa.create_engine(parse_url(db_url))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError) as failure:
        Store.open(db_url)
    assert "revision 9999, unknown to this version" in str(failure.value)
    assert failure.value.transient is False


def test_commits_are_not_flushed_one_by_one(db_url):
    """The durability trade of monitor/store/engine.py: asynchronous commits, atomic ones."""
    import sqlalchemy as sa

    from monitor.store.engine import create_engine

    engine = create_engine(db_url)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        else:
            assert connection.execute(sa.text("SHOW synchronous_commit")).scalar() == "off"
    engine.dispose()


def test_postgresql_times_come_back_in_python_s_own_utc(pg_database):
    """The engine's PostgreSQL sessions are in ``UTC`` (monitor/store/engine.py): psycopg
    hands back ``timezone.utc`` itself, which the store's reads pass through as they are
    (no ``zoneinfo`` per value); the instant is the one written, whatever the server's
    own zone."""
    import sqlalchemy as sa

    from monitor.store.engine import create_engine
    from monitor.store.schema import UtcDateTime

    db_url = pg_database.render_as_string(hide_password=False)
    engine = create_engine(db_url)
    written = datetime(2026, 12, 3, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=5)))
    with engine.connect() as connection:
        assert connection.execute(sa.text("SHOW TimeZone")).scalar() == "UTC"
        raw = connection.execute(sa.select(sa.literal(written, UtcDateTime))).scalar()
        typed = connection.execute(
            sa.select(sa.cast(sa.literal(written, UtcDateTime), UtcDateTime))).scalar()
    engine.dispose()
    assert raw == written and typed == written
    assert typed.tzinfo is UTC


def test_postgresql_pooled_connections_are_checked_outside_a_transaction(pg_database):
    """The engine's checkout check (monitor/store/engine.py): a pooled connection whose
    session the server ended while it sat in the pool is replaced, with no error for
    the caller; a live one is kept; and the check leaves it as it found it: idle, in
    no transaction, not in autocommit."""
    import psycopg
    import sqlalchemy as sa

    from monitor.store.engine import create_engine

    def backend(connection) -> int:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    engine = create_engine(pg_database.render_as_string(hide_password=False))
    admin = sa.create_engine(pg_database, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            first = backend(connection)
        with engine.connect() as connection:
            assert backend(connection) == first  # alive: kept
        with admin.connect() as other:  # the pooled connection's session, ended (waited for)
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({first}, 10000)").scalar()
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert driver.autocommit is False
            second = backend(connection)
        assert second != first
    finally:
        engine.dispose()
        admin.dispose()


def test_the_checkout_check_sees_what_a_session_was_sent_unasked_and_its_end():
    """The socket question behind that check: nothing to read on an idle session; a
    message its server sent (the one that ends a session), or the stream's end, is."""
    import socket

    from monitor.store.engine import _sent_unasked

    ours, server = socket.socketpair()
    with ours, server:
        assert not _sent_unasked(ours.fileno())
        server.sendall(b"E")
        assert _sent_unasked(ours.fileno())
        ours.recv(1)
        assert not _sent_unasked(ours.fileno())
        server.close()
        assert _sent_unasked(ours.fileno())


# --- reads outside a transaction (Store.read) -------------------------------------------


class Rollback(Exception):
    pass


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("through", ["driver", "sqlalchemy"])
def test_a_read_whose_session_ends_leaves_the_next_block_a_transaction(db_url, through):
    """A read (PostgreSQL: autocommit on the pinned connection's driver) whose session
    the server ends mid-block fails with a StoreError that says so, whether its
    statement ran on the driver's cursor (the tick's) or through SQLAlchemy, which
    began a transaction of its own; the next block gets a live connection, and its
    transaction is one again."""
    with Store.open(db_url) as store:
        with store.transaction() as tx:
            tx.replace_vms([(vm(1), [])])
        admin = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                                 isolation_level="AUTOCOMMIT")
        with store.pinned():
            with pytest.raises(StoreError) as lost, store.read() as tx:
                backend = tx._connection.connection.driver_connection.info.backend_pid
                with admin.connect() as other:
                    assert other.exec_driver_sql(
                        f"SELECT pg_terminate_backend({backend}, 10000)").scalar()
                if through == "driver":
                    tx.vm_states_and_host([vm_id(1)], "host1", utc_now)
                else:
                    tx._connection.exec_driver_sql("SELECT 1")
            assert lost.value.unavailable, lost.value
        admin.dispose()
        with store.pinned():
            with store.read() as tx:
                states, _read_at = tx.vm_states_and_host([vm_id(1)], "host1", utc_now)
                assert states[vm_id(1)].status == "Up"
            with pytest.raises(Rollback), store.transaction() as tx:
                assert not tx._connection.connection.driver_connection.autocommit
                assert tx.set_status(vm_id(1), "Paused")
                raise Rollback
        with store.read() as tx:
            states, _read_at = tx.vm_states_and_host([vm_id(1)], "host1", utc_now)
        assert states[vm_id(1)].status == "Up"


@pytest.mark.parametrize("read_fails", [False, True], ids=["after-a-read", "after-a-failed-read"])
def test_a_transaction_after_a_read_in_the_same_pinned_block_is_still_one(store, read_fails):
    """``Store.read`` runs on PostgreSQL outside a transaction (autocommit) on the block's
    pinned connection; whatever happens in it, the block's next transaction on that
    connection is a transaction again: its write is rolled back with it."""
    with store.transaction() as tx:
        tx.replace_vms([(vm(1), [])])
    with store.pinned():
        with (pytest.raises(Rollback) if read_fails else contextlib.nullcontext(),
              store.read() as tx):
            states, _read_at = tx.vm_states_and_host([vm_id(1)], "host1", utc_now)
            assert states[vm_id(1)].status == "Up"
            if read_fails:
                raise Rollback
        with pytest.raises(Rollback), store.transaction() as tx:
            assert tx.set_status(vm_id(1), "Paused")
            raise Rollback
        with store.read() as tx:
            states, _read_at = tx.vm_states_and_host([vm_id(1)], "host1", utc_now)
    assert states[vm_id(1)].status == "Up"
