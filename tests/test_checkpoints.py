"""SQLite's WAL checkpoints on a thread of their own (monitor/store/checkpoints.py;
docs/performance.md, "The eleventh wave"; docs/operations.md, "SQLite")."""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from monitor.bench.fleet import Fleet
from monitor.cli import main
from monitor.store import Store
from monitor.store.checkpoints import BACKSTOP_PAGES, BackgroundCheckpoints

WAIT_S = 10  # a bound on waiting for the thread, not a pause: it returns at once when done


def autocheckpoint(store: Store) -> int:
    """The WAL size at which a connection the store hands out checkpoints itself."""
    with store.transaction() as tx:
        return tx._connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()


def load_fleet(store: Store, vms: int) -> None:
    fleet = Fleet(vms, 1)
    with store.transaction() as tx:
        tx.replace_vms(fleet.records(0))


def test_the_thread_copies_what_was_committed_into_the_database_file(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store, \
            store.background_checkpoints() as checkpoints:
        load_fleet(store, 20)
        done = checkpoints.wait_next(WAIT_S)
    assert done is not None and not done.busy
    assert done.frames > 0 and done.copied == done.frames


def test_the_thread_takes_no_connection_from_the_ticks_pool(tmp_path):
    """A worker's tick threads may hold every pooled connection at once."""
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store, \
            store.background_checkpoints() as checkpoints:
        assert checkpoints.wait_next(WAIT_S) is not None
        assert store._engine.pool.checkedout() == 0


def test_while_it_runs_the_ticks_connections_checkpoint_only_past_the_backstop(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        before = autocheckpoint(store)
        with store.background_checkpoints():
            during = autocheckpoint(store)
        after = autocheckpoint(store)
    assert (before, during, after) == (1000, BACKSTOP_PAGES, 1000)


def test_the_thread_stops_with_its_block(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        with store.background_checkpoints():
            running = _checkpoint_threads()
        assert (running, _checkpoint_threads()) == (1, 0)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_checkpoints_on_its_own(db_url):
    with Store.open(db_url) as store, store.background_checkpoints():
        assert _checkpoint_threads() == 0


class _FailingDriver:
    def execute(self, sql: str):
        raise sqlite3.OperationalError("disk I/O error")


def test_a_failing_checkpoint_is_logged_once_and_tried_again(tmp_path, caplog):
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        checkpoints = BackgroundCheckpoints(store._engine)
        with caplog.at_level(logging.WARNING, logger="monitor.store.checkpoints"):
            results = [checkpoints._checkpoint(_FailingDriver()) for _ in range(3)]
    assert results == [None, None, None]
    assert [record.getMessage() for record in caplog.records] == [
        "WAL checkpoint failed, tried again every 0.1s: disk I/O error"]


def test_without_a_connection_the_commits_keep_the_checkpoints(tmp_path, caplog):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'monitor.db'}")
    with caplog.at_level(logging.WARNING, logger="monitor.store.checkpoints"), \
            BackgroundCheckpoints(engine) as checkpoints:
        checkpoints._thread.join(WAIT_S)  # it ends on its own, before the block stops it
        ended = not checkpoints._thread.is_alive()
    assert ended
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        "WAL checkpoints left to the commits"]


def _checkpoint_threads() -> int:
    return sum(thread.name == "sqlite-checkpoints" for thread in threading.enumerate())


@pytest.mark.parametrize("verb", [
    ["run", "--ticks", "1", "--interval", "0.05"],
    ["bench", "--vms", "20", "--hosts", "2", "--runs", "1"],
])
def test_the_long_running_verbs_tick_with_the_thread_running(verb, tmp_path, monkeypatch,
                                                              capsys):
    """``monitor run`` and ``monitor bench`` (docs/operations.md, "What is bounded")."""
    seen = []
    opened = Store.background_checkpoints

    @contextmanager
    def spied(store):
        with opened(store):
            yield
            seen.append(_checkpoint_threads())

    monkeypatch.setattr(Store, "background_checkpoints", spied)
    assert main([*verb, "--db", f"sqlite:///{tmp_path / 'monitor.db'}"]) == 0
    assert seen == [1]
