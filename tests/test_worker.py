"""The worker: the demo on a fresh database, backoff of one host, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from monitor.cli import main
from monitor.errors import HostTimeout
from monitor.store import Store
from monitor.tick.host_tick import TickContext
from monitor.worker.host_job import HostJob


def test_demo_reconciles_on_a_fresh_database(db_url, capsys):
    assert main(["run", "--ticks", "2", "--interval", "0.05", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "demo: loaded 3 VMs" in out
    lines = [line for line in out.splitlines() if line.startswith("host=")]
    assert len(lines) >= 4  # two hosts, two ticks each
    assert any("applied=2" in line and "user-alias=14" in line for line in lines)
    with Store.open(db_url) as store, store.transaction() as tx:
        assert all(vm["hash"] for vm in tx.export()["vms"])


def test_demo_second_run_keeps_the_database(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", "--ticks", "1", "--interval", "0.05", "--db", url]) == 0
    assert main(["run", "--ticks", "1", "--interval", "0.05", "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.count("demo: loaded") == 1


class FailingHost:
    name = "flaky"

    def __init__(self) -> None:
        self.polls = 0
        self.fail = True

    def poll(self):
        self.polls += 1
        if self.fail:
            raise HostTimeout("host flaky: timed out")
        return {}

    def dump(self, vm_ids):
        return {}

    def held_locks(self):
        return frozenset()

    def close(self):
        pass


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_host_is_backed_off_then_recovers(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    source, clock, seen = FailingHost(), ManualClock(), []
    job = HostJob(source, TickContext(store=store, holder="t"), interval_s=5,
                  backoff_max_s=60, on_summary=seen.append, clock=clock)
    job()
    assert (source.polls, job.failures, job.not_before) == (1, 1, 10)
    clock.now = 9.9
    job()
    assert source.polls == 1  # still backing off: not polled
    clock.now = 10
    job()
    assert (source.polls, job.failures, job.not_before) == (2, 2, 30)
    source.fail, clock.now = False, 30
    job()
    assert (source.polls, job.failures) == (3, 0)
    assert [s.host_error for s in seen] == ["timeout", "timeout", None]


def test_backoff_is_capped(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    clock = ManualClock()
    job = HostJob(FailingHost(), TickContext(store=store, holder="t"), interval_s=5,
                  backoff_max_s=60, on_summary=lambda s: None, clock=clock)
    for _ in range(6):
        clock.now = job.not_before
        job()
    assert job.not_before - clock.now == 60


def test_sigterm_stops_the_worker_cleanly(tmp_path):
    env = dict(os.environ, MONITOR_DB_URL=f"sqlite:///{tmp_path / 'm.db'}")
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        for line in process.stdout:  # wait for a first tick: synchronised on output
            if line.startswith("host="):
                break
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "worker stopped" in err and "Traceback" not in err
