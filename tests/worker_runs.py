"""What the crash, DB-fault and two-worker tests share: a fixture of many VMs, the
state of every VM as the tests compare it, and the worker as a real process.

A VM's state is its hash and its rows (every field, as exported). The fixture's
versions are built so that the rows a version leaves do not depend on what was applied
before (``scripts/make_fixtures.py many_vms``); so for every hash the tests know the
one set of rows that must come with it, computed by a clean replay on a scratch DB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from conftest import REPO
from monitor.clock import SystemClock
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import tick_sources
from monitor.store import Store
from monitor.store.inventory import load_document, read_document
from monitor.tick.host_tick import TickContext, run_tick

sys.path.insert(0, str(REPO / "scripts"))
import make_fixtures  # noqa: E402

HOST = "host-a"
BATCH_SIZE = 5


class HandClock(SystemClock):
    """The system's UTC clock, and a monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class VmState(NamedTuple):
    hash: str | None
    rows: tuple[str, ...]  # each row as sorted JSON, sorted by device_id


def make_many(root: Path, count: int, versions: int = 1) -> Path:
    make_fixtures.many_vms(root, count, versions)
    return root


def states_of(document: dict) -> dict[str, VmState]:
    rows: dict[str, list[str]] = {vm["id"]: [] for vm in document["vms"]}
    for row in document["devices"]:  # sorted by (vm_id, device_id) already
        rows[row["vm_id"]].append(json.dumps(row, sort_keys=True))
    return {vm["id"]: VmState(vm["hash"], tuple(rows[vm["id"]])) for vm in document["vms"]}


def states(url: str) -> dict[str, VmState]:
    with Store.open(url) as store, store.transaction() as tx:
        return states_of(tx.export())


def inventory_states(fixture: Path) -> dict[str, VmState]:
    return states_of(read_document(fixture / "inventory.json"))


def load_inventory(url: str, fixture: Path) -> None:
    with Store.open(url) as store:
        load_document(store, read_document(fixture / "inventory.json"))


def version_states(fixture: Path, tmp: Path) -> dict[int, dict[str, VmState]]:
    """Per tick number: every VM's state after that tick alone, applied to the inventory."""
    result = {}
    for tick in read_fixture(fixture).ticks:
        url = f"sqlite:///{tmp / f'clean-{tick.number}.db'}"
        load_inventory(url, fixture)
        with Store.open(url) as store:
            for source in tick_sources(tick):
                run_tick(source, TickContext(store=store, holder="clean-replay"))
        result[tick.number] = states(url)
    return result


def with_query(url: str, **query: str) -> str:
    """``url`` with these query parameters; PostgreSQL ``options`` are appended."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    options = query.pop("options", None)
    if options:
        query["options"] = " ".join(filter(None, (parsed.query.get("options"), options)))
    return parsed.update_query_dict(query).render_as_string(hide_password=False)


def write_config(path: Path, fixture: Path, *, batch_size: int = BATCH_SIZE) -> Path:
    path.write_text(
        f"[worker]\nbatch_size = {batch_size}\nbackoff_max = 0.2\n\n"
        f'[[hosts]]\nname = "{HOST}"\nfixture = "{fixture}"\n',
        encoding="utf-8",
    )
    return path


def worker_command(config: Path, url: str, ticks: int) -> list[str]:
    return [sys.executable, "-m", "monitor", "run", "--config", str(config), "--db", url,
            "--ticks", str(ticks), "--interval", "0.05"]


def worker_env(fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONITOR_FAULT", "MONITOR_DB_URL")}
    env["PYTHONFAULTHANDLER"] = "1"
    if fault:
        env["MONITOR_FAULT"] = fault
    return env


def run_worker(config: Path, url: str, ticks: int, fault: str | None = None,
               ) -> subprocess.CompletedProcess:
    """Run ``monitor run`` to its end (N ticks, or the fault's SIGKILL)."""
    return run_monitor(worker_command(config, url, ticks), fault)


def run_monitor(command: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    """Run a ``monitor`` command to its end, or to the fault's SIGKILL.

    A command still running after a minute is stuck: it gets SIGABRT, and with
    PYTHONFAULTHANDLER set its threads' stacks land in the stderr the test shows.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=worker_env(fault),
                               cwd=REPO)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate()
        err = f"STUCK for 60s, stacks follow\n{err}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def many_states(tmp_path_factory, count: int):
    """A fixture of ``count`` VMs; each VM's state before the replay and after a clean one."""
    fixture = make_many(tmp_path_factory.mktemp("many") / "fixture", count)
    clean = version_states(fixture, tmp_path_factory.mktemp("clean"))[1]
    return fixture, inventory_states(fixture), clean
