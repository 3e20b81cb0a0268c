"""SQLite: the WAL's checkpoints on a thread of their own, not in the ticks' commits.

In WAL mode a commit appends the pages it wrote to the ``-wal`` file, and a checkpoint
copies them back into the database file. By default SQLite runs that checkpoint inside
the commit that takes the WAL past 1,000 pages (4 MB): ~16 ms of copying in whichever
tick happened to commit then. A 1 % tick of 10,000 VMs writes ~1,300 pages, so one or
two of those land in every such tick, ~7 % of it (docs/performance.md, "The eleventh
wave"). The long-running verbs (``monitor run``, ``monitor bench``) run them here
instead: a thread with a connection of its own sends a ``PASSIVE`` checkpoint every
``interval_s``, as PostgreSQL's checkpointer is a process of its own. The sqlite3 module
lets go of the GIL while SQLite copies, so the ticks go on meanwhile.

A ``PASSIVE`` checkpoint never waits for a reader or a writer: it copies what it can
and leaves the rest for the next one. While this runs, the other connections of the
engine keep SQLite's own checkpoint as a backstop at ``BACKSTOP_PAGES``: if this thread
falls behind or fails, the WAL still stops growing there. A checkpoint that fails is
logged (once per message) and tried again at the next interval; if the thread gets no
connection at all, that is logged and the commits checkpoint at the backstop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import NamedTuple, Self

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger("monitor.store.checkpoints")

INTERVAL_S = 0.1
BACKSTOP_PAGES = 10_000  # SQLite's own default: 1,000
_BACKSTOP_SET = "monitor.wal_backstop"  # in a pooled connection's ``info``: set already


class Checkpoint(NamedTuple):
    """What one ``PASSIVE`` checkpoint reported: whether it could not finish because a
    reader or writer was in the way, the WAL's frames, and how many are in the database
    file now (both -1 outside WAL mode)."""

    busy: bool
    frames: int
    copied: int


class BackgroundCheckpoints:
    """The checkpoint thread of one SQLite engine, for a ``with`` block."""

    def __init__(self, engine: Engine, interval_s: float = INTERVAL_S) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._count = 0  # checkpoints finished (or failed), for ``wait_next``
        self._last: Checkpoint | None = None
        self._failures: set[str] = set()  # messages logged already
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints",
                                        daemon=True)

    def __enter__(self) -> Self:
        sa.event.listen(self._engine, "checkout", _set_backstop)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        sa.event.remove(self._engine, "checkout", _set_backstop)
        self._engine.dispose()  # the pooled connections with the backstop are closed

    def wait_next(self, timeout_s: float) -> Checkpoint | None:
        """The result of the first checkpoint that starts after this call (``None`` if
        it failed, or none finished within ``timeout_s``)."""
        with self._done:
            wanted = self._count + 2  # the one under way may have started before the call
            if not self._done.wait_for(lambda: self._count >= wanted, timeout_s):
                return None
            return self._last

    def _run(self) -> None:
        try:
            connection = self._connect()
        except sqlite3.Error as error:
            log.warning("WAL checkpoints left to the commits: no connection for them: %s",
                        error)
            return
        try:
            while not self._stop.wait(self._interval_s):
                result = self._checkpoint(connection)
                with self._done:
                    self._count += 1
                    self._last = result
                    self._done.notify_all()
        finally:
            connection.close()

    def _connect(self) -> sqlite3.Connection:
        """A connection of the thread's own, with the URL's arguments, outside the
        engine's pool: the ticks' threads keep every pooled one (a ``PASSIVE`` checkpoint
        needs no busy timeout and no other setting of theirs)."""
        dialect = self._engine.dialect
        args, options = dialect.create_connect_args(self._engine.url)
        return dialect.loaded_dbapi.connect(*args, **options)

    def _checkpoint(self, driver: sqlite3.Connection) -> Checkpoint | None:
        try:
            busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:
            message = str(error)
            if message not in self._failures:
                self._failures.add(message)
                log.warning("WAL checkpoint failed, tried again every %gs: %s",
                            self._interval_s, message)
            return None
        return Checkpoint(bool(busy), frames, copied)


def _set_backstop(driver: sqlite3.Connection, record, _proxy) -> None:
    """While the thread runs, a connection the pool hands out checkpoints the WAL itself
    only past ``BACKSTOP_PAGES`` (set once per connection)."""
    if not record.info.get(_BACKSTOP_SET):
        driver.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        record.info[_BACKSTOP_SET] = True
