"""``tools/partial_floor/run`` (docs/performance.md, "The seventh wave") keeps working:
a tiny run on SQLite.

Times are not asserted; that the tick's statements were recorded and replayed (the
first read, the locks' upsert, the fence's claim, the rows, the writes, the commits),
and that the report says what it measured, is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "partial_floor" / "run"
TINY = ("--vms", "20", "--hosts", "2")


def run_tool(*args: str, pg_url: str | None = None) -> subprocess.CompletedProcess:
    """The tool with ``args``, this interpreter, and ``pg_url`` as its PostgreSQL."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    if pg_url is not None:
        env["MONITOR_PG_URL"] = pg_url
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)


def test_the_partial_floor_tool_replays_a_partial_tick():
    done = run_tool(*TINY, "--repeat", "3")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "20 VMs on 2 hosts, sqlite" in out
    for line in ("full tick of a host", "partial tick of a host", "its statements, bare",
                 "the VM's own work", "floor: statements + VM"):
        assert re.search(rf"^  {re.escape(line)} +\d+\.\d+ ms", out, re.M), out
    replayed = re.findall(r"^ +\d+\.\d µs  (.+)$", out, re.M)
    # SQLite's sequence for one changed VM (tests/test_tick_statements.py counts it too)
    expected = ["SELECT vms.id,", "BEGIN IMMEDIATE", "INSERT INTO vm_device_locks", "COMMIT",
                "BEGIN IMMEDIATE", "DELETE FROM vm_device_locks", "SELECT vm_devices.device_id,",
                "SELECT vms.id,", "UPDATE vms SET", "UPDATE vm_devices SET",
                "INSERT INTO vm_last_xml", "COMMIT"]
    assert len(replayed) == len(expected), out
    assert all(line.startswith(start) for line, start in zip(replayed, expected)), out


def test_the_tool_measures_through_a_farther_server(pg_database):
    """``--delay-ms`` runs what it measures through ``delay.py``: a bare round trip
    takes at least twice the delay, so does each of a tick's, and the report says the
    delay it ran with."""
    url = pg_database.render_as_string(hide_password=False)
    done = run_tool("--db", "postgresql", "--delay-ms", "2", *TINY, "--repeat", "3",
                    pg_url=url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "20 VMs on 2 hosts, postgresql, 2 ms each way" in out
    assert re.search(r"^  the same, pipelined +\d+\.\d+ ms", out, re.M), out
    round_trip = float(re.search(r"^  a round trip \(SELECT 1\) +(\d+\.\d+) ms", out, re.M)[1])
    assert round_trip >= 4.0, out
    partial = float(re.search(r"^  partial tick of a host +(\d+\.\d+) ms", out, re.M)[1])
    # The ticks go through it too: a partial tick needs a read, a lock and an apply.
    assert partial >= 3 * round_trip, out


def test_the_delay_is_refused_without_postgresql():
    done = run_tool("--delay-ms", "1")
    assert done.returncode == 2 and "--delay-ms needs --db postgresql" in done.stderr


def test_the_tool_measures_a_full_tick_against_the_parse_floor():
    """``--full`` (docs/performance.md, "The tenth wave"): one host's full tick, its
    statements replayed (a batch each: both VMs' rows read and written at once), its
    VMs' own work, each also as a multiple of lxml's parse of the host's documents."""
    done = run_tool("--full", *TINY, "--repeat", "2")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "20 VMs on 2 hosts, sqlite: a full tick of one host (10 VMs), medians of 2 rounds" \
        in out
    figures = {}
    for line in ("lxml parse (the floor)", "full tick of a host", "its statements, bare",
                 "the VMs' own work", "floor: statements + VMs"):
        found = re.search(rf"^  {re.escape(line)} +(\d+\.\d+) ms +(\d+\.\d+) x floor$",
                          out, re.M)
        assert found, out
        figures[line] = float(found[1])
    assert re.search(r"^  lxml parse \(the floor\) +\d+\.\d+ ms +1\.00 x floor$", out, re.M)
    # every round's tick did the whole host's work (each replay writes the recorded
    # layout back: a tick of that same layout would find nothing changed)
    assert "(VMs applied by each round's tick: 10)" in out, out
    # the floor line adds its two parts (medians of sums: equal within the rounding)
    both = figures["its statements, bare"] + figures["the VMs' own work"]
    assert abs(figures["floor: statements + VMs"] - both) <= 0.25 * both, out
    replayed = re.findall(r"^ +\d+\.\d µs  (.+)$", out, re.M)
    # ten VMs changed, one batch: the rows of all ten read in one SELECT, written in one
    # UPDATE statement (the driver's executemany on SQLite)
    assert sum(line.startswith("SELECT vm_devices.device_id,") for line in replayed) == 1, out
    assert sum(line.startswith("UPDATE vm_devices SET") for line in replayed) == 1, out
    assert sum(line.startswith("INSERT INTO vm_last_xml") for line in replayed) == 1, out


def test_on_postgresql_the_full_tick_also_shows_the_servers_share(pg_database):
    """The replay again with the JSON parameters encoded beforehand and the JSON columns
    left as text: each statement's second time, and their sum."""
    url = pg_database.render_as_string(hide_password=False)
    done = run_tool("--db", "postgresql", "--full", *TINY, "--repeat", "2", pg_url=url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^    the server and the wire +\d+\.\d+ ms +\d+\.\d+ x floor$", out, re.M)
    both = re.findall(r"^ +\d+\.\d µs +\d+\.\d µs  (.+)$", out, re.M)
    # the batch's writes: one statement (monitor/store/batch_writes.py)
    assert sum(line.startswith("WITH advanced AS") for line in both) == 1, out
    assert not [line for line in both if line.startswith(("UPDATE", "INSERT INTO vm_"
                                                          "last_xml"))], out
    assert len(both) == len(re.findall(r"^ +\d+\.\d µs", out, re.M)), out
