"""Crash safety: the worker, a real process, killed with SIGKILL in the middle of a tick.

The worker plays 30 VMs in batches of 5 and kills itself at a fault point
(``MONITOR_FAULT``, ``monitor.faults``). Then every VM must be either fully applied
(its new hash and exactly the rows a clean replay leaves) or untouched (the inventory's
hash and rows), the applied ones exactly the batches committed before the kill. A
restarted worker, on the same database, finishes the job in one tick: every VM applied,
no duplicate row, no devices lock left behind (the dead worker's locks are released at
start, not waited out for the lock TTL).
"""

from __future__ import annotations

import signal

import pytest

from monitor.cli import main
from monitor.errors import UsageError
from monitor.faults import POINTS, kill_this_process, parse, pause_this_process
from monitor.store import Store
from monitor.worker.stale_locks import dead_holders
from worker_runs import (
    BATCH_SIZE,
    load_inventory,
    many_states,
    run_worker,
    states,
    write_config,
)

COUNT = 30  # six batches


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    return many_states(tmp_path_factory, COUNT)


# (MONITOR_FAULT, how many VMs are applied when the process dies, databases)
BOTH, SQLITE = ("sqlite", "postgresql"), ("sqlite",)
KILLS = [
    ("after-plan", 0, SQLITE, "after-plan"),
    ("after-dump", 0, BOTH, "after-dump-locks-held"),
    ("in-batch:1", 0, BOTH, "inside-first-batch"),
    ("in-batch:4", 3 * BATCH_SIZE, BOTH, "inside-fourth-batch"),
    ("between-batches:2", 2 * BATCH_SIZE, BOTH, "between-batches-2-3"),
    ("after-commit:1", BATCH_SIZE, SQLITE, "after-first-commit"),
    ("before-unlock", COUNT, SQLITE, "all-applied-before-the-last-unlock"),
]
CASES = [pytest.param(db, fault, applied, id=f"{db}-{name}")
         for fault, applied, dbs, name in KILLS for db in dbs]


@pytest.mark.parametrize(("db_url", "fault", "applied"), CASES, indirect=["db_url"])
def test_a_killed_worker_leaves_each_vm_applied_or_untouched(many, db_url, tmp_path, capsys,
                                                              fault, applied):
    fixture, before, after = many
    load_inventory(db_url, fixture)
    config = write_config(tmp_path / "worker.toml", fixture)

    killed = run_worker(config, db_url, ticks=3, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert f"fault {fault.partition(':')[0]}: killing" in killed.stderr

    found = states(db_url)
    ids = sorted(found)  # a tick applies its batches in VM id order
    assert [vm_id for vm_id in ids if found[vm_id] == after[vm_id]] == ids[:applied]
    assert [vm_id for vm_id in ids if found[vm_id] == before[vm_id]] == ids[applied:]

    assert main(["run", "--config", str(config), "--db", db_url, "--ticks", "1",
                 "--interval", "0.05"]) == 0  # the restart
    out = capsys.readouterr().out
    assert f"applied={COUNT - applied} " in out
    assert states(db_url) == after
    with Store.open(db_url) as store, store.transaction() as tx:
        assert tx.lock_holders() == set()
        assert tx.count_rows() == sum(len(state.rows) for state in after.values())


def test_a_mistyped_fault_point_fails_at_start_in_one_line(tmp_path, many):
    fixture, _before, _after = many
    config = write_config(tmp_path / "worker.toml", fixture)
    result = run_worker(config, f"sqlite:///{tmp_path / 'm.db'}", ticks=1, fault="in-btach:2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "monitor: error: MONITOR_FAULT=in-btach:2: unknown fault point 'in-btach' (known: "
        + ", ".join(POINTS) + ")"
    ]


@pytest.mark.parametrize(("value", "point", "nth", "action"), [
    pytest.param("", None, None, None, id="unset"),
    pytest.param("in-batch", "in-batch", 1, kill_this_process, id="first-time-by-default"),
    pytest.param("between-batches:3", "between-batches", 3, kill_this_process,
                 id="third-time"),
    pytest.param("after-dump:pause", "after-dump", 1, pause_this_process, id="pause"),
    pytest.param("after-dump:4:pause", "after-dump", 4, pause_this_process,
                 id="pause-the-fourth-time"),
])
def test_fault_setting(value, point, nth, action):
    fault = parse(value)
    assert (fault and (fault.point, fault.nth, fault.action)) == (point and (point, nth, action))


@pytest.mark.parametrize("value", [
    pytest.param("in-btach", id="unknown-point"),
    pytest.param("in-batch:0", id="zero"),
    pytest.param("in-batch:x", id="not-a-number"),
    pytest.param("in-batch:stop", id="not-an-action"),
    pytest.param("in-batch:pause:2", id="pause-before-the-count"),
])
def test_a_bad_fault_setting_is_a_usage_error(value):
    with pytest.raises(UsageError, match="MONITOR_FAULT="):
        parse(value)


OURS = "monitor@node1:100/c0ffee00"


@pytest.mark.parametrize(("holder", "dead"), [
    pytest.param("monitor@node1:200/1234abcd", True, id="this-machine-process-gone"),
    pytest.param("monitor@node1:300/1234abcd", False, id="this-machine-process-alive"),
    pytest.param("monitor@node1:100/1234abcd", True, id="our-pid-another-start"),
    pytest.param("monitor@node1:100", True, id="our-pid-an-older-name-without-start-id"),
    pytest.param(OURS, False, id="ourselves"),
    pytest.param("monitor@node2:200/1234abcd", False, id="another-machine"),
    pytest.param("device-command (fixture locks.json)", False, id="a-device-command"),
])
def test_which_lock_holders_are_dead(holder, dead):
    assert dead_holders({holder}, OURS, alive=lambda pid: pid == 300) == ([holder] if dead else [])
