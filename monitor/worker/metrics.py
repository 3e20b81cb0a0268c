"""Prometheus metrics and a health check for the worker, fed by every tick's summary.

The only user of prometheus-client. Everything lives on a private
``CollectorRegistry`` built by ``TickMetrics`` (nothing is registered at import time,
so two workers in one test process do not collide). The worker hands
``TickMetrics.observe`` to the tick as ``TickContext.on_tick``; the tick calls it once
per tick, from the host's job thread, with the ``TickSummary`` it also prints.

``MetricsServer`` serves ``/metrics`` (the Prometheus text format) and ``/healthz``
with the standard library's HTTP server: one accepting thread, a bounded pool of
handler threads, a timeout on every connection (docs/operations.md, "What is bounded"). It binds loopback
addresses only, unless the configuration says ``metrics_allow_remote = true``: the
worker has no authentication, and its host names and counts are nobody else's business.
See docs/operations.md for each metric and the health rule.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from socket import AF_INET6
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitor.errors import UsageError
from monitor.settings import listen_address
from monitor.tick.summary import TickSummary

log = logging.getLogger("monitor.worker.metrics")

TICK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def tick_outcome(summary: TickSummary) -> str:
    """``ok``, ``host-<kind>`` (timeout, unreachable, refused, garbage), ``db`` or
    ``lease-lost``."""
    if summary.host_error:
        return f"host-{summary.host_error}"
    if summary.lease_lost:
        return "lease-lost"
    return "db" if summary.stopped else "ok"


class HostHealth(NamedTuple):
    host: str
    good_ticks: int
    seconds_since_good_tick: float  # since the worker started, before the first one


class Health(NamedTuple):
    stale_after_s: float
    hosts: tuple[HostHealth, ...]  # the hosts this worker holds
    renewing: bool = True  # the last lease renewal worked

    @property
    def ok(self) -> bool:
        return self.renewing and all(
            h.seconds_since_good_tick <= self.stale_after_s for h in self.hosts)

    def as_json(self) -> bytes:
        status = "ok" if self.ok else ("stale" if self.renewing else "cannot-renew")
        document = {
            "status": status,
            "renewing": self.renewing,
            "stale_after_s": self.stale_after_s,
            "hosts": {h.host: {"good_ticks": h.good_ticks,
                               "seconds_since_good_tick": round(h.seconds_since_good_tick, 3),
                               "stale": h.seconds_since_good_tick > self.stale_after_s}
                      for h in self.hosts},
        }
        return json.dumps(document, sort_keys=True).encode("utf-8")


class TickMetrics:
    """The worker's counters, and when each host last completed a tick.

    Also the lease keeper's events (``lease_keeper.LeaseEvents``): the health check
    looks only at the hosts this worker holds, each from the moment it got the lease,
    and fails while the leases cannot be renewed.
    """

    def __init__(self, hosts: Sequence[str], *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._monotonic = monotonic
        self._started = monotonic()
        self._lock = threading.Lock()
        self._last_good: dict[str, float] = {}
        self._good_ticks = dict.fromkeys(hosts, 0)
        # host -> since when it counts (monotonic): every host from the start, until the
        # lease keeper says which ones this worker holds, each from when it got it
        self._held: dict[str, float] = dict.fromkeys(hosts, self._started)
        self._renewing = True
        self._define()
        for host in hosts:  # exported as 0 before the first tick, so rates start right
            self.ticks.labels(host, "ok")
            for counter in self._per_host:
                counter.labels(host)

    def _define(self) -> None:
        registry = self.registry

        def counter(name: str, text: str, labels=("host",)) -> Counter:
            return Counter(name, text, labels, registry=registry)

        self.ticks = counter("monitor_ticks", "Ticks run, by outcome: ok, host-<kind>, db.",
                             ("host", "outcome"))
        self.polled = counter("monitor_vms_polled", "VM reports the host's poll returned.")
        self.fetched = counter("monitor_vms_fetched", "Domain XML documents the dump returned.")
        self.applied = counter("monitor_vms_applied", "VMs whose XML was applied (hash advanced).")
        self.rows = counter("monitor_rows_written", "Device rows updated, inserted or deleted.")
        self.matched = counter("monitor_devices_matched", "Reported devices matched, by rule.",
                               ("host", "rule"))
        self.new = counter("monitor_devices_new", "New unmanaged rows inserted.")
        self.unplugged = counter("monitor_devices_unplugged", "Managed rows unplugged.")
        self.deleted = counter("monitor_devices_deleted", "Unmanaged rows deleted.")
        self.foreign = counter("monitor_devices_foreign", "Reported devices that are no row.")
        self.conflicts = counter("monitor_conflicts", "Ambiguous matches left alone.")
        self.vanished = counter("monitor_vms_vanished",
                                "VMs stored Down: their host's polls stopped reporting them.")
        self.skipped = counter("monitor_vms_skipped", "Reported VMs not fetched, by reason.",
                               ("host", "reason"))
        self.errors = counter("monitor_errors", "Errors, by kind (see docs/operations.md).",
                              ("host", "kind"))
        self.xml_reads = counter("monitor_xml_reads",
                                 "Domain XML documents the host source read to answer its "
                                 "poll, by reason: event, new, resync.", ("host", "reason"))
        self.events = counter("monitor_domain_events",
                              "libvirt domain events received, by type.", ("host", "type"))
        self.resyncs = counter("monitor_resyncs", "Full resyncs (every VM's XML read).")
        self.reconnects = counter("monitor_reconnects",
                                  "Connections to the host opened after the first (one lost, or closed).")
        self.duration = Histogram("monitor_tick_duration_seconds", "Time one tick took.",
                                  ("host",), buckets=TICK_BUCKETS, registry=registry)
        self.last_good = Gauge("monitor_last_successful_tick_timestamp_seconds",
                               "Unix time the host last completed a tick (0: never).",
                               ("host",), registry=registry)
        self.leases_held = Gauge("monitor_leases_held", "Host leases this worker holds.",
                                 registry=registry)
        self.lease_claims = Counter("monitor_lease_claims", "Host leases claimed (takeovers "
                                    "included).", registry=registry)
        self.lease_takeovers = Counter("monitor_lease_takeovers", "Expired leases of another "
                                       "worker taken over.", registry=registry)
        self.lease_handbacks = Counter("monitor_lease_handbacks", "Leases handed back to even "
                                       "the shares.", registry=registry)
        self.lease_lost_count = Counter("monitor_lease_lost", "Leases lost: another worker "
                                        "holds them now, or no renewal for a TTL.",
                                        registry=registry)
        self.lease_renew_failures = Counter("monitor_lease_renew_failures", "Lease renewals "
                                            "that failed.", registry=registry)
        self._per_host = (self.polled, self.fetched, self.applied, self.rows, self.new,
                          self.unplugged, self.deleted, self.foreign, self.conflicts,
                          self.vanished, self.resyncs, self.reconnects, self.last_good)

    def observe(self, summary: TickSummary) -> None:
        """Count one tick: ``TickContext.on_tick``."""
        host = summary.host
        self.ticks.labels(host, tick_outcome(summary)).inc()
        self.duration.labels(host).observe(summary.duration_s)
        for counter, value in ((self.polled, summary.polled), (self.fetched, summary.fetched),
                               (self.applied, summary.applied),
                               (self.rows, summary.rows_written), (self.new, summary.new),
                               (self.unplugged, summary.unplugged),
                               (self.deleted, summary.deleted),
                               (self.foreign, summary.foreign),
                               (self.conflicts, summary.conflicts),
                               (self.vanished, summary.vanished),
                               (self.resyncs, summary.resyncs),
                               (self.reconnects, summary.reconnects)):
            counter.labels(host).inc(value)
        for labelled, counts in ((self.matched, summary.rules), (self.skipped, summary.skipped),
                                 (self.errors, summary.errors), (self.xml_reads, summary.read),
                                 (self.events, summary.events)):
            for label, count in counts.items():
                labelled.labels(host, label).inc(count)
        if summary.completed:
            self.last_good.labels(host).set(self._clock())
            with self._lock:
                self._last_good[host] = self._monotonic()
                self._good_ticks[host] = self._good_ticks.get(host, 0) + 1

    # --- the lease keeper's events (lease_keeper.LeaseEvents) ---------------------

    def leases_changed(self, held: Sequence[str]) -> None:
        now = self._monotonic()
        with self._lock:
            self._held = {host: self._held.get(host, now) for host in held}
        self.leases_held.set(len(held))

    def lease_claimed(self, takeover: bool) -> None:
        self.lease_claims.inc()
        if takeover:
            self.lease_takeovers.inc()

    def lease_handed_back(self) -> None:
        self.lease_handbacks.inc()

    def lease_lost(self) -> None:
        self.lease_lost_count.inc()

    def renewal(self, ok: bool) -> None:
        if not ok:
            self.lease_renew_failures.inc()
        with self._lock:
            self._renewing = ok

    def health(self, stale_after_s: float) -> Health:
        now = self._monotonic()
        with self._lock:
            hosts = tuple(
                HostHealth(host, self._good_ticks.get(host, 0),
                           now - max(self._last_good.get(host, since), since))
                for host, since in sorted(self._held.items())
            )
            return Health(stale_after_s, hosts, self._renewing)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# --- the HTTP endpoint -----------------------------------------------------------------


def parse_address(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9108`` for IPv6) -> (host, port); loopback unless allowed."""
    try:
        host, port = listen_address(text)
    except ValueError as error:
        raise UsageError(f"metrics address {error}") from None
    if not allow_remote and not is_loopback(host):
        raise UsageError(f"metrics address {text!r} is not a loopback address; set "
                         "[worker] metrics_allow_remote = true to serve it to other machines")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


HANDLER_THREADS = 8  # connections served at once
QUEUED_CONNECTIONS = 64  # accepted and waiting for a handler; past that, closed at once
CONNECTION_TIMEOUT_S = 2.0  # a client silent this long is dropped
LISTEN_BACKLOG = 128  # connections the kernel holds before we accept them


class _Server(HTTPServer):
    """The standard library's HTTP server with a bounded pool of handler threads.

    Each connection has ``timeout_s`` to send its request and take the answer; at most
    ``threads`` are served at once and ``queued`` more wait; a connection beyond that is
    closed as soon as it is accepted. A client that resets the connection or goes
    silent costs one debug line, never a traceback on the worker's stderr.
    """

    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True

    def __init__(self, address, handler, *, threads: int, queued: int) -> None:
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="metrics-http")
        self._slots = threading.BoundedSemaphore(threads + queued)
        self.refused = 0  # connections closed because every slot was taken
        self.failed = 0  # connections that ended in an error (reset, timeout)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError as error:  # reset, broken pipe, timed out: the client's doing
            self.failed += 1
            log.debug("metrics client %s: %s", client_address[0], error)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        self.failed += 1
        log.debug("metrics client %s: %s", client_address[0], sys.exc_info()[1])

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Server6(_Server):
    address_family = AF_INET6


def _handler(metrics: TickMetrics, stale_after_s: float,
             timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # on the connection's socket: every read and write

        def do_GET(self) -> None:  # noqa: N802 (the http.server spelling)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
            elif path == "/healthz":
                health = metrics.health(stale_after_s)
                self._send(200 if health.ok else 503, "application/json", health.as_json())
            else:
                self._send(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.debug("http: " + format, *args)

    return Handler


class MetricsServer:
    """``/metrics`` and ``/healthz`` on one address, served from a daemon thread."""

    def __init__(self, host: str, port: int, metrics: TickMetrics, stale_after_s: float, *,
                 threads: int = HANDLER_THREADS, queued: int = QUEUED_CONNECTIONS,
                 timeout_s: float = CONNECTION_TIMEOUT_S) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port),
                                        _handler(metrics, stale_after_s, timeout_s),
                                        threads=threads, queued=queued)
        except OSError as error:
            raise UsageError(f"metrics address {host}:{port}: {error.strerror or error}") from None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port: the one asked for, or the one the system chose for port 0."""
        return self._server.server_address[1]

    @property
    def refused(self) -> int:
        """Connections closed at once because every handler and queue slot was taken."""
        return self._server.refused

    @property
    def failed(self) -> int:
        """Connections that ended in an error of the client's (reset, silent, gone)."""
        return self._server.failed

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def serving(address: str | None, hosts: Sequence[str], *, stale_after_s: float,
            allow_remote: bool = False) -> Iterator[tuple[TickMetrics, MetricsServer] | None]:
    """Metrics and their server for the worker's lifetime; ``None`` when off."""
    if not address:
        yield None
        return
    host, port = parse_address(address, allow_remote=allow_remote)
    metrics = TickMetrics(hosts)
    server = MetricsServer(host, port, metrics, stale_after_s)
    try:
        yield metrics, server
    finally:
        server.close()
