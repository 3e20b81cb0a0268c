"""The fault hook: let a test kill the worker at a named point of a tick, with no sleeps.

``MONITOR_FAULT=<point>[:n]`` makes the process kill itself with SIGKILL the n-th time
(default: the first) execution reaches ``<point>``. SIGKILL, because that is what a
crash, an OOM kill or a power cut does: no ``finally``, no rollback sent, no lock
released. The crash-safety tests start a worker with it, restart it without, and check
that every VM is either fully applied or untouched.

``MONITOR_FAULT=<point>[:n]:pause`` stops the process with SIGSTOP there instead (all
its threads, lease renewals included), as a long GC pause, a frozen VM or a debugger
would: the lease tests let the test decide what comes next (SIGCONT, or SIGKILL).

The points (``POINTS``), in the order a tick reaches them:

* ``after-plan``: the poll was answered and planned, changed statuses stored; nothing
  locked, dumped or applied yet.
* ``after-dump``: the devices locks are held and the dump returned; no XML applied.
* ``in-batch``: a batch's rows and hashes are written but not committed.
* ``after-commit``: an apply transaction (a batch, or one VM retried alone) committed.
* ``between-batches``: a batch is done and the next one is about to start.
* ``before-unlock``: every batch is done; the locks of the VMs not applied are still held.

The variable is read once, on the first call (nothing happens at import time);
``check_environment`` reads it at the worker's start, so a typo is a one-line
UsageError there and not a silent no-op. In-process tests use ``injected`` to run an
action of their own at a point instead (cut a DB connection, take a lock).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from monitor.errors import UsageError

ENV_FAULT = "MONITOR_FAULT"
POINTS = ("after-plan", "after-dump", "in-batch", "after-commit", "between-batches",
          "before-unlock")
_KNOWN = frozenset(POINTS)


def pause_this_process(point: str) -> None:
    """A frozen process: SIGSTOP, after one line saying where; SIGCONT resumes it here."""
    print(f"monitor: fault {point}: pausing this process (SIGSTOP)", file=sys.stderr,
          flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)


def kill_this_process(point: str) -> None:
    """What a crash does: SIGKILL, after one line saying where (the test reads it)."""
    print(f"monitor: fault {point}: killing this process (SIGKILL)", file=sys.stderr,
          flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(slots=True)
class Fault:
    """Run ``action`` the ``nth`` time execution reaches ``point``."""

    point: str
    nth: int = 1
    action: Callable[[str], None] = kill_this_process
    reached: int = 0


_UNREAD = object()
_armed: Fault | None | object = _UNREAD
_guard = threading.Lock()  # host jobs run in threads: count each arrival once


def fault_point(name: str) -> None:
    """Mark a point of the tick; a no-op unless a fault is armed for ``name``."""
    if name not in _KNOWN:
        raise ValueError(f"fault_point: unknown point {name!r}")
    fault = _armed if _armed is not _UNREAD else check_environment()
    if fault is None or fault.point != name:
        return
    with _guard:
        fault.reached += 1
        fire = fault.reached == fault.nth
    if fire:
        fault.action(name)


def check_environment() -> Fault | None:
    """Read ``MONITOR_FAULT`` now (once per process): the armed fault, or None."""
    global _armed
    with _guard:
        if _armed is _UNREAD:
            _armed = parse(os.environ.get(ENV_FAULT, ""))
        return _armed  # type: ignore[return-value]


def parse(value: str) -> Fault | None:
    """``<point>[:n][:pause]`` as a Fault; an empty value is none; anything else a
    UsageError."""
    value = value.strip()
    if not value:
        return None
    spec, pause = value, False
    if spec.endswith(":pause"):
        spec, pause = spec.removesuffix(":pause"), True
    point, _, count = spec.partition(":")
    if point not in _KNOWN:
        raise UsageError(f"{ENV_FAULT}={value}: unknown fault point {point!r} "
                         f"(known: {', '.join(POINTS)})")
    try:
        nth = int(count) if count else 1
    except ValueError:
        nth = 0
    if nth < 1:
        raise UsageError(f"{ENV_FAULT}={value}: the count after ':' must be a whole "
                         "number from 1")
    return Fault(point, nth, pause_this_process if pause else kill_this_process)


@contextmanager
def injected(point: str, action: Callable[[str], None], nth: int = 1) -> Iterator[Fault]:
    """In-process tests: run ``action`` the ``nth`` time ``point`` is reached.

    Replaces whatever the environment armed for the duration of the block.
    """
    global _armed
    if point not in _KNOWN:
        raise ValueError(f"injected: unknown point {point!r}")
    with _guard:
        previous, _armed = _armed, Fault(point, nth, action)
        fault = _armed
    try:
        yield fault  # type: ignore[misc]
    finally:
        with _guard:
            _armed = previous
