"""The store: VMs, device rows, hashes, locks, one DB transaction at a time.

Callers see typed records (VmRecord, DeviceRow, VmChanges) and never SQLAlchemy.
Everything on the tick's hot path is batched: reads are one SELECT per chunk of
``CHUNK`` ids; a batch's writes are one statement on PostgreSQL (``batch_writes``) and
one executemany per kind of statement on SQLite, whatever the number of VMs. A
transaction commits on exit and rolls back on an exception; database failures leave as
a one-line StoreError whose ``transient`` says whether to retry.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from monitor import collector
from monitor.clock import older_than_stored
from monitor.errors import StoreError
from monitor.model.changes import VmChanges
from monitor.model.lease import HostLease
from monitor.model.rows import DeviceRow, VmRecord, VmState
from monitor.store import jsontext, migrate, prepared, row_writes
from monitor.store.batch_writes import HashAdvance, LastXmls, write_postgresql, xml_bytes
from monitor.store.checkpoints import BackgroundCheckpoints
from monitor.store.engine import (
    AUTOCOMMIT_READ,
    checks_idle_sessions,
    create_engine,
    idle_session_lost,
    limit_idle_transactions,
    render,
    store_error,
)
from monitor.store.inventory import build_document
from monitor.store.schema import (
    DEVICE_COLUMNS,
    VM_COLUMNS,
    UtcDateTime,
    host_leases,
    vm_device_locks,
    vm_devices,
    vm_last_xml,
    vms,
    worker_heartbeats,
)

CHUNK = 500  # ids per IN (...) or ANY(...): far below SQLite's and PostgreSQL's parameter limits

_IDS = sa.bindparam("ids", expanding=True)
_SELECT_VMS = sa.select(*VM_COLUMNS).where(vms.c.id.in_(_IDS))
_HOST = sa.bindparam("b_host")
_SELECT_VMS_ON_HOST = sa.select(*VM_COLUMNS).where(vms.c.host == _HOST)
_STATE_COLUMNS = tuple(vms.c[name] for name in VmState._fields)


def _among_ids(dialect: str) -> Callable[[sa.Column], sa.ColumnElement[bool]]:
    """``column`` among the bound list ``ids``, sent as one JSON array: the statement's
    text is the same for any number of ids, and the list costs one ``json.dumps``.
    An expanded ``IN (...)`` list cost SQLAlchemy a bind rendering per id each time
    (~0.15 ms of reading a host's 100 VMs on SQLite), and a PostgreSQL array parameter
    costs psycopg a quoting check per id (~0.17 ms): docs/performance.md, "The sixth
    wave". PostgreSQL: ``= ANY(ARRAY(SELECT jsonb_array_elements_text(:ids)))``, which
    the planner serves from the primary key; SQLite: ``IN (SELECT value FROM
    json_each(:ids))`` (SQLite's JSON functions are built in since 3.38)."""
    if dialect == "postgresql":
        listed = sa.func.array(sa.select(_json_ids().c.value).scalar_subquery())
        return lambda column: column == sa.any_(listed)
    ids = sa.func.json_each(sa.bindparam("ids", type_=sa.JSON)).table_valued("value")
    return lambda column: column.in_(sa.select(ids.c.value))


def _json_ids() -> sa.TableValuedAlias:
    """PostgreSQL: the bound JSON array ``ids`` as rows of one column, ``value``."""
    return sa.func.jsonb_array_elements_text(
        sa.bindparam("ids", type_=postgresql.JSONB)).table_valued("value")


_STATEMENT_TIME = sa.func.statement_timestamp(type_=UtcDateTime())


class _ByIds(NamedTuple):
    """The statements a tick runs over a list of VM ids, built once per dialect."""

    states: sa.Select
    states_on_host: sa.Select
    rows: sa.Select
    hash_times: sa.Select
    locks_held: sa.Select
    release_locks_held: sa.Delete
    release_locks: sa.Delete
    release_locks_of_token: sa.Delete
    renew_locks: sa.Update
    holds_lease: sa.Select
    claimed_rows: sa.Select | None  # PostgreSQL: release_locks_held and the rows at once
    claimed_rows_fenced: sa.Select | None  # PostgreSQL: the same, and holds_lease first


def _by_ids(dialect: str) -> _ByIds:
    among = _among_ids(dialect)
    locks = vm_device_locks.c
    held = (  # the lock rows of these VMs that holder still holds with token, unexpired
        among(locks.vm_id),
        locks.holder == sa.bindparam("b_holder"),
        locks.token == sa.bindparam("b_token"),
        locks.expires_at > sa.bindparam("b_now"),
    )
    locks_held = sa.select(locks.vm_id).where(*held).order_by(locks.vm_id)
    release = sa.delete(vm_device_locks).where(among(locks.vm_id),
                                               locks.holder == sa.bindparam("b_holder"))
    # Every tick fills and empties the lock table: its statements are planned with their
    # values each time, never from a plan made while it was small (store/prepared.py).
    each_time = prepared.planned_each_time
    # PostgreSQL: the reads of VM rows also give the database's clock when they read
    # them (one statement, not a read and a ``now()``); SQLite has no clock to read.
    clock = (_STATEMENT_TIME,) if dialect == "postgresql" else ()
    return _ByIds(
        states=sa.select(*_STATE_COLUMNS, *clock).where(among(vms.c.id)),
        states_on_host=sa.select(*_STATE_COLUMNS, *clock).where(vms.c.host == _HOST),
        rows=sa.select(*_device_columns(dialect)).where(among(vm_devices.c.vm_id)),
        # PostgreSQL: no concurrent advance between the check and the UPDATE
        hash_times=sa.select(vms.c.id, vms.c.hash_time, *clock).where(among(vms.c.id))
        .order_by(vms.c.id).with_for_update(),
        # PostgreSQL: the rows found stay locked until the transaction ends (the fence)
        locks_held=each_time(locks_held.with_for_update() if dialect == "postgresql"
                             else locks_held),
        release_locks_held=each_time(
            sa.delete(vm_device_locks).where(*held).returning(locks.vm_id)),
        release_locks=each_time(release),
        release_locks_of_token=each_time(
            release.where(locks.token == sa.bindparam("b_token"))),
        renew_locks=each_time(sa.update(vm_device_locks).where(*held).values(
            expires_at=sa.bindparam("b_expires_at", type_=UtcDateTime))),
        holds_lease=_holds_lease(dialect),
        claimed_rows=each_time(_claimed_rows(held)) if dialect == "postgresql" else None,
        claimed_rows_fenced=(each_time(_claimed_rows(held, fenced=True))
                             if dialect == "postgresql" else None),
    )


class _JsonText(sa.types.TypeDecorator):
    """A JSON value read as its text (PostgreSQL: ``::text``), decoded by
    ``jsontext.loads``; NULL (a claim's VM without rows) as ``None``."""

    impl = sa.Text
    cache_ok = True

    def result_processor(self, dialect, coltype):
        return _json_or_none


def _json_or_none(text: str | None) -> object:
    return None if text is None else jsontext.loads(text)


def _device_columns(dialect: str) -> tuple:
    """``DEVICE_COLUMNS`` as the tick reads them. PostgreSQL: the JSON columns as their
    text, decoded by ``jsontext.loads``: psycopg's own JSON loader costs ~0.4 µs a value
    more, and a full tick reads three a row (docs/performance.md, "The thirteenth
    wave")."""
    if dialect != "postgresql":
        return DEVICE_COLUMNS
    return tuple(sa.type_coerce(sa.cast(column, sa.Text), _JsonText()).label(column.name)
                 if isinstance(column.type, sa.JSON) else column
                 for column in DEVICE_COLUMNS)


def _claimed_rows(held, fenced: bool = False) -> sa.Select:
    """PostgreSQL: the lock rows ``held`` selects deleted (``release_locks_held``), and
    for each VM released its device rows, or one row of NULLs if it has none: the
    released VM's id first, then ``DEVICE_COLUMNS``. One statement, so one round trip
    less for a batch; the device rows are read in the statement's own snapshot, taken
    after ``lock_vms`` held the VMs' rows, as a statement of their own would read them.

    ``fenced``: only if the lease is held (``_holds_lease``, read and locked before any
    lock row is deleted), each row led by the number of lease rows found; at least one
    row, of NULLs after that number, when nothing is released."""
    lease = _holds_lease("postgresql").cte("lease") if fenced else None
    fence = (sa.exists(sa.select(lease)),) if fenced else ()
    released = (sa.delete(vm_device_locks).where(*held, *fence)
                .returning(vm_device_locks.c.vm_id).cte("released"))
    devices = released.outerjoin(vm_devices, vm_devices.c.vm_id == released.c.vm_id)
    columns = (released.c.vm_id, *_device_columns("postgresql"))
    if not fenced:
        return sa.select(*columns).select_from(devices)
    found = sa.select(sa.func.count().label("held")).select_from(lease).subquery("found")
    return sa.select(found.c.held, *columns).select_from(found.outerjoin(devices, sa.true()))


def _holds_lease(dialect: str) -> sa.Select:
    """A row if the lease named by ``b_host``, ``b_owner``, ``b_epoch`` is held, its
    heartbeat unexpired (``Tx.holds_lease``). PostgreSQL: by the database's clock, the
    lease row locked ``FOR KEY SHARE``, the lease named in ``monitor.lease`` (``b_tag``);
    SQLite: by ``b_now``.

    ``FOR KEY SHARE`` (docs/operations.md, "Fencing"): a claim's ``FOR UPDATE SKIP
    LOCKED`` skips the row until the fenced transaction ends; nothing else waits for it
    (a renewal writes the heartbeat; the holder's own hand-back or release, an UPDATE of
    no key column, does not conflict with it, and the claims after it still skip)."""
    query = sa.select(sa.literal(1)).select_from(
        host_leases.join(worker_heartbeats, worker_heartbeats.c.owner == host_leases.c.owner)
    ).where(
        host_leases.c.host == sa.bindparam("b_host"),
        host_leases.c.owner == sa.bindparam("b_owner"),
        host_leases.c.epoch == sa.bindparam("b_epoch"),
    )
    if dialect != "postgresql":
        return query.where(worker_heartbeats.c.expires_at > sa.bindparam(
            "b_now", type_=UtcDateTime))
    return query.where(worker_heartbeats.c.expires_at > sa.func.now()).with_only_columns(
        sa.func.set_config("monitor.lease", sa.bindparam("b_tag"), True)
    ).with_for_update(read=True, key_share=True, of=host_leases)


_BY_IDS = {dialect: _by_ids(dialect) for dialect in ("postgresql", "sqlite")}
_NOW = sa.select(_STATEMENT_TIME)
# A VM's last error: an unusable document's (with its hash), or a failed apply's.
_RECORD_FAILURE = sa.update(vms).where(vms.c.id == sa.bindparam("b_id")).values(
    version=vms.c.version + 1, last_error=sa.bindparam("b_error"))
_RECORD_ERROR = _RECORD_FAILURE.values(last_error_hash=sa.bindparam("b_hash"))


def new_token() -> str:
    """A devices lock token: 32 hex digits, never the empty token of older rows."""
    return uuid.uuid4().hex


T = TypeVar("T", bound="Tx")

class Store:
    """A database: open it from a URL, then work in transactions."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # .connection: this thread's, inside ``pinned``; .kept: SQLite, between blocks
        self._pinned = threading.local()
        # Every thread's kept one: closed when its thread has ended, or with the store.
        self._kept: dict[threading.Thread, Connection] = {}
        self._kept_guard = threading.Lock()
        # SQLite: no server to lose a connection; PostgreSQL on psycopg: checked on its
        # socket before each block; another driver: given back to the pool after each.
        self._keeps = engine.dialect.name == "sqlite" or checks_idle_sessions(engine)
        # Sessions kept before a change of the sessions' settings are not reused.
        self._sessions = 0

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> "Store":
        """The store at ``url``; with ``create``, the schema is created or upgraded now."""
        store = cls(create_engine(url))
        if create:
            try:
                store._run_migration(migrate.ensure_schema)
            except StoreError:
                store.close()
                raise
        return store

    @property
    def url(self) -> str:
        return render(self._engine.url)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def upgrade(self) -> migrate.SchemaUpgrade:
        """Create or upgrade the schema to the newest revision (``monitor db init``)."""
        return self._run_migration(migrate.upgrade)

    def _run_migration(self, step) -> migrate.SchemaUpgrade:
        try:
            return step(self._engine)
        except sa.exc.SQLAlchemyError as error:
            raise store_error(error, self._engine.url) from error

    @contextmanager
    def transaction(self, kind: type[T] | None = None) -> Iterator[T]:
        """One DB transaction: commit on exit, roll back on an exception.

        ``kind`` is a ``Tx`` subclass with more statements (``store.leases.LeaseTx``).
        """
        try:
            with self._connection() as connection, connection.begin():
                yield (kind or Tx)(connection)
        except sa.exc.SQLAlchemyError as error:
            raise store_error(error, self._engine.url) from error

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """Statements that only read, for a block that writes nothing: each statement on
        its own, outside a transaction (autocommit: no ``BEGIN`` and ``COMMIT``; at READ
        COMMITTED a transaction gives each statement its own snapshot anyway, and an
        SQLite statement is its own read transaction). On PostgreSQL that saves two round
        trips, on SQLite the write lock a ``BEGIN IMMEDIATE`` takes. A tick's first read
        (docs/performance.md, "The fifth wave" and "The sixth wave")."""
        try:
            with self._connection() as connection, _autocommit(connection):
                yield Tx(connection)
        except sa.exc.SQLAlchemyError as error:
            raise store_error(error, self._engine.url) from error

    @contextmanager
    def one_statement(self) -> Iterator[Tx]:
        """For a block that sends one statement, which may write: on PostgreSQL sent
        outside a transaction, a transaction of its own (no ``BEGIN`` and ``COMMIT``: two
        round trips fewer; a tick's devices locks, docs/performance.md, "The thirteenth
        wave"). On SQLite a transaction as ``transaction()``'s: its ``BEGIN IMMEDIATE``
        waits for the write lock, where a statement on its own that finds the database
        changed since it began reading fails at once."""
        if self.dialect != "postgresql":
            with self.transaction() as tx:
                yield tx
            return
        with self.read() as tx:
            yield tx

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection a transaction or a read uses: inside ``pinned``, the block's
        (taken at its first use), unless that one is in a transaction already (a
        transaction inside another gets its own); outside, one of its own."""
        if hasattr(self._pinned, "connection"):
            connection = self._pinned.connection
            if connection is None:  # the block's first use
                connection = self._pinned.connection = self._engine.connect()
            if not connection.in_transaction():
                yield connection
                return
        with self._engine.connect() as connection:
            yield connection

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """The block's transactions in this thread share one connection, taken at the
        first of them (a tick: docs/performance.md, "The fourth wave").

        The thread keeps that connection for its next block: a checkout from the pool
        and its return cost ~3 % of an SQLite partial tick and ~11 % of a steady one
        (docs/performance.md, "The eleventh wave"), and on PostgreSQL ~10 % of a steady
        tick (docs/performance.md, "The fourteenth wave"). The pool holds one for every
        tick thread (``engine``); the store's ``close`` closes every kept one. On
        PostgreSQL a kept connection is checked on its socket before each block, as the
        pool checks one before handing it out (``engine.idle_session_lost``), so one the
        server ended (a restart, a terminated session) is replaced, not failed on; a
        connection the database dropped during a block is replaced at the next one.
        With a PostgreSQL driver other than psycopg 3 the connection goes back to the
        pool after each block (SQLAlchemy's pre-ping checks it there)."""
        if hasattr(self._pinned, "connection"):
            yield  # already pinned by an outer block
            return
        self._pinned.connection = self._take_kept()
        try:
            yield
        finally:
            connection = self._pinned.connection
            del self._pinned.connection
            if connection is not None:
                self._keep_or_close(connection)

    def _take_kept(self) -> Connection | None:
        """This thread's kept connection, if it is still usable."""
        connection = getattr(self._pinned, "kept", None)
        if connection is None:
            return None
        if not (connection.closed or connection.invalidated
                or self._pinned.kept_sessions != self._sessions
                or (self.dialect == "postgresql"
                    and idle_session_lost(connection.connection.driver_connection))):
            return connection
        self._forget_kept(connection)
        return None

    def _keep_or_close(self, connection: Connection) -> None:
        if (not self._keeps or connection.closed or connection.invalidated
                or connection.in_transaction() or not _idle(connection)):
            self._forget_kept(connection)
            return
        if getattr(self._pinned, "kept", None) is connection:
            return  # kept already: the thread's every tick but its first
        self._pinned.kept = connection
        self._pinned.kept_sessions = self._sessions
        with self._kept_guard:  # a new one: those of threads that have ended are closed
            self._kept[threading.current_thread()] = connection
            ended = [thread for thread in self._kept if not thread.is_alive()]
            gone = [self._kept.pop(thread) for thread in ended]
        for each in gone:
            each.close()

    def _forget_kept(self, connection: Connection) -> None:
        if getattr(self._pinned, "kept", None) is connection:
            del self._pinned.kept
        with self._kept_guard:
            if self._kept.get(threading.current_thread()) is connection:
                del self._kept[threading.current_thread()]
        connection.close()

    def limit_idle_transactions(self, seconds: float) -> None:
        """PostgreSQL: the server rolls back a transaction of ours idle for ``seconds``
        (``engine.limit_idle_transactions``); a no-op on SQLite. The connections
        threads keep are not reused (``pinned``): every block after this one gets a
        session with the setting."""
        if self.dialect == "postgresql":
            self._sessions += 1
        limit_idle_transactions(self._engine, seconds)

    def background_checkpoints(self) -> AbstractContextManager:
        """For a long-running verb's block: SQLite's WAL checkpoints on a thread of their
        own, not in the ticks' commits (``monitor.store.checkpoints``). PostgreSQL has
        its own checkpointer process: nothing to do."""
        if self.dialect != "sqlite":
            return nullcontext()
        return BackgroundCheckpoints(self._engine)

    def close(self) -> None:
        with self._kept_guard:
            kept, self._kept = self._kept, {}
        for connection in kept.values():
            connection.close()
        self._engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Tx:
    """The statements of one transaction. Get one from ``Store.transaction()``."""

    __slots__ = ("_connection", "_by_ids", "_locked_hash_times")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._by_ids = _BY_IDS[connection.dialect.name]
        # The hash times of the VM rows ``lock_vms`` locked: no other transaction can
        # change them before this one ends, so ``advance_hashes`` needs no second read.
        self._locked_hash_times: dict[str, datetime | None] = {}

    @property
    def dialect(self) -> str:
        return self._connection.dialect.name

    # --- VMs -------------------------------------------------------------------

    def vm(self, vm_id: str) -> VmRecord | None:
        return self.vms([vm_id]).get(vm_id)

    def vms(self, vm_ids: Iterable[str]) -> dict[str, VmRecord]:
        found: dict[str, VmRecord] = {}
        for chunk in _chunks(vm_ids):
            for row in self._connection.execute(_SELECT_VMS, {"ids": chunk}).all():
                found[row[0]] = VmRecord(*row)
        return found

    def vms_on_host(self, host: str) -> dict[str, VmRecord]:
        rows = self._connection.execute(_SELECT_VMS_ON_HOST, {"b_host": host})
        return {row[0]: VmRecord(*row) for row in rows}

    def vm_states_and_host(self, vm_ids: Iterable[str], host: str,
                           process_utc: Callable[[], datetime]
                           ) -> tuple[dict[str, VmState], datetime]:
        """The states of the VMs of ``vm_ids`` and of every VM the DB places on ``host``
        (a tick's first read: its reports' VMs, and its host's VMs for vanished ones),
        and the database's clock when they were read (``now``: on PostgreSQL the first
        reading statement's own ``statement_timestamp()``).

        The host's VMs first, by the host index; then, by id, only the asked VMs the DB
        places elsewhere or does not know (a VM migrating in, an unknown one): usually
        none, so a steady host costs one statement and no lookup per VM id
        (docs/performance.md, "The seventh wave"). Each VM's state is as one statement
        read it, as it would be in a statement of its own.
        """
        fields = len(VmState._fields)
        make = VmState._make
        by_ids = self._by_ids
        read_at = None
        rows = prepared.fetch(self._connection, by_ids.states_on_host, {"b_host": host})
        found = {row[0]: make(row[:fields]) for row in rows}
        if rows and len(rows[0]) > fields:
            read_at = rows[0][fields]
        for chunk in _chunks(vm_id for vm_id in vm_ids if vm_id not in found):
            for row in prepared.fetch(self._connection, by_ids.states, {"ids": chunk}):
                found[row[0]] = make(row[:fields])
                if read_at is None and len(row) > fields:
                    read_at = row[fields]
        return found, read_at or self.now(process_utc)

    def report_time(self, polled_at: datetime, read_at: datetime) -> datetime:
        """The report time of a poll that returned just before this transaction, whose
        first statement read the VMs at ``read_at`` (``vm_states_and_host``): the
        database's clock when the poll returned (docs/operations.md, "Clocks"). SQLite
        has none: the process's clock read when the poll returned (``polled_at``, before
        waiting for the write lock). PostgreSQL: its clock at that first statement."""
        return read_at if self.dialect == "postgresql" else polled_at

    def set_down_if_still(self, vm_id: str, host: str, status: str | None) -> bool:
        """``Down``, only if the VM is still on ``host`` with ``status`` (a hand-over or
        another writer since it was read wins); whether it was written."""
        statement = (
            sa.update(vms)
            .where(vms.c.id == vm_id, vms.c.host == host, vms.c.status == status)
            .values(status="Down", version=vms.c.version + 1)
        )
        return self._connection.execute(statement).rowcount == 1

    def upsert_vm(self, vm: VmRecord) -> None:
        self._upsert_vms([vm])

    def set_status(self, vm_id: str, status: str, *, host: str | None = None,
                   read: VmRecord | None = None) -> bool:
        """The status (and the host, on migration) without touching the hash.

        With ``read`` (the VM as the caller read it), only if the stored host and
        status are still those: a hand-over committed meanwhile by another host's
        worker is never overwritten. Returns whether the VM was written.
        """
        values: dict[str, Any] = {"status": status, "version": vms.c.version + 1}
        if host is not None:
            values["host"] = host
        statement = sa.update(vms).where(vms.c.id == vm_id).values(values)
        if read is not None:
            statement = statement.where(vms.c.host.is_not_distinct_from(read.host),
                                        vms.c.status.is_not_distinct_from(read.status))
        return self._connection.execute(statement).rowcount == 1

    def record_error(self, vm_id: str, bad_hash: str | None, message: str) -> None:
        """Remember the hash whose XML could not be used; the applied hash stays."""
        prepared.execute(self._connection, _RECORD_ERROR,
                         {"b_id": vm_id, "b_hash": bad_hash, "b_error": message})

    def record_failure(self, vm_id: str, message: str) -> None:
        """The last error of a VM whose apply failed in the database: the message only.
        ``last_error_hash`` stays, so the reported hash is fetched again."""
        prepared.execute(self._connection, _RECORD_FAILURE, {"b_id": vm_id, "b_error": message})

    # --- hashes ------------------------------------------------------------------

    def advance_hash(
        self,
        vm_id: str,
        new_hash: str | None,
        report_time: datetime,
        *,
        status: str | None = None,
        host: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Store the hash of the XML just applied, unless a newer report was applied.

        Clears the last error (this hash's XML was usable). Returns False, changing
        nothing, when the stored ``hash_time`` is later than ``report_time`` (and, given
        the database's clock ``now``, not later than now: ``monitor.clock.older_than_stored``).
        """
        item = HashAdvance(vm_id, new_hash, report_time, status, host)
        return bool(self.advance_hashes([item], now))

    def advance_hashes(self, items: Sequence[HashAdvance],
                       now: datetime | None = None) -> set[str]:
        """The batched ``advance_hash``: the ids of the VMs actually advanced."""
        return self.advance_and_write(items, (), now)

    def advance_and_write(self, advances: Sequence[HashAdvance],
                          changes: Sequence[VmChanges], now: datetime | None = None,
                          last_xmls: LastXmls | None = None) -> set[str]:
        """A batch's writes: the guarded hash advances (``advance_hash``), the row
        changes of the VMs that advanced (those of the others are not written), and
        the last XMLs (``save_last_xmls``). On PostgreSQL one statement
        (``monitor.store.batch_writes``), on SQLite an ``executemany`` a kind. Returns
        the ids of the VMs advanced.

        The stored report times are read ``FOR UPDATE`` (PostgreSQL; SQLite holds the
        database), or were by ``lock_vms``, so the decision and the UPDATE see the same
        row.
        """
        if len({item.vm_id for item in advances}) != len(advances):
            raise ValueError("advance_hashes: a VM may appear once per batch")
        locked = self._locked_hash_times
        stored = {item.vm_id: locked[item.vm_id] for item in advances if item.vm_id in locked}
        stored.update(self._read_hash_times(item.vm_id for item in advances
                                            if item.vm_id not in locked)[0])
        advancing = [item for item in advances if item.vm_id in stored
                     and not older_than_stored(item.report_time, stored[item.vm_id], now)]
        advanced = {item.vm_id for item in advancing}
        self._write(advancing, [change for change in changes if change.vm_id in advanced],
                    last_xmls)
        for vm_id in advanced:
            locked.pop(vm_id, None)  # written: read it again if asked again
        return advanced

    def _write(self, advances: Sequence[HashAdvance], changes: Sequence[VmChanges],
               last_xmls: LastXmls | None) -> int:
        """Hash advances already decided on, row changes and last XMLs: the rows written."""
        if not (advances or last_xmls and last_xmls.items
                or any(change.rows_written for change in changes)):
            return 0
        if self.dialect == "postgresql":
            return write_postgresql(self._connection, advances, changes, last_xmls).rows
        groups: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
        for item in advances:
            key = (item.status is not None, item.host is not None)
            groups.setdefault(key, []).append(_advance_params(item))
        for (with_status, with_host), params in groups.items():
            prepared.execute_many(self._connection, _advance_statement(with_status, with_host),
                                  params)
        written = row_writes.write_changes(self._connection, changes)
        if last_xmls is not None and last_xmls.items:
            prepared.execute_many(self._connection, _UPSERT_LAST_XML, [
                {"vm_id": vm_id, "xml": xml_bytes(xml), "fetched_at": last_xmls.fetched_at}
                for vm_id, xml in last_xmls.items])
        return written

    def _read_hash_times(self, vm_ids: Iterable[str]
                         ) -> tuple[dict[str, datetime | None], datetime | None]:
        """The stored report times of these VMs, their rows locked (PostgreSQL
        ``FOR UPDATE``, in id order) until the transaction ends; and on PostgreSQL the
        database's clock when the last of them was read (None if none was, or SQLite)."""
        found: dict[str, datetime | None] = {}
        read_at = None
        for chunk in _chunks(sorted(vm_ids)):
            for row in prepared.fetch(self._connection, self._by_ids.hash_times, {"ids": chunk}):
                found[row[0]] = row[1]
                if len(row) > 2:
                    read_at = row[2]
        return found, read_at

    def lock_vms(self, vm_ids: Iterable[str], process_utc: Callable[[], datetime]) -> datetime:
        """PostgreSQL: lock these VMs' rows, in id order, until the transaction ends.

        Taken before reading the VMs' device rows, so that another transaction
        applying the same VMs (two hosts of one worker at a migration hand-over, a
        worker whose devices lock expired) commits first and its rows are the ones
        read here; otherwise changes decided on rows read before that commit would
        land over it. SQLite needs nothing: BEGIN IMMEDIATE holds the write lock.
        The lock is taken by reading the rows' hash times, which then serve
        ``advance_hashes`` in this transaction without a second read.

        Returns the database's clock once the rows are locked (``now``; on PostgreSQL
        the locking statement's own ``statement_timestamp()``): later than every
        commit of those rows the rest of the transaction sees.
        """
        if self.dialect != "postgresql":
            return process_utc()
        found, read_at = self._read_hash_times(vm_ids)
        self._locked_hash_times.update(found)
        return read_at or self.now(process_utc)

    # --- the host lease ------------------------------------------------------------

    def holds_lease(self, lease: HostLease, process_utc: Callable[[], datetime]) -> bool:
        """Whether this worker still holds ``lease``: the row names it at the lease's
        epoch, and its heartbeat is unexpired by the database's clock (``now()``; on
        SQLite ``process_utc()``, as in ``now``).

        PostgreSQL: the lease row is locked ``FOR KEY SHARE`` until the transaction
        ends, so no claim can take the lease over before this transaction commits;
        the heartbeat's renewals go on. The lease is also named in the transaction's
        ``monitor.lease`` setting (``host epoch owner``), for audit triggers
        (docs/operations.md). SQLite holds its write lock already.
        """
        params = _lease_params(lease)
        if self.dialect != "postgresql":
            params["b_now"] = process_utc()
        return bool(prepared.fetch(self._connection, self._by_ids.holds_lease, params))

    # --- device rows ---------------------------------------------------------------

    def rows(self, vm_ids: Iterable[str]) -> dict[str, list[DeviceRow]]:
        """Every asked VM's rows sorted by device_id (an empty list for none)."""
        found: dict[str, list[DeviceRow]] = {vm_id: [] for vm_id in vm_ids}
        with collector.paused():
            for chunk in _chunks(found):
                for row in prepared.fetch(self._connection, self._by_ids.rows, {"ids": chunk}):
                    found[row[1]].append(DeviceRow(*row))
        return _sorted_by_device_id(found)

    def apply_changes(self, changes: Sequence[VmChanges]) -> int:
        """Deletes, then updates, then inserts of many VMs: one statement on PostgreSQL
        (``monitor.store.batch_writes``), an ``executemany`` a kind on SQLite
        (``monitor.store.row_writes``). Returns the number of rows written."""
        return self._write((), changes, None)

    def replace_vm(self, vm: VmRecord, rows: Sequence[DeviceRow]) -> None:
        """The VM and all its rows replaced (used by ``monitor load``)."""
        self.replace_vms([(vm, rows)])

    def replace_vms(self, items: Sequence[tuple[VmRecord, Sequence[DeviceRow]]]) -> int:
        """The batched ``replace_vm``: returns the number of rows inserted."""
        self._upsert_vms([vm for vm, _rows in items])
        for chunk in _chunks(vm.id for vm, _rows in items):
            self._connection.execute(sa.delete(vm_devices).where(vm_devices.c.vm_id.in_(chunk)))
        inserts = [row_writes.row_values(row) for _vm, rows in items for row in rows]
        if inserts:
            self._connection.execute(sa.insert(vm_devices), inserts)
        return len(inserts)

    def count_rows(self) -> int:
        query = sa.select(sa.func.count()).select_from(vm_devices)
        return self._connection.execute(query).scalar_one()

    def export(self, vm_ids: Iterable[str] | None = None) -> dict:
        """The inventory document (docs/architecture.md, "Data model") of the given VMs (all VMs when None)."""
        if vm_ids is not None:
            records = list(self.vms(vm_ids).values())
            return build_document(records, self.rows(vm.id for vm in records))
        with collector.paused():
            records = [VmRecord(*row) for row in self._connection.execute(sa.select(*VM_COLUMNS))]
            rows: dict[str, list[DeviceRow]] = {vm.id: [] for vm in records}
            for row in self._connection.execute(sa.select(*DEVICE_COLUMNS)).all():
                rows[row[1]].append(DeviceRow(*row))
            return build_document(records, rows)

    # --- last XML ----------------------------------------------------------------

    def save_last_xml(self, vm_id: str, xml: bytes, fetched_at: datetime) -> None:
        """Keep the XML as fetched (bytes, verbatim) for ``diagnose``; replaces the last one."""
        self.save_last_xmls([(vm_id, xml)], fetched_at)

    def save_last_xmls(self, items: Sequence[tuple[str, bytes]], fetched_at: datetime) -> None:
        """The batched ``save_last_xml``: one upsert (``advance_and_write``'s)."""
        self._write((), (), LastXmls(items, fetched_at))

    def last_xml(self, vm_id: str) -> tuple[bytes, datetime] | None:
        query = sa.select(vm_last_xml.c.xml, vm_last_xml.c.fetched_at).where(
            vm_last_xml.c.vm_id == vm_id
        )
        row = self._connection.execute(query).first()
        return None if row is None else (bytes(row[0]), row[1])

    # --- devices lock ------------------------------------------------------------------

    def now(self, process_utc: Callable[[], datetime]) -> datetime:
        """The database's clock at this point of the transaction: PostgreSQL's
        ``statement_timestamp()`` (``now()`` as of this statement: later than every
        commit an earlier statement saw); SQLite has none, so there it is
        ``process_utc()`` (docs/operations.md, "Clocks")."""
        if self.dialect == "postgresql":
            return prepared.fetch(self._connection, _NOW, {})[0][0]
        return process_utc()

    def try_lock(self, vm_id: str, holder: str, now: datetime, ttl_s: float,
                 token: str | None = None) -> bool:
        """Take the VM's devices lock if it is free, expired, or already ``holder``'s."""
        return vm_id in self.try_lock_many([vm_id], holder, now, ttl_s, token)

    def try_lock_many(
        self, vm_ids: Iterable[str], holder: str, now: datetime, ttl_s: float,
        token: str | None = None,
    ) -> set[str]:
        """The batched ``try_lock``: the VMs whose lock ``holder`` now holds with ``token``.

        Each taking writes a fresh token (``token``, or a new one), also over a lock
        ``holder`` already held: whoever took it before under that name no longer holds
        it (docs/worker.md, "The fence"). One upsert takes them all: a missing lock row
        is inserted, an existing one is overwritten only if it is free, expired or
        already ``holder``'s, and the rows written are returned: exactly the locks taken.
        VMs are taken in id order, so two takers cannot deadlock on each other.
        """
        return self._upsert_locks(
            _take_locks(self.dialect), vm_ids,
            {"holder": holder, "expires_at": now + timedelta(seconds=ttl_s),
             "token": token or new_token(), "b_now": now})

    def take_locks_fenced(self, vm_ids: Iterable[str], holder: str, ttl_s: float,
                          token: str, lease: HostLease) -> set[str] | None:
        """PostgreSQL: ``take_locks``, in the same statement as ``holds_lease`` (its
        row lock and ``monitor.lease`` included): the VMs taken, or ``None``
        if this worker no longer holds ``lease``, and then nothing is taken. The lease
        row is locked before any lock row is written, and until the statement's
        transaction ends (``_take_locks_fenced``)."""
        params = {"ids": sorted(set(vm_ids)), "holder": holder, "token": token,
                  "b_ttl": timedelta(seconds=ttl_s), **_lease_params(lease)}
        (held, taken), = prepared.fetch(self._connection, _TAKE_LOCKS_FENCED, params)
        return set(taken or ()) if held else None

    def take_locks(self, vm_ids: Iterable[str], holder: str, ttl_s: float, token: str,
                   process_utc: Callable[[], datetime]) -> set[str]:
        """``try_lock_many`` at the database's clock (``now``): on PostgreSQL the upsert's
        own ``statement_timestamp()``, so no statement reads the clock before it (one
        round trip less for a tick's locks: docs/performance.md, "The sixth wave");
        on SQLite ``process_utc()``."""
        if self.dialect != "postgresql":
            return self.try_lock_many(vm_ids, holder, process_utc(), ttl_s, token)
        return self._upsert_locks(
            _TAKE_LOCKS_AT_STATEMENT_TIME, vm_ids,
            {"holder": holder, "token": token, "b_ttl": timedelta(seconds=ttl_s)})

    def _upsert_locks(self, statement, vm_ids: Iterable[str],
                      params: dict[str, Any]) -> set[str]:
        """A lock-taking upsert (``_take_locks_upsert``) for each VM, in id order, with
        the same ``params``: the VMs whose lock row it wrote."""
        ids = sorted(set(vm_ids))
        if not ids:
            return set()
        taken = prepared.fetch_each(self._connection, statement,
                                    [{"vm_id": vm_id, **params} for vm_id in ids])
        return {vm_id for vm_id, in taken}

    def locks_held(self, vm_ids: Iterable[str], holder: str, token: str,
                   now: datetime) -> set[str]:
        """The VMs whose lock ``holder`` still holds with ``token``, unexpired at ``now``.

        The fence's check (``monitor.store.fence``). On PostgreSQL the rows found stay
        locked (``FOR UPDATE``, in id order) until this transaction ends, so nobody can
        take those locks between the check and the commit; SQLite's ``BEGIN IMMEDIATE``
        already holds the whole database.
        """
        query = self._by_ids.locks_held
        params = {"b_holder": holder, "b_token": token, "b_now": now}
        return {
            vm_id
            for chunk in _chunks(sorted(set(vm_ids)))
            for vm_id, in prepared.fetch(self._connection, query, {"ids": chunk, **params})
        }

    def release_locks_held(self, vm_ids: Iterable[str], holder: str, token: str,
                           now: datetime) -> set[str]:
        """``locks_held`` and ``release_locks`` in one statement: the VMs whose lock
        ``holder`` still holds with ``token``, unexpired at ``now``, released when this
        transaction commits (``DELETE ... RETURNING``).

        The rows deleted stay locked until the transaction ends (on PostgreSQL as with
        ``FOR UPDATE``; SQLite holds the whole database), and come back if it rolls back:
        for a transaction that writes exactly the VMs it finds, the fence's check and
        release at once.
        """
        params = {"b_holder": holder, "b_token": token, "b_now": now}
        return {
            vm_id
            for chunk in _chunks(sorted(set(vm_ids)))
            for vm_id, in prepared.fetch(self._connection, self._by_ids.release_locks_held,
                                         {"ids": chunk, **params})
        }

    def claim_rows(self, vm_ids: Iterable[str], holder: str, token: str, now: datetime
                   ) -> tuple[set[str], dict[str, list[DeviceRow]]]:
        """``release_locks_held``, then ``rows`` of the VMs it released: on PostgreSQL
        one statement (``_claimed_rows``), one round trip less for a batch; on SQLite,
        with no round trips to save, the two statements."""
        statement = self._by_ids.claimed_rows
        if statement is None:
            released = self.release_locks_held(vm_ids, holder, token, now)
            return released, self.rows(released)
        params = {"b_holder": holder, "b_token": token, "b_now": now}
        return self._claimed(statement, vm_ids, params, lead=0)

    def claim_rows_fenced(self, vm_ids: Iterable[str], holder: str, token: str,
                          now: datetime, lease: HostLease
                          ) -> tuple[set[str], dict[str, list[DeviceRow]]] | None:
        """PostgreSQL: ``claim_rows`` in the same statement as ``holds_lease`` (read and
        locked before any lock row is released): ``None`` if this worker no longer holds
        ``lease``, and then nothing is released (``_claimed_rows_fenced``)."""
        params = {"b_holder": holder, "b_token": token, "b_now": now,
                  **_lease_params(lease)}
        return self._claimed(self._by_ids.claimed_rows_fenced, vm_ids, params, lead=1)

    def _claimed(self, statement, vm_ids: Iterable[str], params: dict[str, Any], lead: int
                 ) -> tuple[set[str], dict[str, list[DeviceRow]]] | None:
        """The released VMs and their rows from a claim statement whose rows have
        ``lead`` columns before the VM's id (the lease's count: 0 is lost, ``None``)."""
        found: dict[str, list[DeviceRow]] = {}
        with collector.paused():
            for chunk in _chunks(sorted(set(vm_ids))):
                for row in prepared.fetch(self._connection, statement, {"ids": chunk, **params}):
                    if lead and not row[0]:
                        return None
                    vm_id = row[lead]
                    if vm_id is None:  # the lease held, nothing released
                        continue
                    rows = found.setdefault(vm_id, [])
                    if row[lead + 1] is not None:  # a device row (None: the VM has none)
                        rows.append(DeviceRow(*row[lead + 1:]))
        return set(found), _sorted_by_device_id(found)

    def renew_locks(self, vm_ids: Iterable[str], holder: str, token: str, now: datetime,
                    ttl_s: float) -> int:
        """Push back the expiry of the locks ``holder`` still holds with ``token``
        (unexpired at ``now``) to ``now + ttl_s``; the number renewed. A lock already
        lost stays lost."""
        params = {"b_holder": holder, "b_token": token, "b_now": now,
                  "b_expires_at": now + timedelta(seconds=ttl_s)}
        return sum(prepared.execute(self._connection, self._by_ids.renew_locks,
                                    {"ids": chunk, **params})
                   for chunk in _chunks(sorted(set(vm_ids))))

    def locked_vms(self, vm_ids: Iterable[str], now: datetime) -> set[str]:
        """The VMs whose lock is held by anyone and not expired."""
        query = sa.select(vm_device_locks.c.vm_id).where(
            vm_device_locks.c.vm_id.in_(_IDS), vm_device_locks.c.expires_at > now
        )
        return {
            vm_id
            for chunk in _chunks(vm_ids)
            for vm_id in self._connection.execute(query, {"ids": chunk}).scalars()
        }

    def lock_holders(self) -> set[str]:
        """Everyone holding a devices lock now, expired or not."""
        query = sa.select(vm_device_locks.c.holder).distinct()
        return set(self._connection.execute(query).scalars())

    def release_all_locks_of(self, holder: str) -> int:
        """Release every lock ``holder`` holds (a worker that died): the number released."""
        statement = sa.delete(vm_device_locks).where(vm_device_locks.c.holder == holder)
        return self._connection.execute(statement).rowcount

    def release_lock(self, vm_id: str, holder: str, token: str | None = None) -> None:
        self.release_locks([vm_id], holder, token)

    def release_locks(self, vm_ids: Iterable[str], holder: str,
                      token: str | None = None) -> None:
        """Release the locks ``holder`` holds on these VMs (with ``token``, when given:
        then a later taking under the same name stays); others' locks stay."""
        by_ids = self._by_ids
        statement = by_ids.release_locks if token is None else by_ids.release_locks_of_token
        params = {"b_holder": holder, "b_token": token}
        for chunk in _chunks(vm_ids):
            prepared.execute(self._connection, statement, {"ids": chunk, **params})

    # --- plumbing ------------------------------------------------------------------------

    def _insert(self, table: sa.Table):
        """The dialect's INSERT, which knows ON CONFLICT (both dialects spell it alike)."""
        return _DIALECT_INSERTS[self.dialect](table)

    def _upsert_vms(self, records: Sequence[VmRecord]) -> None:
        if not records:
            return
        statement = self._insert(vms)
        replaced = {name: statement.excluded[name] for name in _VM_FIELDS if name != "id"}
        statement = statement.on_conflict_do_update(
            index_elements=[vms.c.id], set_={**replaced, "version": vms.c.version + 1}
        )
        self._connection.execute(statement, [_vm_values(vm) for vm in records])


_VM_FIELDS = tuple(column.name for column in VM_COLUMNS)
_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _vm_values(vm: VmRecord) -> dict[str, Any]:
    values = {name: getattr(vm, name) for name in _VM_FIELDS}
    values["definition"] = vm.definition or {}
    return values


@cache
def _advance_statement(with_status: bool, with_host: bool):
    """SQLite's hash UPDATE (guarded by ``advance_and_write``); status and host join it
    only when given. PostgreSQL's is part of its batch statement (``batch_writes``)."""
    values: dict[str, Any] = {
        "hash": sa.bindparam("b_hash"),
        "hash_time": sa.bindparam("b_report_time"),
        "last_error_hash": None,
        "last_error": None,
        "version": vms.c.version + 1,
    }
    if with_status:
        values["status"] = sa.bindparam("b_status")
    if with_host:
        values["host"] = sa.bindparam("b_host")
    return (
        sa.update(vms)
        .where(vms.c.id == sa.bindparam("b_id"))
        .values(values)
    )


def _upsert_last_xml() -> sa.Insert:
    """SQLite's last-XML upsert (PostgreSQL's is part of its batch statement)."""
    statement = sqlite.insert(vm_last_xml)
    return statement.on_conflict_do_update(
        index_elements=[vm_last_xml.c.vm_id],
        set_={"xml": statement.excluded.xml, "fetched_at": statement.excluded.fetched_at},
    )


_UPSERT_LAST_XML = _upsert_last_xml()


@cache
def _take_locks(dialect: str):
    """``try_lock_many``'s upsert, built once per dialect: insert the lock row, or take
    it over if free (expired at ``b_now``) or already this holder's; return those written."""
    return _take_locks_upsert(dialect, sa.bindparam("expires_at"),
                              sa.bindparam("b_now", type_=vm_device_locks.c.expires_at.type))


def _take_locks_upsert(dialect: str, expires_at, now):
    insert = _DIALECT_INSERTS[dialect](vm_device_locks).values(
        vm_id=sa.bindparam("vm_id"), holder=sa.bindparam("holder"),
        token=sa.bindparam("token"), expires_at=expires_at)
    return _taking(insert, now)


def _taking(insert, now):
    """A lock row's ``insert``, taking over the row already there only if it is free
    (expired at ``now``) or already this holder's; returning the VMs whose row it wrote."""
    locks = vm_device_locks.c
    return insert.on_conflict_do_update(
        index_elements=[locks.vm_id],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at,
              "token": insert.excluded.token},
        where=sa.or_(locks.holder == insert.excluded.holder, locks.expires_at <= now),
    ).returning(locks.vm_id)


# ``take_locks`` on PostgreSQL: the same upsert, its clock the statement's own.
_TAKE_LOCKS_AT_STATEMENT_TIME = _take_locks_upsert(
    "postgresql",
    _STATEMENT_TIME + sa.bindparam("b_ttl", type_=sa.Interval),
    _STATEMENT_TIME)


def _take_locks_fenced() -> sa.Select:
    """``Tx.take_locks_fenced``: the lease read and locked (``_holds_lease``),
    and only if it is held, the lock upsert of ``_TAKE_LOCKS_AT_STATEMENT_TIME`` for each
    VM of the JSON array ``ids`` in id order; one row: how many lease rows were found
    (0 or 1), and the array of the VMs taken (NULL for none)."""
    lease = _holds_lease("postgresql").cte("lease")
    ids = _json_ids()
    insert = postgresql.insert(vm_device_locks).from_select(
        ["vm_id", "holder", "token", "expires_at"],
        sa.select(ids.c.value, sa.bindparam("holder"), sa.bindparam("token"),
                  _STATEMENT_TIME + sa.bindparam("b_ttl", type_=sa.Interval))
        .where(sa.exists(sa.select(lease)))
        .order_by(ids.c.value))
    taken = _taking(insert, _STATEMENT_TIME).cte("taken")
    return sa.select(
        sa.select(sa.func.count()).select_from(lease).scalar_subquery(),
        sa.select(sa.func.array_agg(taken.c.vm_id)).scalar_subquery())


_TAKE_LOCKS_FENCED = prepared.planned_each_time(_take_locks_fenced())


def _lease_params(lease: HostLease) -> dict[str, Any]:
    """``_holds_lease``'s parameters: the lease, and its name for ``monitor.lease``
    (``host epoch owner``; PostgreSQL)."""
    return {"b_host": lease.host, "b_owner": lease.owner, "b_epoch": lease.epoch,
            "b_tag": f"{lease.host} {lease.epoch} {lease.owner}"}


def _advance_params(item: HashAdvance) -> dict[str, Any]:
    params = {"b_id": item.vm_id, "b_hash": item.new_hash, "b_report_time": item.report_time}
    if item.status is not None:
        params["b_status"] = item.status
    if item.host is not None:
        params["b_host"] = item.host
    return params


def _sorted_by_device_id(found: dict[str, list[DeviceRow]]) -> dict[str, list[DeviceRow]]:
    """``found``, each VM's rows sorted by device_id in place (``Tx.rows``' order)."""
    by_device_id = attrgetter("device_id")
    for rows in found.values():
        rows.sort(key=by_device_id)
    return found


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    """``ids`` without repeats, ``CHUNK`` at a time."""
    batch = list(dict.fromkeys(ids))
    for start in range(0, len(batch), CHUNK):
        yield batch[start:start + CHUNK]


def _idle(connection: Connection) -> bool:
    """Whether the driver connection is in no transaction and not in autocommit, as a
    block leaves it (PostgreSQL; SQLAlchemy's ``in_transaction`` says the rest)."""
    if connection.dialect.name != "postgresql":
        return True
    driver = connection.connection.driver_connection
    return not driver.autocommit and driver.info.transaction_status.name == "IDLE"


@contextmanager
def _autocommit(connection: Connection) -> Iterator[None]:
    """The connection's statements run on their own until the block ends; then it is
    back as it was for the next transaction, at no round trip. PostgreSQL: the driver
    connection's ``autocommit`` flag, set on psycopg itself (SQLAlchemy's
    ``isolation_level`` execution option sets the same flag through ~10 µs of its own
    bookkeeping, twice a block: docs/performance.md, "The fourteenth wave"); SQLite:
    the engine's ``BEGIN IMMEDIATE`` left out (``engine.AUTOCOMMIT_READ``), as the
    sqlite3 module is in autocommit already.

    At the end SQLAlchemy's own begun transaction, if a statement of the block began
    one, is committed, or rolled back if the block failed: a connection the failure
    lost is invalidated, and only a rollback clears that without an error of its own
    that would hide the block's."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        driver = connection.connection.driver_connection
        driver.autocommit = True
    else:
        connection.info[AUTOCOMMIT_READ] = True
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    else:
        connection.commit()
    finally:
        if not postgres:
            del connection.info[AUTOCOMMIT_READ]
        elif not driver.closed:  # a lost one is replaced, not reused
            driver.autocommit = False
