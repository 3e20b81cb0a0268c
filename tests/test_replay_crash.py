"""``monitor replay`` after a crash applies everything (docs/operations.md, crashes).

A replay killed with SIGKILL while it holds the devices locks of the VMs it fetched
leaves those locks behind; the next replay of the same fixture, on the same database,
releases the locks of this machine's dead workers at start and applies every VM,
instead of skipping them (``skipped[locked=N]``) until the lock TTL runs out.
"""

from __future__ import annotations

import signal
import sys

import pytest

from monitor.cli import main
from monitor.store import Store
from worker_runs import many_states, run_monitor, states

COUNT = 12


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    return many_states(tmp_path_factory, COUNT)


@pytest.mark.parametrize("fault", ["after-dump", "in-batch"])
def test_a_replay_after_a_killed_replay_applies_every_vm(many, tmp_path, capsys, fault):
    fixture, _before, after = many
    url = f"sqlite:///{tmp_path / 'm.db'}"
    killed = run_monitor([sys.executable, "-m", "monitor", "replay", str(fixture),
                          "--db", url], fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Store.open(url) as store, store.transaction() as tx:
        assert tx.lock_holders(), "the killed replay held no lock: the test tests nothing"

    assert main(["replay", str(fixture), "--db", url]) == 0
    out = capsys.readouterr().out
    assert "locked" not in out
    assert f"applied={COUNT} " in out
    assert states(url) == after
    with Store.open(url) as store, store.transaction() as tx:
        assert tx.lock_holders() == set()
