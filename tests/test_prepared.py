"""The tick's statements run on SQLite's own cursor (``monitor.store.prepared``;
docs/performance.md, "The seventh wave") read and write exactly what SQLAlchemy's
execution would, and fail with the same errors.

Each statement the tick routes through ``prepared`` is run both ways on the same
database and the answers compared value by value, types included (aware UTC times,
decoded JSON, booleans).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.errors import StoreError
from monitor.model.rows import DeviceRow, VmRecord
from monitor.store import Store, prepared
from monitor.store.repository import (
    _BY_IDS,
    _advance_statement,
    _take_locks,
    _upsert_last_xml,
)
from monitor.store.row_writes import _INSERT_ROW
from monitor.store.schema import vm_devices, vm_last_xml, vms

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
VMS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(3)]


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as opened:
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


def typed(rows: list[tuple]) -> list[tuple]:
    return [tuple((type(value), value) for value in row) for row in rows]


@pytest.mark.parametrize("name", ["states", "states_on_host", "rows", "hash_times",
                                  "locks_held", "release_locks_held"])
def test_a_read_by_ids_returns_what_sqlalchemy_returns(store, name):
    params = {"ids": VMS, "b_host": "host1", "b_holder": "me", "b_token": "tok",
              "b_now": T0 - timedelta(seconds=1)}
    driver, alchemy = both_ways(store, getattr(_BY_IDS["sqlite"], name), params)
    assert driver and typed(sorted(driver)) == typed(sorted(alchemy))


def test_the_rows_come_back_typed(store):
    driver, _ = both_ways(store, _BY_IDS["sqlite"].rows, {"ids": VMS[:1]})
    row = DeviceRow(*sorted(driver)[1])
    assert row.address == {"type": "pci", "slot": "0x01"}
    assert row.spec_params == {"k": [1, None, True]}
    assert row.is_plugged is True and row.logical_name is None
    (_vm, when), = both_ways(store, _BY_IDS["sqlite"].hash_times, {"ids": VMS[:1]})[0]
    assert when == T0 and when.tzinfo is not None


def test_the_lock_upsert_returns_what_sqlalchemy_returns(store):
    params = {"vm_id": VMS[2], "holder": "other", "token": "t2",
              "expires_at": T0 + timedelta(seconds=60), "b_now": T0}
    driver, alchemy = both_ways(store, _take_locks("sqlite"), params)
    assert driver == alchemy == [(VMS[2],)]
    held = dict(params, vm_id=VMS[0])  # held by "me", unexpired at T0: not taken
    assert both_ways(store, _take_locks("sqlite"), held) == ([], [])


def written(store: Store, statement, params: list[dict], read) -> tuple[list, list]:
    """What ``read`` finds after ``statement`` over ``params`` by each path (rolled back
    in between)."""
    found = []
    for run in (prepared.execute_many,
                lambda connection, s, p: connection.execute(s, p).rowcount):
        with store._engine.connect() as connection, connection.begin() as transaction:
            count = run(connection, statement, params)
            found.append((count, [tuple(row) for row in connection.execute(read).all()]))
            transaction.rollback()
    return found[0], found[1]


def test_the_writes_store_what_sqlalchemy_stores(store):
    advance = [{"b_id": VMS[0], "b_hash": "new", "b_report_time": T0 + timedelta(hours=1)},
               {"b_id": VMS[1], "b_hash": None, "b_report_time": T0}]
    driver, alchemy = written(store, _advance_statement(False, False), advance,
                              sa.select(vms).order_by(vms.c.id))
    assert driver == alchemy and driver[0] == 2
    xml = [{"vm_id": VMS[0], "xml": b"<domain/>", "fetched_at": T0}]
    driver, alchemy = written(store, _upsert_last_xml("sqlite"), xml, sa.select(vm_last_xml))
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
    assert "FOREIGN KEY" in str(raised.value.orig)
    # and Store says it in one line, as ever
    with pytest.raises(StoreError) as failure, store.transaction() as tx:
        prepared.execute_many(tx._connection, _INSERT_ROW, [orphan])
    assert "\n" not in str(failure.value) and failure.value.transient is False


def test_a_missing_parameter_is_refused_not_sent_as_null(store):
    with (store._engine.connect() as connection, connection.begin(),
          pytest.raises(sa.exc.ArgumentError, match="b_host")):
        prepared.fetch(connection, _BY_IDS["sqlite"].states_on_host, {})


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
            tx.save_last_xmls([(VMS[0], b"<domain/>")], T0)
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)
    assert seen == [("BEGIN", False), ("SELECT", False), ("INSERT", True)]
