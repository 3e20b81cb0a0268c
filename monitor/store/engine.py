"""From a URL to an SQLAlchemy Engine, and from a DB failure to a one-line StoreError.

* ``postgresql://`` and ``postgres://`` mean psycopg 3. Connections are checked
  before use, so a restarted server costs one failed tick, not a dead pool.
* SQLite: WAL (readers do not block the writer), foreign keys on, a busy timeout.
  Every transaction starts with ``BEGIN IMMEDIATE``: the worker's transactions read
  then write, and taking the write lock up front makes concurrent writers wait for
  the busy timeout instead of failing on a stale snapshot (``Store.read``, which only
  reads, sends its statements without one). The folder of the default
  SQLite file (the per-user data folder) is created on first use.
* Commits are not flushed to disk one by one (SQLite ``synchronous = NORMAL`` in WAL
  mode, PostgreSQL ``synchronous_commit = off`` for our sessions only). A power cut or
  an OS crash may lose the last transactions, never a part of one: a VM's rows and its
  hash roll back together, so the host's next poll fetches that VM again. A killed
  process loses nothing. In exchange a tick pays no disk flush per transaction, which
  dominates a tick that applies a few VMs (docs/performance.md).
"""

from __future__ import annotations

import select
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from monitor.errors import StoreError, UsageError
from monitor.settings import MAX_TICK_THREADS, data_dir
from monitor.store import jsontext, prepared

SQLITE_BUSY_TIMEOUT_MS = 10_000
# SQLite: set in a connection's ``info`` while it serves ``Store.read``; its statements
# then run on their own, with no ``BEGIN IMMEDIATE`` (each is its own read transaction).
AUTOCOMMIT_READ = "monitor.autocommit_read"

# PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, lock not
# available, query cancelled (statement/lock timeout), server shutting down.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"})
# Of those, the ones where the whole database is gone for now (class 08 too): the
# session was terminated, the server is shutting down or not accepting connections.
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
SQLITE_TRANSIENT_WORDS = ("database is locked", "database table is locked", "busy")


# The pool keeps 5 connections open and opens more while they are needed, up to one for
# each host ``monitor run`` ticks at once and one for its lease keeper, with two to
# spare: a tick holds its connection while it waits for its host's dump, so with
# SQLAlchemy's default (15 in all) the keeper could wait for a connection behind
# sixteen slow hosts, and its leases expire (docs/operations.md, "What is bounded").
_POOL_OPEN = 5
_POOL_MOST = MAX_TICK_THREADS + 1 + 2  # the tick threads, the lease keeper, two to spare
_POOL = {"pool_size": _POOL_OPEN, "max_overflow": _POOL_MOST - _POOL_OPEN}


def _pool_options(url: URL) -> dict[str, int]:
    """``_POOL`` where SQLAlchemy pools the URL's connections (a queue of them), nothing
    where it does not (an SQLite database in memory: one connection a thread)."""
    pooled = issubclass(url.get_dialect().get_pool_class(url), sa.pool.QueuePool)
    return _POOL if pooled else {}


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL, with the bare PostgreSQL schemes pointed at psycopg 3."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise UsageError(f"not a database URL: {url!r}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(url: str) -> Engine:
    """An Engine for ``url``; nothing connects until the first transaction.

    SQLite's busy timeout is ``SQLITE_BUSY_TIMEOUT_MS`` unless the URL says otherwise
    with ``?timeout=SECONDS`` (the sqlite3 module's own parameter).
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        _ensure_sqlite_folder(parsed)
        busy_timeout_ms = _sqlite_busy_timeout_ms(parsed)
        engine = sa.create_engine(parsed, json_deserializer=jsontext.loads,
                                  json_serializer=jsontext.dumps, **_pool_options(parsed))
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    postgres = parsed.get_backend_name() == "postgresql"
    connect_args = network_timeouts(parsed) if postgres else {}
    own_check = postgres and parsed.get_driver_name() == "psycopg"  # psycopg 3: ours
    try:
        engine = sa.create_engine(
            parsed, pool_pre_ping=not own_check, json_deserializer=jsontext.loads,
            json_serializer=jsontext.dumps, connect_args=connect_args,
            **_pool_options(parsed),
        )
    except ModuleNotFoundError as missing:
        if not (missing.name or "").startswith("psycopg"):
            raise
        raise UsageError(f"cannot use database URL {render(parsed)}: psycopg is not "
                         "installed (pip install 'monitor[postgres]')") from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
        raise UsageError(f"cannot use database URL {render(parsed)}: {error}") from None
    if engine.dialect.name == "postgresql":
        _configure_postgresql(engine, own_check)
    return engine


# libpq's connection parameters the worker sets unless the URL gives its own: a server
# that cannot be reached fails the connect after 10 s; a connection whose peer vanished
# (a partition, a host down: nothing acknowledges what we send, no keepalive answers)
# fails after about a minute instead of hanging until the kernel gives up (~15 min).
# What they cannot catch, a server that acknowledges but never answers, the worker
# logs as a stall and SIGTERM still stops (docs/operations.md, "What is bounded").
NETWORK_TIMEOUTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",  # milliseconds
}


def network_timeouts(url: URL) -> dict[str, str]:
    """The ``NETWORK_TIMEOUTS`` that ``url`` does not set itself (its own win)."""
    return {name: value for name, value in NETWORK_TIMEOUTS.items() if name not in url.query}


def _configure_postgresql(engine: Engine, own_check: bool) -> None:
    """Each session of the engine's: commits that do not wait for the WAL's flush, and
    times in UTC. A ``timestamptz`` comes back in the session's zone; in ``UTC`` psycopg
    gives it Python's own ``timezone.utc``, where for a server set to a named zone (the
    Debian default ``Etc/UTC``) it builds every value through ``zoneinfo``: ~1.7 µs a
    value, ~0.2 ms of a 100-VM host's first read (docs/performance.md, "The eighth
    wave"). The engine stores and compares only absolute times, so the zone changes no
    value."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
            cursor.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()  # a SET in a transaction rolled back would not stay

    if not own_check:
        return  # another driver (psycopg2, named in the URL): SQLAlchemy's pre-ping

    @sa.event.listens_for(engine, "checkout")
    def _check(dbapi_connection, _record, _proxy) -> None:
        """A pooled connection is checked before it is handed out (``idle_session_lost``),
        so one the server dropped (a restart, a terminated session) is replaced, not
        failed on. A ``DisconnectionError`` makes the pool discard the connection and
        take another."""
        if idle_session_lost(dbapi_connection):
            raise sa.exc.DisconnectionError("connection lost: the server ended the session")


def checks_idle_sessions(engine: Engine) -> bool:
    """Whether ``idle_session_lost`` can check the engine's connections: PostgreSQL
    through psycopg 3 (another driver, named in the URL, has SQLAlchemy's pre-ping)."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def idle_session_lost(dbapi_connection) -> bool:
    """Whether an idle psycopg connection lost its session, asked of its socket with no
    round trip: an idle session is sent nothing by its server, so anything waiting to
    be read is the server's last word (the message that ends the session, then the end
    of the stream) or the socket was closed; either way the connection is not reused.
    ~1 µs against ~0.1 ms for an empty query, on every tick of a host (docs/performance.md,
    "The twelfth wave"). A peer that vanished without a word (a partition, a host down)
    shows on the socket once the keepalives have given up on it (``NETWORK_TIMEOUTS``,
    about a minute); sooner, the first statement waits for it as an empty query would."""
    import psycopg
    from psycopg import pq

    pgconn = dbapi_connection.pgconn  # libpq's connection, as psycopg exposes it
    try:
        return pgconn.status != pq.ConnStatus.OK or (
            pgconn.transaction_status == pq.TransactionStatus.IDLE
            and _sent_unasked(pgconn.socket))
    except psycopg.Error:
        return True  # closed already


def _sent_unasked(socket: int) -> bool:
    """Whether the socket of an idle session has something to read (or was closed):
    asked of the kernel without waiting."""
    poller = select.poll()
    poller.register(socket, select.POLLIN)
    return bool(poller.poll(0))


def limit_idle_transactions(engine: Engine, seconds: float) -> None:
    """PostgreSQL: the server ends our sessions that sit idle inside a transaction for
    longer than ``seconds`` (``idle_in_transaction_session_timeout``), rolling it back.

    For ``monitor run``: a worker frozen mid-transaction (SIGSTOP, a VM paused, a long
    GC pause) would otherwise keep its host lease row locked and no other worker could
    take the host over (docs/operations.md, "Many workers").
    The pool's connections opened before are closed, so every session it hands out
    gets the setting (``Store.limit_idle_transactions`` retires those its threads keep).
    """
    if engine.dialect.name != "postgresql":
        return
    milliseconds = max(1, round(seconds * 1000))

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {milliseconds}")
        dbapi_connection.commit()

    engine.dispose()


def render(url: URL | str) -> str:
    """The URL as it may be shown to an operator: never with the password."""
    return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)


def _ensure_sqlite_folder(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).expanduser().resolve().parent
    if folder.is_dir():
        return
    if folder == data_dir().resolve() or data_dir().resolve() in folder.parents:
        folder.mkdir(parents=True, exist_ok=True)
        return
    raise StoreError(f"database folder does not exist: {folder}")


def _sqlite_busy_timeout_ms(url: URL) -> int:
    value = url.query.get("timeout")
    if value is None:
        return SQLITE_BUSY_TIMEOUT_MS
    try:
        seconds = float(value if isinstance(value, str) else value[-1])
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UsageError(f"database URL {render(url)}: timeout must be a number of seconds")
    return round(seconds * 1000)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Let SQLAlchemy, not the sqlite3 module, decide where transactions begin."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        if not connection.info.get(AUTOCOMMIT_READ):
            prepared.driver_execute(connection, "BEGIN IMMEDIATE")


def store_error(error: sa.exc.SQLAlchemyError, url: URL | str) -> StoreError:
    """A one-line StoreError for ``error``; ``transient`` says whether a retry may work."""
    original = getattr(error, "orig", None) or error
    first_line = (str(original).strip().splitlines() or [type(original).__name__])[0]
    result = StoreError(f"database {render(url)}: {first_line}")
    result.unavailable = is_unavailable(error)
    result.transient = result.unavailable or is_transient(error)
    return result


def is_transient(error: sa.exc.SQLAlchemyError) -> bool:
    """Connection drops, serialization failures, deadlocks, lock timeouts, a locked SQLite."""
    if is_unavailable(error):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    return bool(sqlstate) and sqlstate in TRANSIENT_SQLSTATES


def is_unavailable(error: sa.exc.SQLAlchemyError) -> bool:
    """The whole database, not one statement, failed: retrying VM by VM cannot help.

    A dropped or refused connection, a terminated session, a server shutting down,
    or an SQLite file whose write lock another connection holds past the busy timeout.
    A lock timeout, a deadlock or a serialization failure is about some rows only.
    """
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    original = getattr(error, "orig", None)
    if isinstance(original, sqlite3.OperationalError):
        message = str(original).lower()
        return any(word in message for word in SQLITE_TRANSIENT_WORDS)
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate:
        return sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")
    # A PostgreSQL OperationalError without SQLSTATE: the connection failed or dropped.
    return isinstance(error, sa.exc.OperationalError) and original is not None and not (
        isinstance(original, sqlite3.Error)
    )
