"""``monitor bench``: how fast the engine does its job, beside lxml and xmltodict."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from monitor.cli.options import add_json_option, print_json
from monitor.errors import UsageError

DESCRIPTION = """\
Build a synthetic fleet (Q35 VMs from the run-VM builder, made live as libvirt returns
them, ~9 KB of XML each), load it into a database and time, through the worker's own
tick (only the host source is in memory), one host per tick: parsing alone (lxml, the
floor; xmltodict, what a user might write), parse + correlate, a full tick (every VM
restarted, every device moved), a steady tick (nothing changed), a partial tick
(--changed percent of the VMs changed; five a round, each after a steady tick, their
median), and the full tick at a tenth of the fleet. Each figure is the median of
--runs rounds, measured side by side.
"""

EPILOG = """\
examples:
  monitor bench                          10,000 VMs on 100 hosts, temporary SQLite file
  monitor bench --vms 200 --hosts 4      a quick look
  monitor bench --db postgresql://postgres@127.0.0.1:5432/scratch --json
  monitor bench --source libvirt-test    the libvirt source's poll (steady, resync)

Without --db the benchmark uses a temporary SQLite file, removed afterwards; never
your database. A --db must be an empty database (the benchmark fills it and leaves it
so). docs/performance.md explains every figure and records reference runs.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure the engine on a synthetic fleet",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vms", type=int, default=10_000, metavar="N",
                        help="VMs in the fleet (default 10000)")
    parser.add_argument("--hosts", type=int, default=100, metavar="H",
                        help="hosts the VMs are spread over (default 100)")
    parser.add_argument("--changed", type=float, default=1.0, metavar="PCT",
                        help="percent of the VMs changed in the partial tick (default 1)")
    parser.add_argument("--runs", type=int, default=3, metavar="R",
                        help="rounds; each figure is their median (default 3)")
    parser.add_argument("--db", metavar="URL",
                        help="an EMPTY database to use (default: a temporary SQLite file)")
    parser.add_argument("--source", choices=("memory", "libvirt-test"), default="memory",
                        help="memory (default): the engine's tick on hosts held in memory; "
                        "libvirt-test: the libvirt source's poll, steady and resync, on "
                        "--vms domains of libvirt's test driver (no database)")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.source == "libvirt-test":
        result, render = measure_libvirt_poll(args), render_poll_table
    else:
        result, render = measure_ticks(args), render_table
    if args.json:
        print_json(result)
    else:
        print(render(result))
    return 0


def measure_ticks(args: argparse.Namespace) -> dict[str, Any]:
    """The default: the engine's tick on hosts held in memory (bench/runner.py)."""
    import tempfile

    from monitor.bench.runner import BenchOptions, run_bench
    from monitor.settings import Settings
    from monitor.wiring import open_store, tick_context

    options = BenchOptions(vms=args.vms, hosts=args.hosts, changed_pct=args.changed,
                           runs=args.runs)
    options.check()
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as scratch:
        # Settings built here, not from the config file or MONITOR_DB_URL: without
        # --db the benchmark must never touch the user's database.
        settings = Settings(db_url=args.db or f"sqlite:///{scratch}/bench.db")
        # As ``monitor run`` ticks: SQLite's checkpoints on a thread of their own.
        with open_store(settings) as store, store.background_checkpoints():
            context = tick_context(store, settings)
            return with_progress(lambda progress: run_bench(context, options, progress))


def measure_libvirt_poll(args: argparse.Namespace) -> dict[str, Any]:
    """``--source libvirt-test``: the poll of the libvirt source (bench/libvirt_poll.py)."""
    from monitor.bench.runner import BenchOptions

    if args.db:
        raise UsageError("--db: the libvirt-test benchmark uses no database")
    BenchOptions(vms=args.vms, hosts=1, runs=args.runs).check()
    try:
        from monitor.bench.libvirt_poll import run_poll_bench
    except ImportError:
        raise UsageError("--source libvirt-test needs libvirt-python "
                         "(pip install 'monitor[libvirt]')") from None
    return with_progress(lambda progress: run_poll_bench(args.vms, args.runs, progress))


def with_progress(work: Callable[[Callable[[str, int, int], None]], dict[str, Any]]):
    """``work(progress)``, with a progress bar on a terminal's stderr."""
    if not sys.stderr.isatty():
        return work(lambda phase, done, total: None)
    bar = ProgressBar(sys.stderr)
    try:
        return work(bar.update)
    finally:
        bar.clear()


class ProgressBar:
    """One line on a terminal's stderr, redrawn in place: the phase and a bar."""

    WIDTH = 30

    def __init__(self, stream) -> None:
        self._stream = stream
        self._last = ""

    def update(self, phase: str, done: int, total: int) -> None:
        filled = self.WIDTH * done // max(total, 1)
        line = f"{phase:<28} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}"
        if line != self._last:
            self._stream.write("\r" + line)
            self._stream.flush()
            self._last = line

    def clear(self) -> None:
        self._stream.write("\r" + " " * len(self._last) + "\r")
        self._stream.flush()


class Target(NamedTuple):
    key: str
    limit: float

    def holds(self, result: dict[str, Any]) -> bool:
        return result[self.key] <= self.limit


POLL_TARGET = 0.2  # steady poll per VM / lxml parse floor per VM, --source libvirt-test


def targets(result: dict[str, Any]) -> dict[str, Target]:
    """The hot-path targets (docs/performance.md, "Targets"), by the figure they bound."""
    full_limit = 9.0 if result["db"] == "postgresql" else 6.0
    return {
        "convert_ratio": Target("convert_ratio", 2.5),
        "full_tick_ratio": Target("full_tick_ratio", full_limit),
        "steady_share": Target("steady_share", 0.01),
        "partial_ratio": Target("partial_ratio", 0.02),
        "scaling_ratio": Target("scaling_ratio", 1.2),
        "peak_rss_mb": Target("peak_rss_mb", 150.0),
    }


def render_table(result: dict[str, Any]) -> str:
    result = dict(result, steady_share=result["steady_tick_s"] / result["full_tick_s"])
    goals = targets(result)

    def verdict(name: str) -> str:
        goal = goals[name]
        return f"<= {goal.limit:g}  {'ok' if goal.holds(result) else 'MISSED'}"

    mb = result["xml_bytes"] / 1e6
    lines = [
        f"monitor bench: {result['vms']} VMs on {result['hosts']} hosts, "
        f"{result['devices']} devices, {mb:.1f} MB of XML, {result['db']}, "
        f"{rounds_text(result['runs'])}",
        "",
        f"{'':<26}{'seconds':>9}  {'ratio':<22}target",
        _line("lxml parse (the floor)", result["floor_parse_s"], "1", ""),
        _line("parse + Python walk", result["python_walk_s"],
              f"{result['python_walk_ratio']:.2f} x floor", ""),
        _line("xmltodict parse", result["xmltodict_parse_s"],
              f"{result['xmltodict_parse_s'] / result['floor_parse_s']:.2f} x floor", ""),
        _line("parse + correlate", result["convert_s"],
              f"{result['convert_ratio']:.2f} x floor", verdict("convert_ratio")),
        _line("full tick", result["full_tick_s"],
              f"{result['full_tick_ratio']:.2f} x floor", verdict("full_tick_ratio")),
        _line("steady tick", result["steady_tick_s"],
              f"{result['steady_share']:.4f} x full", verdict("steady_share")),
        _line(f"partial tick ({result['changed_pct']:g} %)", result["partial_tick_s"],
              f"{result['partial_ratio']:.4f} x full", verdict("partial_ratio")),
        _line(f"scaling ({result['scaling_vms']} VMs)", None,
              f"{result['scaling_ratio']:.2f} per VM", verdict("scaling_ratio")),
        _line("peak RSS (MB)", None, f"{result['peak_rss_mb']:.0f}", verdict("peak_rss_mb")),
        "",
        f"rows written by a full tick: {result['rows_written_full']}; steady tick: "
        f"{result['steady_xml_fetched']} XML fetched, {result['steady_rows_written']} "
        f"rows written; partial tick: {result['partial_vms']} VMs changed",
    ]
    return "\n".join(lines)


def rounds_text(runs: int) -> str:
    return "one run" if runs == 1 else f"median of {runs} runs"


def _line(label: str, seconds: float | None, ratio: str, target: str) -> str:
    shown = f"{seconds:9.3f}" if seconds is not None else " " * 9
    return f"{label:<26}{shown}  {ratio:<22}{target}".rstrip()


def render_poll_table(result: dict[str, Any]) -> str:
    """The table of ``--source libvirt-test`` (docs/performance.md)."""
    ratio = result["steady_poll_per_vm_ratio"]
    verdict = "ok" if ratio <= POLL_TARGET else "MISSED"
    lines = [
        f"monitor bench --source libvirt-test: {result['vms']} domains on libvirt's test "
        f"driver, {result['xml_bytes'] / 1e6:.1f} MB of XML, {rounds_text(result['runs'])}",
        "",
        f"{'':<26}{'seconds':>9}  {'per VM, x floor':<22}target",
        f"{'lxml parse (the floor)':<26}{result['floor_parse_s']:9.3f}  1",
        f"{'steady poll':<26}{result['steady_poll_s']:9.3f}  {ratio:<22.4f}"
        f"<= {POLL_TARGET:g}  {verdict}",
        f"{'resync poll':<26}{result['resync_poll_s']:9.3f}  "
        f"{result['resync_poll_per_vm_ratio']:.4f}",
        "",
        f"XML read: {result['steady_xml_read']} by the steady polls, "
        f"{result['resync_xml_read']} by the resync polls (all rounds)",
    ]
    return "\n".join(lines)
