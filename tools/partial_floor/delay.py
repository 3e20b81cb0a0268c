"""A TCP forwarder that holds every chunk for a fixed time: a database server farther
away than this machine's, for ``tools/partial_floor/run --delay-ms`` (a probe, not a
part of monitor). It runs as a process of its own, so that it never holds the measured
process's interpreter. Each direction of each connection has a thread that reads and
one that sends: a chunk is sent ``delay`` after it arrived (``time.sleep``: a little
more, by the kernel's timer slack), in order, however many arrived meanwhile, so a
request and its answer each take that much longer and requests sent one after the
other without waiting (a pipeline) overlap, as over a network with a round-trip time
of twice the delay.

Usage: python delay.py DELAY_MS TARGET_HOST TARGET_PORT; prints the port it listens
on (127.0.0.1), then forwards until killed.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time


def pump(source: socket.socket, target: socket.socket, delay_s: float) -> None:
    """Read ``source`` into a queue of (when due, chunk); ``send`` forwards them."""
    due: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=send, args=(due, source, target), daemon=True).start()
    try:
        while chunk := source.recv(1 << 16):
            due.put((time.monotonic() + delay_s, chunk))
    except OSError:
        pass
    due.put((0.0, b""))  # the end: closes both


def send(due: queue.SimpleQueue, source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            when, chunk = due.get()
            if not chunk:
                break
            wait = when - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main() -> None:
    delay_s = float(sys.argv[1]) / 1000
    target = (sys.argv[2], int(sys.argv[3]))
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        server = socket.create_connection(target)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for ends in ((client, server), (server, client)):
            threading.Thread(target=pump, args=(*ends, delay_s), daemon=True).start()


if __name__ == "__main__":
    main()
