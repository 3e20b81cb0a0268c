"""The tick's statements run on the driver's own cursor (``monitor.store.prepared``;
docs/performance.md, "The seventh wave" and "The eighth wave") read and write exactly
what SQLAlchemy's execution would, and fail with the same errors, on both databases.

Each statement the tick routes through ``prepared`` is run both ways on the same
database and the answers compared value by value, types included (aware UTC times,
decoded JSON, booleans).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.errors import StoreError
from monitor.model.changes import RowUpdate, VmChanges
from monitor.model.rows import DeviceRow, VmRecord
from monitor.store import Store, jsontext, prepared
from monitor.store.batch_writes import _BATCH
from monitor.store.repository import (
    _BY_IDS,
    _UPSERT_LAST_XML,
    Tx,
    _advance_statement,
    _take_locks,
)
from monitor.store.row_writes import _INSERT_ROW, row_values, write_changes
from monitor.store.schema import vm_devices, vm_last_xml, vms

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
VMS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(3)]


@pytest.fixture
def store(db_url):
    with Store.open(db_url) as opened:
        with opened.transaction() as tx:
            tx.replace_vms([
                (VmRecord(id=vm, name=f"vm{n}", host="host1", status="Up", hash=f"h{n}",
                          hash_time=T0 + timedelta(seconds=n)),
                 [DeviceRow(device_id=f"d{n}-{k}", vm_id=vm, type="disk", device="disk",
                            address={"type": "pci", "slot": f"0x0{k}"}, alias=f"ua-{k}",
                            spec_params={"k": [k, None, True]}, is_plugged=bool(k % 2),
                            logical_name=None if k else "/dev/vda")
                  for k in range(3)])
                for n, vm in enumerate(VMS)
            ])
            tx.take_locks(VMS[:2], "me", 60.0, "tok", lambda: T0)
        yield opened


def both_ways(store: Store, statement, params) -> tuple[list[tuple], list[tuple]]:
    """``statement``'s rows by the driver path, then by SQLAlchemy's, in one transaction
    that is rolled back (a DML statement sees the same rows both times)."""
    with store._engine.connect() as connection:
        with connection.begin() as transaction:
            driver = [tuple(row) for row in prepared.fetch(connection, statement, params)]
            transaction.rollback()
        with connection.begin() as transaction:
            alchemy = [tuple(row) for row in connection.execute(statement, params).all()]
            transaction.rollback()
    return driver, alchemy


def dialect(store: Store) -> str:
    return store._engine.dialect.name


def typed(rows: list[tuple]) -> list[tuple]:
    return [tuple((type(value), value) for value in row) for row in rows]


@pytest.mark.parametrize("name", ["states", "states_on_host", "rows", "hash_times",
                                  "locks_held", "release_locks_held"])
def test_a_read_by_ids_returns_what_sqlalchemy_returns(store, name):
    params = {"ids": VMS, "b_host": "host1", "b_holder": "me", "b_token": "tok",
              "b_now": T0 - timedelta(seconds=1)}
    statement = getattr(_BY_IDS[dialect(store)], name)
    driver, alchemy = both_ways(store, statement, params)
    # PostgreSQL's reads also carry the database's clock, read anew by each statement
    clock = [index for index, column in enumerate(statement.exported_columns)
             if column.name.startswith("statement_timestamp")]
    assert driver and typed(sorted(without(driver, clock))) == typed(
        sorted(without(alchemy, clock)))
    assert all(row[index].tzinfo is UTC for row in driver + alchemy for index in clock)


def without(rows: list[tuple], columns: list[int]) -> list[tuple]:
    return [tuple(value for index, value in enumerate(row) if index not in columns)
            for row in rows]


def test_the_rows_come_back_typed(store):
    driver, _ = both_ways(store, _BY_IDS[dialect(store)].rows, {"ids": VMS[:1]})
    row = DeviceRow(*sorted(driver)[1])
    assert row.address == {"type": "pci", "slot": "0x01"}
    assert row.spec_params == {"k": [1, None, True]}
    assert row.is_plugged is True and row.logical_name is None
    (_vm, when, *_clock), = both_ways(store, _BY_IDS[dialect(store)].hash_times,
                                      {"ids": VMS[:1]})[0]
    assert when == T0 and when.tzinfo is UTC


def test_json_text_is_read_as_sqlalchemy_reads_it_hand_edited_values_included(store):
    """On SQLite ``prepared`` decodes a NOT NULL JSON column with ``jsontext.loads``
    itself, the deserializer the engine gives SQLAlchemy, not through SQLAlchemy's
    wrappers: the same values, for the text ``jsontext.dumps`` wrote and for what a
    person may have stored by hand (a bare number, which SQLite keeps as a number;
    text with spaces; a list)."""
    assert store._engine.dialect._json_deserializer is jsontext.loads
    hand_made = {"d0-0": "7", "d0-1": ' { "a" : [1, 2.5] } ', "d0-2": "[1, \"x\"]"}
    with store.transaction() as tx:
        for device_id, text in hand_made.items():
            tx._connection.execute(sa.text("UPDATE vm_devices SET spec_params = "
                                           + ("CAST(:v AS JSONB)" if dialect(store) ==
                                              "postgresql" else ":v")
                                           + " WHERE device_id = :d"),
                                   {"v": text, "d": device_id})
    driver, alchemy = both_ways(store, _BY_IDS[dialect(store)].rows, {"ids": VMS[:1]})
    assert typed(sorted(driver)) == typed(sorted(alchemy))
    stored = sorted((row[6] for row in driver), key=repr)
    assert stored == sorted([7, {"a": [1, 2.5]}, [1, "x"]], key=repr)


def test_the_lock_upsert_returns_what_sqlalchemy_returns(store):
    params = {"vm_id": VMS[2], "holder": "other", "token": "t2",
              "expires_at": T0 + timedelta(seconds=60), "b_now": T0}
    driver, alchemy = both_ways(store, _take_locks(dialect(store)), params)
    assert driver == alchemy == [(VMS[2],)]
    held = dict(params, vm_id=VMS[0])  # held by "me", unexpired at T0: not taken
    assert both_ways(store, _take_locks(dialect(store)), held) == ([], [])


def written(store: Store, statement, params: list[dict], read) -> tuple[list, list]:
    """What ``read`` finds after ``statement`` over ``params`` by each path (rolled back
    in between)."""
    found = []
    for run in (prepared.execute_many, alchemy_many):
        with store._engine.connect() as connection, connection.begin() as transaction:
            count = run(connection, statement, params)
            found.append((count, [tuple(row) for row in connection.execute(read).all()]))
            transaction.rollback()
    return found[0], found[1]


def alchemy_many(connection, statement, params: list[dict]) -> int:
    """SQLAlchemy's executemany: its count, where its driver gives one (psycopg's
    executemany through SQLAlchemy does not: -1, one row per parameter set here)."""
    count = connection.execute(statement, params).rowcount
    return count if count >= 0 else len(params)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_writes_store_what_sqlalchemy_stores(store):
    """SQLite's executemany statements (PostgreSQL's batch statement: below)."""
    advance = [{"b_id": VMS[0], "b_hash": "new", "b_report_time": T0 + timedelta(hours=1)},
               {"b_id": VMS[1], "b_hash": None, "b_report_time": T0}]
    driver, alchemy = written(store, _advance_statement(False, False), advance,
                              sa.select(vms).order_by(vms.c.id))
    assert driver == alchemy and driver[0] == 2
    xml = [{"vm_id": VMS[0], "xml": b"<domain/>", "fetched_at": T0}]
    driver, alchemy = written(store, _UPSERT_LAST_XML, xml,
                              sa.select(vm_last_xml))
    assert driver == alchemy and driver[1] == [(VMS[0], b"<domain/>", T0)]
    row = {"device_id": "new", "vm_id": VMS[2], "type": "interface", "device": "bridge",
           "address": {}, "alias": "", "spec_params": {}, "is_managed": False,
           "is_plugged": True, "is_readonly": False, "logical_name": None,
           "host_device": None, "custom_properties": {}}
    driver, alchemy = written(store, _INSERT_ROW, [row],
                              sa.select(vm_devices).order_by(vm_devices.c.device_id))
    assert driver == alchemy and driver[0] == 1


def test_a_failing_statement_raises_what_sqlalchemy_raises(store):
    orphan = {"device_id": "x", "vm_id": "no-such-vm", "type": "disk", "device": "disk",
              "address": {}, "alias": "", "spec_params": {}, "is_managed": True,
              "is_plugged": True, "is_readonly": False, "logical_name": None,
              "host_device": None, "custom_properties": {}}
    with (store._engine.connect() as connection, connection.begin(),
          pytest.raises(sa.exc.IntegrityError) as raised):
        prepared.execute_many(connection, _INSERT_ROW, [orphan])
    assert "foreign key" in str(raised.value.orig).lower()
    # and Store says it in one line, as ever
    with pytest.raises(StoreError) as failure, store.transaction() as tx:
        prepared.execute_many(tx._connection, _INSERT_ROW, [orphan])
    assert "\n" not in str(failure.value) and failure.value.transient is False


def test_a_missing_parameter_is_refused_not_sent_as_null(store):
    with (store._engine.connect() as connection, connection.begin(),
          pytest.raises(sa.exc.ArgumentError, match="b_host")):
        prepared.fetch(connection, _BY_IDS[dialect(store)].states_on_host, {})


def test_a_locked_database_is_unavailable_as_through_sqlalchemy(tmp_path):
    """The driver's own ``BEGIN IMMEDIATE`` (the engine's begin hook) against a write lock
    held elsewhere: the same ``StoreError`` as before, unavailable and transient."""
    url = f"sqlite:///{tmp_path / 'monitor.db'}?timeout=0.05"
    # the holder's begin is the engine's BEGIN IMMEDIATE: the write lock, held
    with (Store.open(url) as store, store._engine.connect() as holder, holder.begin(),
          pytest.raises(StoreError) as failure, store.transaction() as tx):
        tx.count_rows()
    assert failure.value.unavailable and failure.value.transient
    assert "locked" in str(failure.value)


def test_every_statement_is_announced_to_listeners(store):
    seen = []

    def record(_connection, _cursor, statement, parameters, _context, many):
        seen.append((statement.split()[0], many))

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        with store.transaction() as tx:
            tx.rows(VMS)
            tx.save_last_xmls([(VMS[0], b"<domain/>")], T0)  # one set: one execute
            tx.save_last_xmls([(VMS[0], b"<domain/>"), (VMS[1], b"<domain/>")], T0)
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)
    if dialect(store) == "sqlite":
        assert seen == [("BEGIN", False), ("SELECT", False), ("INSERT", False),
                        ("INSERT", True)]
    else:  # psycopg's BEGIN is its own; the last XMLs go in the batch statement
        assert seen == [("SELECT", False), ("WITH", False), ("WITH", False)]


def test_a_batch_of_row_changes_stores_what_plain_sqlalchemy_stores(store):
    """The dialect's write path (``Tx.apply_changes``: PostgreSQL's batch statement,
    SQLite's executemany, both on the driver's cursor) against one SQLAlchemy statement
    per row: the same rows, and a count of every row written."""
    changes = [
        VmChanges(VMS[0], updates=(
            RowUpdate("d0-1", False, {"type": "pci", "slot": "0x09"}, "ua-9", "/dev/vdz", None),
            RowUpdate("d0-2", True, {}, "", None, "pci_0000_00_1f_2"),
        ), deletes=("d0-0",)),
        VmChanges(VMS[2], updates=(  # the alias kept: left out of SQLite's UPDATE
            RowUpdate("d2-1", True, {"type": "pci", "slot": "0x07"}, "ua-1", None, None,
                      alias_changed=False),
        )),
        VmChanges(VMS[1], deletes=("d1-1", "d1-2"), inserts=(
            DeviceRow(device_id="n1", vm_id=VMS[1], type="interface", device="bridge",
                      address={"type": "pci", "bus": "0x01"}, alias="net0",
                      spec_params={}, is_plugged=True, is_managed=False),
        )),
    ]
    read = sa.select(vm_devices).order_by(vm_devices.c.vm_id, vm_devices.c.device_id)
    found = []
    for write in (dialect_path, one_statement_per_row):
        with store._engine.connect() as connection, connection.begin() as transaction:
            count = write(connection, changes)
            found.append((count, [dict(row._mapping)
                                  for row in connection.execute(read).all()]))
            transaction.rollback()
    assert found[0] == found[1] and found[0][0] == 7
    rows = {row["device_id"]: row for row in found[0][1]}
    assert sorted(rows) == ["d0-1", "d0-2", "d1-0", "d2-0", "d2-1", "d2-2", "n1"]
    assert rows["d0-1"]["address"] == {"type": "pci", "slot": "0x09"}
    assert rows["d0-1"]["is_plugged"] is False and rows["d0-1"]["logical_name"] == "/dev/vdz"
    assert rows["d0-2"]["host_device"] == "pci_0000_00_1f_2"
    assert (rows["d2-1"]["address"], rows["d2-1"]["alias"]) == (
        {"type": "pci", "slot": "0x07"}, "ua-1")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_sets_an_alias_only_where_it_changes(store):
    """SQLite rewrites the ``(vm_id, alias)`` index entry of every row whose UPDATE sets
    the alias, changed or not (docs/performance.md, "The eleventh wave")."""
    changes = [VmChanges(VMS[0], updates=(
        RowUpdate("d0-0", True, {}, "ua-0", None, None, alias_changed=False),
        RowUpdate("d0-1", True, {}, "ua-new", None, None, alias_changed=True),
        RowUpdate("d0-2", True, {}, "ua-2", None, None, alias_changed=False),
    ))]
    sent = []
    with store._engine.connect() as connection, connection.begin() as transaction:
        sa.event.listen(connection, "before_cursor_execute",
                        lambda *event: sent.append((event[2], len(event[3]))))
        write_changes(connection, changes)
        transaction.rollback()
    assert [("alias" in sql.split("WHERE")[0], count) for sql, count in sent] == [
        (True, 1), (False, 2)]


def dialect_path(connection, changes) -> int:
    return Tx(connection).apply_changes(changes)


def one_statement_per_row(connection, changes) -> int:
    """The changes by plain SQLAlchemy, a statement per row; the rows they list."""
    for change in changes:
        for device_id in change.deletes:
            connection.execute(sa.delete(vm_devices).where(
                vm_devices.c.vm_id == change.vm_id, vm_devices.c.device_id == device_id))
        for update in change.updates:
            connection.execute(sa.update(vm_devices).where(
                vm_devices.c.vm_id == change.vm_id,
                vm_devices.c.device_id == update.device_id).values(
                address=update.address, alias=update.alias, is_plugged=update.is_plugged,
                logical_name=update.logical_name, host_device=update.host_device))
        for row in change.inserts:
            connection.execute(sa.insert(vm_devices), row_values(row))
    return sum(change.rows_written for change in changes)


def test_a_lost_connection_is_replaced_for_the_next_transaction(store, db_url):
    """A session the server ends under a statement on the driver's cursor: the error is
    unavailable (the tick stops and the worker backs off), and the block's next
    transaction, on the same pinned connection, gets a new one from the pool (no
    checkout, so no ping, in between); as through SQLAlchemy's own execution."""
    with store.pinned():
        with pytest.raises(StoreError) as failure, store.transaction() as tx:
            if dialect(store) == "sqlite":  # no server to lose: the file's connection closed
                tx._connection.connection.driver_connection.close()
            else:
                pid = tx._connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with sa.create_engine(db_url).connect() as admin:
                    admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
                    admin.commit()
            tx.rows(VMS)
        if dialect(store) == "postgresql":
            assert failure.value.unavailable and failure.value.transient
        with store.transaction() as tx:
            assert len(tx.rows(VMS)[VMS[0]]) == 3


def test_the_driver_gets_exactly_the_parameters_the_text_names(store):
    """What goes to the driver is what the compiled text asks for: psycopg's mapping
    has a key for each ``%(name)s`` and no other (not SQLAlchemy's anonymous names),
    sqlite3's tuple a value for each ``?``. Each dialect's own write statements:
    SQLite's executemany ones, PostgreSQL's batch statement."""
    import re

    engine_dialect = store._engine.dialect
    statements = {"take_locks": _take_locks(dialect(store)),
                  "rows": _BY_IDS[dialect(store)].rows}
    if dialect(store) == "sqlite":
        statements.update(advance=_advance_statement(True, True), insert_row=_INSERT_ROW,
                          last_xml=_UPSERT_LAST_XML)
    else:
        statements.update(batch=_BATCH)
    for name, statement in statements.items():
        compiled = prepared.prepared(statement, engine_dialect)
        given = {name: None for name in compiled.names}
        values = prepared._values(compiled, given)
        if compiled.keys is None:
            assert len(values) == compiled.sql.count("?") > 0, name
        else:
            assert set(values) == set(re.findall(r"%\((\w+)\)s", compiled.sql)) != set(), name


def test_the_lock_tables_statements_are_planned_with_their_values_each_time(store):
    """psycopg prepares a statement run five times on a connection, and PostgreSQL then
    keeps one generic plan for it: made while the lock table was small, it scans the
    table whole once every tick has filled and emptied it (docs/performance.md, "The
    ninth wave"). The lock table's statements are never prepared; the others still are.
    SQLite's driver takes no such option, and is given none."""
    by_ids = _BY_IDS[dialect(store)]
    locks = {"locks_held": by_ids.locks_held, "release_locks_held": by_ids.release_locks_held,
             "release_locks_of_token": by_ids.release_locks_of_token}
    engine_dialect = store._engine.dialect
    if dialect(store) == "sqlite":
        assert all(not prepared.prepared(statement, engine_dialect).options
                   for statement in [*locks.values(), by_ids.rows])
        return
    with store.pinned():
        for _ in range(8):
            with store.transaction() as tx:
                assert tx.take_locks(VMS[:2], "me", 60.0, "tok", lambda: T0) == set(VMS[:2])
                tx.rows(VMS)
                assert tx.release_locks_held(VMS, "me", "tok", T0) == set(VMS[:2])
                assert tx.locks_held(VMS, "me", "tok", T0) == set()
                tx.release_locks(VMS, "me", "tok")
        with store.read() as tx:
            named = tx._connection.exec_driver_sql(
                "SELECT statement FROM pg_prepared_statements").scalars().all()
    texts = {prepared.prepared(statement, engine_dialect).sql for statement in locks.values()}
    assert all(prepared.execute_options(text) == {"prepare": False} for text in texts)
    # No statement that finds lock rows; the taking upsert (which finds its row by the
    # primary key's conflict, whatever the plan) and the rows read are prepared.
    assert not [text for text in named if "FROM vm_device_locks" in text]
    assert [text for text in named if text.startswith("INSERT INTO vm_device_locks")]
    assert [text for text in named if "FROM vm_devices" in text]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_no_executemany_is_sent_to_postgresql(store):
    """psycopg's ``executemany`` pipelines its statements, and the server arms no idle
    timeout between them (``monitor.store.prepared``): many rows go in one statement
    (``batch_writes``); an executemany is refused before anything is sent."""
    rows = [row_values(DeviceRow(device_id=f"n{n}", vm_id=VMS[0], type="disk",
                                 device="disk")) for n in range(2)]
    with store.transaction() as tx:
        with pytest.raises(RuntimeError, match="pipelines"):
            prepared.execute_many(tx._connection, _INSERT_ROW, rows)
        assert prepared.execute_many(tx._connection, _INSERT_ROW, rows[:1]) == 1
