"""How many statements a tick sends (docs/performance.md, "What each change bought").

Counts, never times: a host tick with one changed VM pays a fixed number of statements
(its per-host cost in the partial tick), and a batch's row writes are one statement per
kind however many rows change on SQLite; on PostgreSQL a batch's writes are one statement
in all, never an executemany (docs/performance.md, "The thirteenth wave").
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import sqlalchemy as sa

from monitor.bench.fleet import Fleet
from monitor.bench.runner import _FleetState, load, tick_fleet
from monitor.store import Store
from monitor.tick.host_tick import TickContext

VMS = 20

# Per host tick with one changed VM: the first read (its VMs and the host's), the
# devices locks taken (one upsert), then the apply (fence check and release in one
# statement, rows, hash guard and advance, row writes, last XML). PostgreSQL adds the
# VM row locks (whose hash times serve the guard, and which read the database's clock
# with them, as the first read does: the report time), reads the rows in the fence's
# statement (``Tx.claim_rows``) and sends the batch's writes as one statement
# (``batch_writes``); SQLite sends the BEGIN IMMEDIATE of the two transactions after
# the read.
ONE_VM_TICK = {"sqlite": 10, "postgresql": 5}


def no_progress(phase: str, done: int, total: int) -> None:
    pass


@contextmanager
def counted(store: Store):
    """Every statement sent to the database: (verb, table written, executemany) -> count."""
    seen: Counter = Counter()

    def count(connection, cursor, statement, parameters, context, executemany):
        words = statement.split()
        verb = words[0].upper()
        table = {"UPDATE": 1, "DELETE": 2, "INSERT": 2}.get(verb)
        seen[verb, table and words[table], executemany] += 1

    engine = store._engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


@contextmanager
def executemanys(monkeypatch, store: Store):
    """The statements psycopg's ``executemany`` sends in the block (in pipeline mode:
    ``monitor.store.prepared``); none on SQLite."""
    sent: list[str] = []
    if store.dialect != "postgresql":
        yield sent
        return
    import psycopg

    real = psycopg.Cursor.executemany

    def executemany(cursor, query, params_seq, **options):
        sent.append(query)
        return real(cursor, query, params_seq, **options)

    with monkeypatch.context() as patched:
        patched.setattr(psycopg.Cursor, "executemany", executemany)
        yield sent


@contextmanager
def started_fleet(db_url: str):
    with Store.open(db_url) as store:
        context = TickContext(store=store, holder="statements-test", batch_size=VMS)
        state = _FleetState(Fleet(VMS, 1))
        load(context, state.fleet, no_progress)
        tick_fleet(context, state, "start", no_progress)
        yield store, context, state


def test_a_host_tick_with_one_changed_vm_sends_a_fixed_few_statements(db_url):
    with started_fleet(db_url) as (store, context, state):
        state.flip([VMS // 2])
        with counted(store) as seen:
            tick = tick_fleet(context, state, "one", no_progress)
    assert (tick.total.applied, tick.total.rows_written) == (1, 29)
    assert sum(seen.values()) == ONE_VM_TICK[store.dialect], seen


def test_a_full_batch_writes_its_rows_with_one_statement_per_kind(db_url, monkeypatch):
    with started_fleet(db_url) as (store, context, state):
        state.flip(range(VMS))
        with counted(store) as seen, executemanys(monkeypatch, store) as pipelined:
            tick = tick_fleet(context, state, "full", no_progress)
    assert tick.total.applied == VMS and tick.total.rows_written > 25 * VMS
    if store.dialect == "sqlite":  # the driver's executemany, one call
        row_writes = {key: n for key, n in seen.items() if key[1] == "vm_devices"}
        assert row_writes == {("UPDATE", "vm_devices", True): 1}, seen
        return
    # PostgreSQL: the batch's writes (hashes, rows, last XMLs) are one statement, one
    # parameter set: one round trip; no statement is an executemany (pipelined).
    assert seen[("WITH", None, False)] == 2, seen  # the claim with its rows, the writes
    assert pipelined == [], pipelined
    assert not any(table in ("vm_devices", "vms", "vm_last_xml")
                   for _verb, table, _many in seen), seen



@contextmanager
def in_autocommit(store: Store):
    """For each statement sent, in order: (its verb, whether the driver sent it outside a
    transaction: psycopg then sends no ``BEGIN`` before it and no ``COMMIT`` after)."""
    seen: list[tuple[str, bool]] = []

    def record(connection, cursor, statement, parameters, context, executemany):
        driver = connection.connection.driver_connection
        seen.append((statement.split()[0].upper(), getattr(driver, "autocommit", False)))

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)


def test_a_steady_host_tick_reads_outside_a_transaction(db_url):
    """Nothing changed: one read, sent outside a transaction (``Store.read``): on
    PostgreSQL no BEGIN and COMMIT round trips, on SQLite no ``BEGIN IMMEDIATE``. The
    tick after it, which applies, takes its devices locks in one statement on its own
    on PostgreSQL (``Store.one_statement``), in a transaction on SQLite, and applies in
    a transaction."""
    postgres = store_dialect(db_url) == "postgresql"
    with started_fleet(db_url) as (store, context, state):
        with in_autocommit(store) as seen:
            tick = tick_fleet(context, state, "steady", no_progress)
        assert (tick.total.fetched, tick.total.applied) == (0, 0)
        assert seen == [("SELECT", postgres)]  # sqlite3 (Python 3.11) has no flag to show
        state.flip([0])
        with in_autocommit(store) as seen:
            tick = tick_fleet(context, state, "one", no_progress)
        assert tick.total.applied == 1
        assert seen[0] == ("SELECT", postgres)
        if postgres:
            assert seen[1] == ("INSERT", True), seen  # the devices locks
            assert not any(outside for _verb, outside in seen[2:]), seen
        else:  # each transaction after the read begins with BEGIN IMMEDIATE
            verbs = [verb for verb, _ in seen]
            assert verbs[1] == "BEGIN" and verbs.count("BEGIN") == 2, verbs


def store_dialect(db_url: str) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"
