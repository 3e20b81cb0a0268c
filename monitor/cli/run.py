"""``monitor run``: the worker."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from monitor.cli.options import add_db_option

DEMO_RECORDING = Path(__file__).resolve().parent.parent / "demo" / "recording"

EPILOG = """\
Without a config file, the worker plays a bundled recording in a loop against the
default SQLite database (its inventory is loaded on the first run): no libvirt needed,
and you see ticks reconcile within seconds. Each tick prints one summary line:

  host=HOST [HOST-ERROR=KIND] polled=N read=N fetched=N applied=N changed=N rows=N
  matched[rule=N,...] new=N unplugged=N deleted=N foreign=N conflicts=N
  skipped[reason=N,...] errors[kind=N,...] time=Nms

Configure real hosts in a TOML file (see docs/configuration.md):

  db = "postgresql://monitor@db.example/monitor"
  [worker]
  interval = 5
  [[hosts]]
  name = "host1"
  uri = "qemu+ssh://root@host1/system"

With --metrics 127.0.0.1:9108 (or metrics_address under [worker]), Prometheus metrics
are served on /metrics and a health check on /healthz (docs/operations.md).

Many workers may run with one configuration on one PostgreSQL database: each ticks the
hosts whose lease it holds, a fair share, and takes over those of a worker that stops
renewing (docs/operations.md, "Many workers"). On SQLite one worker runs; a second one
refuses to start.

Stop with Ctrl-C or SIGTERM: ticks in progress finish first, then the leases are freed.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the worker (with no configuration: the bundled demo recording)",
        description="Poll every configured host on its interval, fetch the Domain XML "
        "of the VMs whose devices hash changed, and apply it to the database.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_db_option(parser)
    parser.add_argument("--interval", type=float, metavar="S",
                        help="seconds between a host's ticks (default: config, else 5; "
                        "the demo: 1)")
    parser.add_argument("--ticks", type=int, metavar="N",
                        help="stop once every host this worker holds has run N ticks "
                        "(default: run until stopped)")
    parser.add_argument("--emit-dicts", metavar="FILE|-",
                        help="also write each applied VM's legacy dicts as JSON lines")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve /metrics (Prometheus) and /healthz there, e.g. "
                        "127.0.0.1:9108 (default: config metrics_address, else off)")
    parser.set_defaults(func=run, default_verbosity=1)


def run(args: argparse.Namespace) -> int:
    from monitor.faults import check_environment

    check_environment()  # a mistyped MONITOR_FAULT fails here, in one line

    from monitor.errors import StoppedStuck, UsageError
    from monitor.hosts.fixture import read_fixture
    from monitor.settings import HostSettings
    from monitor.tick.backoff import VmBackoff
    from monitor.wiring import emit_dicts, open_store, settings_from, tick_context, worker_name
    from monitor.worker.host_job import HostJob
    from monitor.worker.lease_keeper import LeaseKeeper
    from monitor.worker.scheduler import Worker
    from monitor.worker.sources import build_source
    from monitor.worker.stale_locks import is_gone

    settings = settings_from(args)
    hosts = settings.hosts
    interval = args.interval or settings.worker.interval
    if settings.config_path and not hosts:
        raise UsageError(f"config {settings.config_path}: no [[hosts]] to poll (the demo "
                         "runs only without a config file; docs/configuration.md)")
    demo = not hosts
    if demo:
        fixture = read_fixture(DEMO_RECORDING)
        hosts = tuple(HostSettings(name=h, fixture=str(DEMO_RECORDING))
                      for h in fixture.hosts)
        interval = args.interval or 1.0
    output = sys.stderr if args.emit_dicts == "-" else sys.stdout
    sources = [build_source(host, settings.limits, settings.worker) for host in hosts]
    metrics = _metrics(args.metrics or settings.worker.metrics_address,
                       [s.name for s in sources], settings.worker)
    with open_store(settings) as store, store.background_checkpoints(), \
            emit_dicts(args.emit_dicts) as emitters, metrics as served:
        name = worker_name()
        keeper = LeaseKeeper(store, name, [s.name for s in sources],
                             ttl_s=settings.worker.lease_ttl_for(interval), interval_s=interval,
                             max_hosts=settings.worker.max_hosts,
                             events=served[0] if served else None)
        keeper.join(lambda owner: is_gone(owner, name))  # SQLite: the only worker, or stop
        if demo:
            _load_demo_inventory(store, fixture, output)
        context = tick_context(store, settings, emitters, holder=name)
        context.vm_backoff = VmBackoff(base_s=interval, max_s=settings.worker.backoff_max)
        if served:
            context.on_tick = served[0].observe
            print(f"monitor: metrics on {served[1].url}/metrics, health on "
                  f"{served[1].url}/healthz", file=output, flush=True)

        show = summary_printer(output)
        jobs = [HostJob(source, context, interval_s=interval,
                        backoff_max_s=settings.worker.backoff_max, on_summary=show)
                for source in sources]
        print(f"monitor: {'demo recording' if demo else 'worker'} on {store.url}, "
              f"{len(jobs)} hosts, every {interval:g}s (Ctrl-C stops)", file=output, flush=True)
        try:
            Worker(jobs, keeper, interval_s=interval, max_ticks=args.ticks,
                   stall_warn_s=settings.worker.stall_warn).run()
        except StoppedStuck as error:
            # A tick thread is blocked on a socket that never answers: leaving the
            # interpreter would wait for it forever, so the process ends here.
            print(f"monitor: error: {error}", file=sys.stderr, flush=True)
            output.flush()
            os._exit(error.exit_code)
        finally:
            for source in sources:
                source.close()
    return 0


def _metrics(address: str | None, hosts: list[str], worker):
    """The metrics server's context, or nothing; prometheus-client is needed only when on."""
    if not address:
        return contextlib.nullcontext(None)
    try:
        from monitor.worker.metrics import serving
    except ModuleNotFoundError as missing:
        if missing.name != "prometheus_client":
            raise
        from monitor.errors import StoppedStuck, UsageError

        raise UsageError(f"metrics on {address}: prometheus-client is not installed "
                         "(pip install 'monitor[metrics]')") from None
    return serving(address, hosts, stale_after_s=worker.health_stale,
                   allow_remote=worker.metrics_allow_remote)


def summary_printer(output: TextIO) -> Callable:
    """Print each tick's summary line. Every host's job ticks in a thread of its own, and
    ``print`` writes a line and its newline as two writes: two hosts finishing together
    ran their lines into one. One write per line, under one lock."""
    lock = threading.Lock()

    def show(summary) -> None:
        line = summary.line() + "\n"
        with lock:
            output.write(line)
            output.flush()
    return show


def _load_demo_inventory(store, fixture, output) -> None:
    """The demo's VMs are loaded on the first run only; later runs go on from the DB."""
    from monitor.store.inventory import load_document, read_document

    document = read_document(fixture.inventory_path)
    wanted = [vm["id"] for vm in document["vms"]]
    with store.transaction() as tx:
        known = tx.vms(wanted)
    if len(known) < len(wanted):
        summary = load_document(store, document)
        print(f"demo: loaded {summary.vms} VMs and {summary.rows} device rows", file=output)
