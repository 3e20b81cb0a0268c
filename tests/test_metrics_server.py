"""The metrics endpoint under hostile clients, with real sockets on 127.0.0.1: a client
that resets its connection costs no traceback; silent connections are dropped after
the per-connection timeout and never become a thread each; beyond the bounded queue a
connection is closed at once; and a scrape still gets its answer (docs/operations.md)."""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.request

import pytest

from monitor.worker.metrics import LISTEN_BACKLOG, MetricsServer, TickMetrics

DEADLINE_S = 30.0
THREADS, QUEUED, TIMEOUT_S = 2, 4, 1.0


@pytest.fixture
def server():
    served = MetricsServer("127.0.0.1", 0, TickMetrics(["h"]), stale_after_s=60,
                           threads=THREADS, queued=QUEUED, timeout_s=TIMEOUT_S)
    yield served
    served.close()


def until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S:g}s"
        time.sleep(0.01)


def scrape(server, path: str = "/healthz") -> int:
    with urllib.request.urlopen(server.url + path, timeout=DEADLINE_S) as response:
        return response.status


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)


def reset(connection: socket.socket) -> None:
    """Close with a TCP reset, as a client that dies or a proxy that gives up does."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def test_a_client_that_resets_costs_no_traceback(server, capfd):
    for _ in range(5):
        client = connect(server)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half a request
        reset(client)
    until(lambda: server.failed >= 1, "the reset connections were handled")
    assert scrape(server, "/metrics") == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err


def test_silent_connections_are_dropped_and_never_a_thread_each(server):
    before = threading.active_count()
    silent = [connect(server) for _ in range(THREADS + QUEUED + 40)]
    try:
        until(lambda: server.refused >= 1, "the connections past the queue were closed")
        assert threading.active_count() <= before + THREADS
        for connection in silent:  # every one ends: closed at once, or after its timeout
            assert connection.recv(1) == b""
        assert threading.active_count() <= before + THREADS
    finally:
        for connection in silent:
            connection.close()
    assert scrape(server) == 200  # the flood is over: scrapes are answered


def test_a_scrape_is_answered_while_silent_clients_hold_every_handler(server):
    silent = [connect(server) for _ in range(THREADS)]
    try:
        assert scrape(server) == 200  # after the silent ones time out
    finally:
        for connection in silent:
            connection.close()


def test_the_listen_backlog_is_larger_than_the_standard_library_default():
    assert LISTEN_BACKLOG >= 128  # http.server's default is 5
