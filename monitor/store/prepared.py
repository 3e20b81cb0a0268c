"""The tick's statements: compiled once by SQLAlchemy, run on the driver's own cursor.

SQLAlchemy Core declares every statement (``repository``, ``row_writes``) and stays the
owner of the schema, of the transactions and of every other statement. What this module
takes over, for the few statements a tick runs, is their execution: SQLAlchemy's
execution context, result object and per-row processing cost 15-20 µs a statement on
SQLite, against ~2 µs for the sqlite3 cursor, and 60-120 µs on PostgreSQL, against a
~60 µs round trip on psycopg's cursor; a partial tick of a host runs about ten of them
(docs/performance.md, "The seventh wave" and "The eighth wave"). The values are
converted by the same type processors SQLAlchemy would call (taken from the types once
per statement and dialect), so what reaches the database and what comes back are the
same.

A statement declared with ``planned_each_time`` is never a prepared statement on
PostgreSQL: psycopg sends it unnamed, so the server plans it with its values every
time. psycopg prepares every other statement after five runs on a connection, and the
server then keeps one generic plan, made for the tables as they were then. That is
right for tables that grow with the fleet, not for the devices lock table, which every
tick fills and empties: a plan made while it was small scans it whole, dead rows and
all, long after it has grown (docs/performance.md, "The ninth wave"). SQLite plans
with its indexes whatever the table's size.

Each statement is sent and its answer waited for before the next is sent: never in
psycopg's pipeline mode, which its ``executemany`` uses. Between pipelined messages the
server does not arm ``idle_in_transaction_session_timeout`` (it does so only when it
reports itself ready for a query), so a worker frozen in the middle of a pipelined
transaction would keep its host lease row locked for good (docs/performance.md, "The
twelfth wave" and "The thirteenth wave"). On PostgreSQL many rows go in one statement
(``batch_writes``), and ``driver_executemany`` refuses to run.

Errors keep their SQLAlchemy class (``sqlalchemy.exc.DBAPIError.instance``, as SQLAlchemy
wraps them), so ``Store``'s translation into a one-line ``StoreError`` is the same for
both paths; a lost connection is invalidated, as SQLAlchemy does, so the pool replaces it
and the error reads as unavailable. SQLAlchemy's ``before_cursor_execute`` event is fired
for each statement, so what listens to the statements sent (a tracer, the tests' counts)
sees them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from monitor.store import jsontext

Processor = Callable[[Any], Any] | None


class Prepared(NamedTuple):
    """A statement compiled for one dialect: its text, its parameters in order with their
    values in the statement (``REQUIRED``: the caller gives it) and bind processors,
    and the columns of its rows that have a result processor, with it. ``keys``: the
    parameters' names in the text, for a driver that takes them by name (psycopg's
    ``%(name)s``); ``None`` for one that takes them in order (sqlite3's ``?``).
    ``options``: what the driver's ``execute`` is also given (``prepare=False`` for a
    statement planned each time, on psycopg)."""

    sql: str
    names: tuple[str, ...]
    keys: tuple[str, ...] | None
    defaults: tuple[Any, ...]
    binds: tuple[Processor, ...]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    options: Mapping[str, Any]


REQUIRED = object()
_NO_OPTIONS: Mapping[str, Any] = {}
_UNPREPARED: Mapping[str, Any] = {"prepare": False}  # psycopg: sent unnamed, planned each run

_PREPARED: dict[tuple[sa.Executable, str], Prepared] = {}
_PLANNED_EACH_TIME: set[sa.Executable] = set()


def planned_each_time(statement: sa.Executable) -> sa.Executable:
    """Declare ``statement`` one the database plans with its values every time it runs
    (PostgreSQL; see above): for a statement over a table whose size swings within a
    connection's life. Returns it, for use where it is declared."""
    _PLANNED_EACH_TIME.add(statement)
    return statement


def prepared(statement: sa.Executable, dialect: Dialect) -> Prepared:
    """``statement`` compiled for ``dialect`` once per process."""
    found = _PREPARED.get((statement, dialect.name))
    if found is None:
        compiled = statement.compile(dialect=dialect)
        sql = str(compiled)
        if "POSTCOMPILE" in sql:  # an expanding IN: its text depends on the values
            raise ValueError(f"{sql!r}: a statement with expanding parameters cannot be "
                             "compiled once")
        if compiled.positional:
            names = tuple(compiled.positiontup or ())
            keys = None
        else:  # the names the text renders (``binds`` also holds the anonymous ones)
            names = tuple(dict.fromkeys(compiled.bind_names.values()))
            escaped = compiled.escaped_bind_names
            keys = tuple(escaped.get(name, name) for name in names)
        defaults = {name: REQUIRED if bind.required else bind.value
                    for name, bind in compiled.binds.items()}
        binds = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                      for name in names)
        columns = getattr(statement, "exported_columns", ())
        processors = (_result_processor(column, dialect) for column in columns)
        results = tuple((index, processor) for index, processor in enumerate(processors)
                        if processor is not None)
        options = _NO_OPTIONS
        if statement in _PLANNED_EACH_TIME and dialect.name == "postgresql":
            options = _UNPREPARED
        found = _PREPARED[(statement, dialect.name)] = Prepared(
            sql, names, keys, tuple(defaults[name] for name in names), binds, results, options)
    return found


def execute_options(sql: str) -> Mapping[str, Any]:
    """The driver options the engine runs ``sql`` with, for a text compiled here (none
    for any other): what a probe replaying recorded statements sends them with."""
    for compiled in _PREPARED.values():
        if compiled.sql == sql:
            return compiled.options
    return _NO_OPTIONS


def _result_processor(column: Any, dialect: Dialect) -> Processor:
    """SQLAlchemy's processor for the column's values, but for a JSON column that cannot
    be NULL read as text (SQLite): ``jsontext.loads`` itself, the deserializer SQLAlchemy
    calls there, without its two wrappers (a NULL check, and a fallback for numbers that
    ``loads`` has too). ~0.7 µs a row of ``vm_devices`` (three JSON columns), 10 % of
    reading a host's rows (docs/performance.md, "The ninth wave")."""
    processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
    if (processor is not None and isinstance(column.type, sa.JSON)
            and getattr(column, "nullable", True) is False):
        return jsontext.loads
    return processor


def fetch(connection: Connection, statement: sa.Executable,
          params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
    """The rows ``statement`` returns with ``params`` (a select, or DML with RETURNING)."""
    compiled = prepared(statement, connection.dialect)
    rows = _run(connection, compiled.sql, _values(compiled, params), rows=True,
                options=compiled.options)
    if not compiled.results or not rows:
        return rows
    converted = []
    for row in rows:
        row = list(row)
        for index, processor in compiled.results:
            row[index] = processor(row[index])
        converted.append(row)
    return converted


def fetch_each(connection: Connection, statement: sa.Executable,
               params: Sequence[Mapping[str, Any]]) -> list[Sequence[Any]]:
    """The rows ``statement`` (DML with RETURNING) returns for each parameter set, in
    order. On PostgreSQL more than one set goes through SQLAlchemy, whose executemany
    with RETURNING sends them as one statement (``insertmanyvalues``)."""
    if len(params) > 1 and connection.dialect.name == "postgresql":
        return list(connection.execute(statement, list(params)).all())
    return [row for one in params for row in fetch(connection, statement, one)]


def execute(connection: Connection, statement: sa.Executable,
            params: Mapping[str, Any]) -> int:
    """``statement`` (DML without RETURNING) once: rows written."""
    compiled = prepared(statement, connection.dialect)
    return _run(connection, compiled.sql, _values(compiled, params), rows=False,
                options=compiled.options)


def execute_many(connection: Connection, statement: sa.Executable,
                 params: Sequence[Mapping[str, Any]]) -> int:
    """``statement`` (DML without RETURNING) once for each parameter set: rows written.
    One set is one ``execute``; more, the driver's ``executemany`` (SQLite only)."""
    compiled = prepared(statement, connection.dialect)
    if len(params) == 1:
        return _run(connection, compiled.sql, _values(compiled, params[0]), rows=False,
                    options=compiled.options)
    return driver_executemany(connection, compiled.sql,
                              [_values(compiled, one) for one in params])


def driver_execute(connection: Connection, sql: str) -> None:
    """One statement without parameters or rows (SQLite's ``BEGIN IMMEDIATE``)."""
    _run(connection, sql, (), rows=False)


def driver_executemany(connection: Connection, sql: str, values: Sequence[Any]) -> int:
    """``sql`` over parameters already in the database's types (sqlite3's tuples for its
    ``?``): rows written (one a set where the driver does not count). Refused on
    PostgreSQL, where psycopg would pipeline the sets (see above)."""
    if connection.dialect.name == "postgresql":
        raise RuntimeError(f"{sql!r}: not sent as an executemany on PostgreSQL, which "
                           "pipelines it; send the rows in one statement (batch_writes)")
    count = _run(connection, sql, values, rows=False, many=True)
    return count if count >= 0 else len(values)


def _run(connection: Connection, sql: str, values, rows: bool, many: bool = False,
         options: Mapping[str, Any] = _NO_OPTIONS) -> Any:
    """``sql`` on the connection's cursor, once (with the driver's ``options``) or over
    many parameter sets: its rows, or its count."""
    cursor = _cursor(connection)
    _announce(connection, cursor, sql, values, many)
    try:
        if many:
            cursor.executemany(sql, values)
        else:
            cursor.execute(sql, values, **options)
        return cursor.fetchall() if rows else cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as error:
        raise _wrapped(sql, values, error, connection, cursor, many) from error


def _values(compiled: Prepared, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
    """The parameters as the driver takes them, converted as SQLAlchemy converts them."""
    values = []
    for name, default, bind in zip(compiled.names, compiled.defaults, compiled.binds):
        value = params.get(name, default)
        if value is REQUIRED:
            raise sa.exc.ArgumentError(f"{compiled.sql!r}: no value for {name!r}")
        values.append(value if bind is None else bind(value))
    return tuple(values) if compiled.keys is None else dict(zip(compiled.keys, values))


_CURSOR = "monitor.prepared.cursor"


def _cursor(connection: Connection) -> Any:
    """A cursor of the connection's driver connection, kept with it: psycopg's costs
    ~15 µs to make, and a cursor runs one statement after another (sqlite3's and
    psycopg's client-side cursors alike)."""
    driver = connection.connection.driver_connection
    info = connection.info
    kept = info.get(_CURSOR)
    if kept is None or kept[0] is not driver:
        kept = info[_CURSOR] = (driver, driver.cursor())
    return kept[1]


def _announce(connection: Connection, cursor: Any, sql: str, values, many: bool) -> None:
    """SQLAlchemy's ``before_cursor_execute`` event, as its own execution fires it: what
    listens to the statements sent (tracing, the tests' counts) sees these too."""
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, values, None, many)


def _wrapped(sql: str, values, error: Exception, connection: Connection, cursor: Any,
             many: bool = False) -> sa.exc.DBAPIError:
    """The error as SQLAlchemy would have raised it (``OperationalError``, ...). A lost
    connection (the server restarted, the session terminated) is invalidated, as
    SQLAlchemy's own execution does: the pool opens a new one for the next transaction,
    and the error says ``connection_invalidated`` (unavailable, for the store)."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.driver_connection, cursor)
    wrapped = sa.exc.DBAPIError.instance(sql, values, error, dialect.loaded_dbapi.Error,
                                         dialect=dialect, ismulti=many,
                                         connection_invalidated=lost)
    if lost:
        connection.invalidate(error)
    return wrapped
