"""The tick's statements on SQLite: compiled once by SQLAlchemy, run on the sqlite3 cursor.

SQLAlchemy Core declares every statement (``repository``, ``row_writes``) and stays the
owner of the schema, of the transactions and of every other statement. What this module
takes over, for the few statements a tick runs on SQLite, is their execution: SQLAlchemy's
execution context, result object and per-row processing cost 15-20 µs a statement here,
against ~2 µs for the sqlite3 cursor, and a partial tick of a host runs about ten of
them (docs/performance.md, "The seventh wave"). The values are converted by the same
type processors SQLAlchemy would call (taken from the types once per statement), so what
reaches the database and what comes back are the same.

On PostgreSQL every call here is SQLAlchemy's own ``execute``: there a statement's cost
is the server's, and psycopg's adaptation is not worth a second path.

Errors keep their SQLAlchemy class (``sqlalchemy.exc.DBAPIError.instance``, as SQLAlchemy
wraps them), so ``Store``'s translation into a one-line ``StoreError`` is the same for
both paths; and SQLAlchemy's ``before_cursor_execute`` event is fired for each statement,
so what listens to the statements sent (a tracer, the tests' counts) sees them all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Processor = Callable[[Any], Any] | None


class Prepared(NamedTuple):
    """A statement compiled for SQLite: its text, its parameters in order with their
    values in the statement (``REQUIRED``: the caller gives it) and bind processors,
    and the columns of its rows that have a result processor, with it."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    binds: tuple[Processor, ...]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]


REQUIRED = object()


_PREPARED: dict[sa.Executable, Prepared] = {}


def prepared(statement: sa.Executable, dialect: Dialect) -> Prepared:
    """``statement`` compiled for SQLite once per process (only SQLite comes here)."""
    found = _PREPARED.get(statement)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        defaults = {name: REQUIRED if bind.required else bind.value
                    for name, bind in compiled.binds.items()}
        binds = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                      for name in names)
        columns = getattr(statement, "exported_columns", ())
        processors = (column.type.dialect_impl(dialect).result_processor(dialect, None)
                      for column in columns)
        results = tuple((index, processor) for index, processor in enumerate(processors)
                        if processor is not None)
        found = _PREPARED[statement] = Prepared(
            str(compiled), names, tuple(defaults[name] for name in names), binds, results)
    return found


def fetch(connection: Connection, statement: sa.Executable,
          params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
    """The rows ``statement`` returns with ``params`` (a select, or DML with RETURNING)."""
    if connection.dialect.name != "sqlite":
        return connection.execute(statement, params).all()
    compiled = prepared(statement, connection.dialect)
    values = _values(compiled, params)
    cursor = connection.connection.driver_connection.cursor()
    _announce(connection, cursor, compiled.sql, values, False)
    try:
        rows = cursor.execute(compiled.sql, values).fetchall()
    except sqlite3.Error as error:
        raise _wrapped(compiled.sql, values, error, connection) from error
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
    order (SQLAlchemy's ``executemany`` with RETURNING on PostgreSQL)."""
    if connection.dialect.name != "sqlite":
        return list(connection.execute(statement, list(params)).all())
    return [row for one in params for row in fetch(connection, statement, one)]


def execute_many(connection: Connection, statement: sa.Executable,
                 params: Sequence[Mapping[str, Any]]) -> int:
    """``statement`` (DML without RETURNING) once for each parameter set: rows written."""
    if connection.dialect.name != "sqlite":
        result = connection.execute(statement, list(params))
        sane = connection.dialect.supports_sane_multi_rowcount and result.rowcount >= 0
        return result.rowcount if sane else len(params)
    compiled = prepared(statement, connection.dialect)
    values = [_values(compiled, one) for one in params]
    cursor = driver_executemany(connection, compiled.sql, values)
    return cursor.rowcount if cursor.rowcount >= 0 else len(values)


def driver_execute(connection: Connection, sql: str) -> None:
    """SQLite: one statement without parameters or rows (``BEGIN IMMEDIATE``)."""
    cursor = connection.connection.driver_connection.cursor()
    _announce(connection, cursor, sql, (), False)
    try:
        cursor.execute(sql)
    except sqlite3.Error as error:
        raise _wrapped(sql, (), error, connection) from error


def driver_executemany(connection: Connection, sql: str,
                       values: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
    """SQLite: ``sql`` over parameter tuples already in the database's types."""
    cursor = connection.connection.driver_connection.cursor()
    _announce(connection, cursor, sql, values, True)
    try:
        return cursor.executemany(sql, values)
    except sqlite3.Error as error:
        raise _wrapped(sql, values, error, connection, many=True) from error


def _values(compiled: Prepared, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parameters in the statement's order, converted as SQLAlchemy converts them."""
    values = []
    for name, default, bind in zip(compiled.names, compiled.defaults, compiled.binds):
        value = params.get(name, default)
        if value is REQUIRED:
            raise sa.exc.ArgumentError(f"{compiled.sql!r}: no value for {name!r}")
        values.append(value if bind is None else bind(value))
    return tuple(values)


def _announce(connection: Connection, cursor: sqlite3.Cursor, sql: str, values,
              many: bool) -> None:
    """SQLAlchemy's ``before_cursor_execute`` event, as its own execution fires it: what
    listens to the statements sent (tracing, the tests' counts) sees these too."""
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, values, None, many)


def _wrapped(sql: str, values, error: sqlite3.Error, connection: Connection,
             many: bool = False) -> sa.exc.DBAPIError:
    """The error as SQLAlchemy would have raised it (``OperationalError``, ...)."""
    return sa.exc.DBAPIError.instance(sql, values, error, sqlite3.Error,
                                      dialect=connection.dialect, ismulti=many)
