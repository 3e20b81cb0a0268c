"""A new user's first command: ``scripts/run`` on a fresh clone, and the optional parts.

The fresh-clone test clones this repository's HEAD into a scratch folder, runs
``scripts/run`` with a scratch HOME (so the demo writes nowhere else), waits for tick
lines, then sends Ctrl-C (README.md, "Two commands"). It needs the package index;
where pip cannot reach it the test skips with that reason, and fails in CI, which sets
MONITOR_REQUIRE_INDEX. The pip cache of the real HOME is reused to keep it short.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, missing

from monitor.cli import main

INSTALL_DEADLINE_S = 900  # a venv and the packages, from the pip cache when it has them
STOP_DEADLINE_S = 5  # Ctrl-C to exit (README.md)
NETWORK_TROUBLE = ("Failed to establish a new connection", "Could not find a version",
                   "No matching distribution", "Temporary failure in name resolution",
                   "Network is unreachable", "ProxyError", "ConnectTimeoutError")


def scratch_environment(home: Path) -> dict[str, str]:
    """This environment without the project's venv or settings, in a scratch HOME."""
    cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MONITOR_", "XDG_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(home), PIP_CACHE_DIR=cache)
    return env


def lines_of(stream) -> queue.Queue:
    """The stream's lines, read by a thread, so the test waits on them with a deadline."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_ticks(process, lines: queue.Queue, seen: list[str], ticks: int) -> bool:
    """Whether ``ticks`` summary lines came before the deadline or the end of output."""
    deadline = time.monotonic() + INSTALL_DEADLINE_S
    count = 0
    while count < ticks:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if line is None:
            return False
        seen.append(line)
        count += line.startswith("host=")
    return True


@pytest.mark.slow
def test_scripts_run_on_a_fresh_clone_ticks_and_stops_on_ctrl_c(tmp_path):
    if not (REPO / ".git").exists():
        missing(f"needs a git checkout at {REPO} to clone", "MONITOR_REQUIRE_INDEX")
    clone, home = tmp_path / "clone", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    process = subprocess.Popen([str(clone / "scripts" / "run")], cwd=clone,
                               env=scratch_environment(home), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        lines = lines_of(process.stdout)
        ticked = wait_for_ticks(process, lines, seen, ticks=3)
        if not ticked:
            output = "".join(seen)
            if process.poll() is not None and any(t in output for t in NETWORK_TROUBLE):
                missing(f"pip cannot reach the package index: {seen[-1].strip()}",
                        "MONITOR_REQUIRE_INDEX")
            pytest.fail(f"no tick lines from scripts/run:\n{output}")
        process.send_signal(signal.SIGINT)  # scripts/run execs monitor: this is Ctrl-C
        code = process.wait(timeout=STOP_DEADLINE_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    while (line := lines.get(timeout=STOP_DEADLINE_S)) is not None:
        seen.append(line)
    output = "".join(seen)
    assert code in (0, 130), output
    assert "Traceback" not in output, output
    assert (home / ".local" / "share" / "monitor" / "monitor.db").exists()


def block_import(monkeypatch, module: str, *importers: str) -> None:
    """Make ``module`` absent for this test, as on a machine without its extra."""
    monkeypatch.setitem(sys.modules, module, None)  # import raises ModuleNotFoundError
    for name in importers:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_the_worker_runs_without_prometheus_client_while_metrics_are_off(
        monkeypatch, tmp_path, capsys):
    block_import(monkeypatch, "prometheus_client", "monitor.worker.metrics")
    assert main(["run", "--ticks", "1", "--db", f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    assert "host=host-a" in capsys.readouterr().out


def test_metrics_without_prometheus_client_is_one_line_naming_the_extra(
        monkeypatch, tmp_path, capsys):
    block_import(monkeypatch, "prometheus_client", "monitor.worker.metrics")
    code = main(["run", "--ticks", "1", "--metrics", "127.0.0.1:0",
                 "--db", f"sqlite:///{tmp_path / 'm.db'}"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "monitor: error: metrics on 127.0.0.1:0: prometheus-client is not installed "
        "(pip install 'monitor[metrics]')"]


def test_postgresql_without_psycopg_is_one_line_naming_the_extra(monkeypatch, capsys):
    block_import(monkeypatch, "psycopg")
    code = main(["db", "init", "--db", "postgresql://nobody@127.0.0.1:1/none"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "monitor: error: cannot use database URL postgresql+psycopg://nobody@127.0.0.1:1/none: "
        "psycopg is not installed (pip install 'monitor[postgres]')"]
