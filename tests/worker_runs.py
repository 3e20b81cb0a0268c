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
import socket
import subprocess
import sys
import threading
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


class Proxy:
    """A TCP proxy to PostgreSQL that a test can break.

    ``cut``: drop every connection and refuse new ones (accept and close at once, as a
    server restarting or a firewall reset does). ``freeze``: keep every connection and
    accept new ones, but forward nothing either way: a server that takes our bytes
    (the kernel acknowledges them, keepalives are answered) and never answers.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.refusing = False
        self.frozen = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # closed
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._guard:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.frozen:
                    sink.sendall(data)
        except OSError:
            pass  # the other side, or the test, cut it
        for end in (source, sink):
            _shut(end)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, until ``restore``."""
        self.refusing = True
        with self._guard:
            cut, self._open = self._open, set()
        for end in cut:
            _shut(end)

    def freeze(self) -> None:
        """Forward nothing more, on any connection, old or new (until ``restore``)."""
        self.frozen = True

    def restore(self) -> None:
        self.refusing = self.frozen = False

    def close(self) -> None:
        self.cut()
        _shut(self._listener)


def _shut(end: socket.socket) -> None:
    try:
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut
    end.close()


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
