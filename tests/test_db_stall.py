"""A database that takes our bytes and never answers (docs/operations.md, "What is
bounded"): the worker logs the stall, and SIGTERM stops it within 10 s, non-zero, in
one line. A real ``monitor run`` process talks to PostgreSQL through a local proxy that
stops forwarding: its kernel still acknowledges every byte and every keepalive, so
only the worker's own watch can tell.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy.engine import make_url

from conftest import REPO
from monitor.errors import StoppedStuck
from monitor.store.engine import NETWORK_TIMEOUTS, create_engine, network_timeouts
from worker_runs import HOST, Proxy, load_inventory, make_many, worker_env

DEADLINE_S = 60.0


def lines_of(stream, into: queue.Queue) -> threading.Thread:
    def read() -> None:
        for line in stream:
            into.put(line.rstrip("\n"))
        into.put(None)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def wait_for(lines: queue.Queue, seen: list[str], wanted) -> str:
    """The first line for which ``wanted`` holds; every line read goes to ``seen``."""
    deadline = time.monotonic() + DEADLINE_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if wanted(line):
            return line
    pytest.fail(f"no such line within {DEADLINE_S:g}s; got:\n" + "\n".join(seen))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_database_that_never_answers_is_logged_and_sigterm_stops_the_worker(db_url, tmp_path):
    fixture = make_many(tmp_path / "fixture", 5)
    load_inventory(db_url, fixture)
    parsed = make_url(db_url)
    proxy = Proxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = tmp_path / "monitor.toml"
    config.write_text(f'[worker]\nstall_warn = 1\n\n[[hosts]]\nname = "{HOST}"\n'
                      f'fixture = "{fixture}"\n', encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config), "--db", url,
         "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env(), cwd=REPO)
    out, err, seen_out, seen_err = queue.Queue(), queue.Queue(), [], []
    lines_of(process.stdout, out), lines_of(process.stderr, err)
    try:
        wait_for(out, seen_out, lambda line: line.startswith(f"host={HOST}"))  # it works
        proxy.freeze()
        stall = wait_for(err, seen_err, lambda line: "without finishing" in line)
        assert f"host={HOST}" in stall and "not answering" in stall

        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop the worker within 10 s")
        rest = []
        while (line := err.get(timeout=DEADLINE_S)) is not None:
            rest.append(line)
    finally:
        process.kill()
        process.wait()
        proxy.close()
    assert code == StoppedStuck.exit_code
    errors = [line for line in rest if line.startswith("monitor: error:")]
    assert len(errors) == 1 and "not answering" in errors[0], rest
    assert not any("Traceback" in line for line in seen_err + rest)


def test_psycopg_gets_network_timeouts_unless_the_url_sets_its_own():
    assert network_timeouts(make_url("postgresql+psycopg://h/db?keepalives_idle=5")) == {
        name: value for name, value in NETWORK_TIMEOUTS.items() if name != "keepalives_idle"}
    assert set(NETWORK_TIMEOUTS) >= {"keepalives", "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout", "connect_timeout"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_postgresql_session_runs_with_the_network_timeouts(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            parameters = connection.connection.dbapi_connection.info.get_parameters()
    finally:
        engine.dispose()
    assert {name: parameters.get(name) for name in NETWORK_TIMEOUTS} == NETWORK_TIMEOUTS
