"""How low a partial tick could go with the statements it sends: a probe, not a test.

Run by ``tools/partial_floor/run``. On the benchmark's fleet (monitor/bench), started
and given one full tick, then per host one VM changed at a time, as ``monitor bench``'s
partial tick does:

* ``full``: the engine's full tick of a host (every VM changed), the mean over hosts;
* ``partial``: the engine's tick of a host with one VM changed, the median;
* ``statements``: the statements one such tick sends (recorded from SQLAlchemy's
  ``before_cursor_execute`` and ``commit`` events), each replayed on the bare driver
  connection (sqlite3 or psycopg: no SQLAlchemy, no engine) ``--repeat`` times in the
  same order, with the same parameters and the same commits; the median of each, and
  of the whole sequence. Replayed, the lock upsert takes the lock the claim released
  in the sequence before, so every repetition does the same work. On PostgreSQL the
  first read runs inside the replay's transaction (the engine sends it on its own),
  and the statements the engine has planned each time (``prepared.execute_options``)
  are sent unprepared, as the engine sends them.
* ``vm_work``: the changed VM's own work, as the apply does it (its document read,
  correlated, its row changes decided), the median;
* ``floor``: the bare statements plus the VM's own work, over the full tick: what
  the partial ratio would be if everything else (SQLAlchemy, the tick's per-host
  Python: the poll's checks, the plan, the summary) cost nothing.

``--full``: the same for a full tick of one host (every VM on it changed): the
engine's tick, its statements replayed on the bare driver, every VM's own work, each
also as a multiple of lxml's parse of the host's documents (``monitor bench``'s floor),
so ``full_tick_ratio``'s share of the database alone is read off. Replayed, the
statements write back the recorded layout (the hash guard is decided on a read, so the
hash advances write too), and each round's tick applies the other one: every round's
tick and replay move every device. On PostgreSQL the replay runs a second time with
the JSON parameters encoded beforehand and the JSON columns read as text: the server's
and the wire's share, without the client's JSON work.

``--delay-ms D`` (PostgreSQL): the fleet is loaded directly, then everything measured
goes through a forwarder that holds each chunk D ms (``delay.py``, a process of its
own), as a server farther away would; the report adds a bare ``SELECT 1``'s round trip.
Run it with 0 and with D: the difference in a tick, over the difference in a round
trip, is how many round trips the tick waits for.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa
from psycopg.types.json import Json, Jsonb
from psycopg.types.string import TextLoader
from scratch_db import scratch_database  # tools/scratch_db.py

from monitor import collector
from monitor.adapters.base import Correlated
from monitor.bench.fleet import Fleet
from monitor.bench.fleet import vm_id as fleet_vm_id
from monitor.bench.runner import _FleetState, load, tick_fleet
from monitor.domxml import floor
from monitor.legacy.converter import convert
from monitor.settings import Settings
from monitor.store import jsontext, prepared
from monitor.tick.documents import Fetched, read_document
from monitor.tick.host_tick import run_tick
from monitor.wiring import open_store, tick_context

COMMIT = "COMMIT"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--full", action="store_true",
                        help="a full tick of one host (every VM changed) instead of a "
                             "partial one, against lxml's parse of its documents")
    parser.add_argument("--delay-ms", type=float, default=None,
                        help="PostgreSQL: measure through a forwarder that holds each "
                             "chunk this long (a farther server)")
    args = parser.parse_args()
    if args.delay_ms is not None and args.db != "postgresql":
        parser.error("--delay-ms needs --db postgresql")
    with ExitStack() as stack:
        settings = Settings(db_url=scratch_database(args.db, "partial_floor", stack))
        store = stack.enter_context(open_store(settings))
        context = tick_context(store, settings)
        state = _FleetState(Fleet(args.vms, args.hosts))
        load(context, state.fleet, _quiet)
        tick_fleet(context, state, "start", _quiet)
        if args.delay_ms is not None:
            settings = Settings(db_url=stack.enter_context(delayed(settings.db_url,
                                                                   args.delay_ms)))
            store = stack.enter_context(open_store(settings))
            context = tick_context(store, settings)
        if args.full:
            report_full(args, measure_full(args, store, context, state))
            return
        found = measure(args, store, context, state)
        if args.delay_ms is not None:
            found["round_trip"] = round_trip(store, args.repeat)
        report(args, found)


@contextmanager
def delayed(url: str, delay_ms: float):
    """``url`` pointed at a ``delay.py`` forwarder to its server, for the block."""
    parsed = sa.engine.make_url(url)
    forwarder = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("delay.py")), str(delay_ms),
         parsed.host or "127.0.0.1", str(parsed.port or 5432)],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(forwarder.stdout.readline())
        yield parsed.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        forwarder.kill()
        forwarder.wait()


@contextmanager
def bare_driver(store):
    """The driver's own connection (sqlite3 or psycopg) under one of the engine's
    pooled connections, given back to the pool after the block."""
    raw = store._engine.raw_connection()
    try:
        yield raw.driver_connection
    finally:
        raw.close()


def round_trip(store, repeat: int) -> float:
    """A bare ``SELECT 1`` on the driver connection, the median."""
    with bare_driver(store) as driver:
        cursor = driver.cursor()
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            seconds.append(time.perf_counter() - started)
        driver.rollback()
    return statistics.median(seconds)


def _quiet(*_progress) -> None:
    pass


def measure(args, store, context, state: _FleetState) -> dict:
    hosts = state.fleet.hosts
    state.flip(range(state.fleet.vms))
    full = [timed(run_tick, state.source(host), context) for host in range(hosts)]
    partial = []
    for round_number in range(5):
        for host in range(hosts):
            state.flip([state.fleet.host_vms(host)[round_number]])
            partial.append(timed(run_tick, state.source(host), context))
    host = hosts // 2
    changed = state.fleet.host_vms(host)[7]
    state.flip([changed])
    sent = recorded(store, lambda: run_tick(state.source(host), context))
    return {
        "full": statistics.mean(full),
        "partial": statistics.median(partial),
        "statements": replayed(store, sent, args.repeat),
        "pipelined": (pipelined(store, sent, args.repeat) if args.db == "postgresql"
                      else None),
        "vm_work": vm_work(store, context, state, host, changed, args.repeat),
    }


def measure_full(args, store, context, state: _FleetState) -> dict:
    """One host's full tick, its statements replayed, its VMs' own work and lxml's parse
    of its documents, each once a round for ``--repeat`` rounds, so each is divided by
    the floor measured beside it: this machine's speed moves within a minute. Medians
    over the rounds; the tick's time is the one it reports (``duration_s``: the whole
    of ``run_tick``, the collector paused by it). On PostgreSQL the
    tables are vacuumed after each round, untimed, as autovacuum would (this machine's
    server runs without it): else every round's updates leave their dead row versions
    to the next round's reads and updates, the replays' most of all."""
    host = state.fleet.hosts // 2
    vms = state.fleet.host_vms(host)
    state.flip(vms)
    sent = recorded(store, lambda: run_tick(state.source(host), context))
    # Every round ticks the other layout: each replay writes the recorded one back
    # (hashes and rows: the hash guard is decided on a read, not in the UPDATE), so
    # every round's tick finds every VM changed and every device moved.
    state.flip(vms)
    documents = state.documents(host)
    xmls = [xml for _vm, xml, _hash in documents]
    rounds: dict[str, list] = {"floor": [], "full": [], "applied": [], "vm_work": [],
                               "statements": [], "server": []}
    for _ in range(args.repeat):
        with collector.paused():  # warm: the floor is the parse, not the cache's state
            rounds["floor"].append(min(floor.lxml_parse_s(xmls) for _ in range(3)))
        summary = run_tick(state.source(host), context)
        rounds["full"].append(summary.duration_s)
        rounds["applied"].append(summary.applied)
        rounds["vm_work"].append(vms_work(store, context, documents))
        rounds["statements"].append(replayed(store, sent, 1))
        if args.db == "postgresql":
            rounds["server"].append(replayed(store, sent, 1, json_as_text=True))
            vacuum(store)
    return {"vms": len(vms), "rounds": rounds}


def vacuum(store) -> None:
    """VACUUM the tables a tick writes (outside a transaction, as VACUUM must run)."""
    with bare_driver(store) as driver:
        driver.commit()
        driver.autocommit = True
        driver.execute("VACUUM vm_devices, vms, vm_device_locks, vm_last_xml")
        driver.autocommit = False


def vms_work(store, context, documents, repeat: int = 1) -> float:
    """Every VM's document read, correlated and its row changes decided, in turn; the
    median of ``repeat`` timings, the rows read once before."""
    with store.transaction() as tx:
        rows = tx.rows(vm for vm, _xml, _hash in documents)

    def work() -> None:
        for vm_id, xml, vm_hash in documents:
            document = read_document(Fetched(vm_id, vm_hash, xml), context.limits)
            converted = convert(vm_id, document.parsed, rows[vm_id])
            context.database.decide(Correlated(converted, rows[vm_id], vm_hash, None))

    return statistics.median(timed(work) for _ in range(repeat))


def timed(work, *args) -> float:
    """Seconds ``work(*args)`` took (the arguments made before: a host's source is the
    host's work, untimed, as in ``monitor bench``)."""
    with collector.paused():
        started = time.perf_counter()
        work(*args)
        return time.perf_counter() - started


def recorded(store, work) -> list[tuple[str, object, bool]]:
    """(SQL, parameters, executemany) of every statement ``work`` sends, and commits."""
    sent: list[tuple[str, object, bool]] = []

    def statement(_connection, _cursor, sql, parameters, _context, many) -> None:
        # SQLAlchemy's "insertmanyvalues" (the locks of many VMs) announces one
        # statement of many VALUES as an executemany of one parameter set.
        sent.append((sql, parameters, many and not isinstance(parameters, dict)))

    def commit(_connection) -> None:
        sent.append((COMMIT, None, False))

    engine = store._engine
    sa.event.listen(engine, "before_cursor_execute", statement)
    sa.event.listen(engine, "commit", commit)
    try:
        work()
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)
        sa.event.remove(engine, "commit", commit)
    return sent


def replayed(store, sent, repeat: int, json_as_text: bool = False) -> list[tuple[str, float]]:
    """Each statement's median time on the bare driver connection, in the order sent.

    ``json_as_text`` (PostgreSQL): every JSON parameter encoded before the clock starts
    and the JSON columns read as their text, not decoded: the server's and the wire's
    share, without the client's JSON work."""
    seconds: list[list[float]] = [[] for _ in sent]
    if json_as_text:
        sent = [(sql, _json_encoded(parameters), many) for sql, parameters, many in sent]
    options = _options(sent)
    with bare_driver(store) as driver:
        for _ in range(repeat):
            cursor = driver.cursor()
            if json_as_text:
                for name in ("json", "jsonb"):
                    cursor.adapters.register_loader(name, TextLoader)
            for index, (sql, parameters, many) in enumerate(sent):
                started = time.perf_counter()
                if sql == COMMIT:
                    driver.commit()
                elif many:
                    cursor.executemany(sql, parameters)
                else:
                    cursor.execute(sql, parameters, **options[index])
                    if cursor.description:
                        cursor.fetchall()
                seconds[index].append(time.perf_counter() - started)
            driver.commit()
    return [(sql.split(None, 3)[:3], statistics.median(each))
            for (sql, _p, _m), each in zip(sent, seconds)]


def _options(sent) -> list:
    """The driver options each statement is sent with, as the engine sends it (looked up
    before the clock starts)."""
    return [prepared.execute_options(sql) for sql, _parameters, _many in sent]


def _json_encoded(parameters):
    """``parameters`` with each JSON value replaced by its text, sent as the same type."""
    if isinstance(parameters, dict):
        return {name: _encoded(value) for name, value in parameters.items()}
    if isinstance(parameters, (list, tuple)):
        return type(parameters)(_json_encoded(each) for each in parameters)
    return parameters


def _encoded(value):
    if isinstance(value, (Json, Jsonb)):
        text = (value.dumps or jsontext.dumps)(value.obj)
        return type(value)(text, dumps=_as_is)
    return value


def _as_is(text: str) -> str:
    return text


def pipelined(store, sent, repeat: int) -> float:
    """The same statements in psycopg's pipeline mode, the median of the whole sequence:
    a statement whose answer the tick reads before it can go on (a ``SELECT``, the
    fence's claim) is waited for at once; the other writes are sent with the next one
    waited for, or with their transaction's ``COMMIT`` (each ``BEGIN`` goes with its
    transaction's first statement). What the tick would wait for if it were written
    that way: not the engine's code, a probe of the lever (docs/performance.md, "The
    ninth wave")."""
    options = _options(sent)
    with bare_driver(store) as driver:
        seconds = []
        for _ in range(repeat):
            cursor = driver.cursor()
            started = time.perf_counter()
            with driver.pipeline():
                for (sql, parameters, many), each in zip(sent, options):
                    if sql == COMMIT:
                        driver.commit()
                        continue
                    if many:
                        cursor.executemany(sql, parameters)
                        continue
                    cursor.execute(sql, parameters, **each)
                    if sql.startswith(("SELECT", "DELETE")):
                        cursor.fetchall()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def vm_work(store, context, state: _FleetState, host: int, changed: int, repeat: int) -> float:
    """The changed VM's document read, correlated and its row changes decided."""
    documents = [item for item in state.documents(host) if item[0] == fleet_vm_id(changed)]
    return vms_work(store, context, documents, repeat)


def report(args, found: dict) -> None:
    full, partial = found["full"], found["partial"]
    delay = "" if args.delay_ms is None else f", {args.delay_ms:g} ms each way"
    print(f"{args.vms} VMs on {args.hosts} hosts, {args.db}{delay}")
    if "round_trip" in found:
        print(f"  a round trip (SELECT 1)   {found['round_trip'] * 1000:8.3f} ms")
    print(f"  full tick of a host       {full * 1000:8.2f} ms")
    print(f"  partial tick of a host    {partial * 1000:8.3f} ms  {partial / full:.4f} of full")
    bare = sum(seconds for _sql, seconds in found["statements"])
    print(f"  its statements, bare      {bare * 1000:8.3f} ms  {bare / full:.4f} of full")
    for words, seconds in found["statements"]:
        print(f"      {seconds * 1e6:8.1f} µs  {' '.join(words)}")
    if found.get("pipelined") is not None:
        piped = found["pipelined"]
        print(f"  the same, pipelined       {piped * 1000:8.3f} ms  {piped / full:.4f} of full")
    work = found["vm_work"]
    print(f"  the VM's own work         {work * 1000:8.3f} ms  {work / full:.4f} of full")
    print(f"  floor: statements + VM    {(bare + work) * 1000:8.3f} ms  "
          f"{(bare + work) / full:.4f} of full")


def _runs(replay: list[tuple[list[str], float]]) -> list[tuple[int, int]]:
    """(first index, count) of each run of one statement sent again and again (SQLite
    takes many VMs' locks one statement each)."""
    runs: list[tuple[int, int]] = []
    for index, (words, _seconds) in enumerate(replay):
        if runs and replay[runs[-1][0]][0] == words and words[0] != COMMIT:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs


def report_full(args, found: dict) -> None:
    rounds = found["rounds"]
    floors = rounds["floor"]

    def total(replay: list[tuple[str, float]]) -> float:
        return sum(seconds for _words, seconds in replay)

    parse = statistics.median(floors)

    def line(label: str, each: list[float]) -> str:
        seconds = statistics.median(each)
        return f"  {label:<30}{seconds * 1000:9.2f} ms  {seconds / parse:6.2f} x floor"

    def median_of(replays: list, index: int) -> float:
        return statistics.median(replay[index][1] for replay in replays)

    print(f"{args.vms} VMs on {args.hosts} hosts, {args.db}: a full tick of one host "
          f"({found['vms']} VMs), medians of {len(floors)} rounds")
    print(line("lxml parse (the floor)", floors))
    print(line("full tick of a host", rounds["full"]))
    applied = sorted(set(rounds["applied"]))
    print(f"    (VMs applied by each round's tick: {', '.join(map(str, applied))})")
    statements = [total(replay) for replay in rounds["statements"]]
    print(line("its statements, bare", statements))
    server = rounds["server"]
    for first, count in _runs(rounds["statements"][0]):
        indexes = range(first, first + count)
        bare = sum(median_of(rounds["statements"], index) for index in indexes)
        also = (f"{sum(median_of(server, index) for index in indexes) * 1e6:10.1f} µs"
                if server else "")
        times = f" (x {count})" if count > 1 else ""
        print(f"      {bare * 1e6:10.1f} µs{also}  "
              f"{' '.join(rounds['statements'][0][first][0])}{times}")
    if server:
        print(line("  the server and the wire", [total(replay) for replay in server]))
        print("    (the second column: JSON parameters encoded beforehand, JSON columns "
              "not decoded)")
    print(line("the VMs' own work", rounds["vm_work"]))
    print(line("floor: statements + VMs",
               [bare + work for bare, work in zip(statements, rounds["vm_work"])]))


if __name__ == "__main__":
    main()
