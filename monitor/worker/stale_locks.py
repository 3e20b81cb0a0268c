"""At start, release the devices locks that workers of this machine left when they died.

A worker killed in the middle of a tick (SIGKILL, OOM, power cut) leaves the locks
of the VMs it was applying. They expire after the lock TTL, but until then the
restarted worker, whose holder name carries a new pid, would skip those VMs. A
holder is ``monitor@<hostname>:<pid>/<start id>`` (``monitor.wiring.worker_name``; older
ones have no start id): on the same machine, a holder whose process is gone, or whose
pid is ours under another start (a container restarted with the same pid), is dead.
Holders of other machines, and device commands, are left to their expiry: we cannot
see their processes. The lease keeper asks the same of worker heartbeats (``is_gone``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from monitor.logfields import fields
from monitor.store import Store

log = logging.getLogger("monitor.worker")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def is_gone(holder: str, ours: str, alive: Callable[[int], bool] = pid_alive) -> bool:
    """Whether ``holder`` is a worker of this machine that no longer runs."""
    if holder == ours:
        return False
    machine, _, our_pid = ours.partition("/")[0].rpartition(":")
    prefix, _, pid = holder.partition("/")[0].rpartition(":")
    if prefix != machine or not pid.isdigit():
        return False
    return pid == our_pid or not alive(int(pid))


def dead_holders(holders: set[str], ours: str,
                 alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """The holders of ``holders`` that are this machine's workers and no longer run."""
    return [holder for holder in sorted(holders) if is_gone(holder, ours, alive)]


def release_dead_workers_locks(store: Store, ours: str,
                               alive: Callable[[int], bool] = pid_alive) -> int:
    """Release the locks of this machine's dead workers; the number of locks released."""
    released = 0
    with store.transaction() as tx:
        for holder in dead_holders(tx.lock_holders(), ours, alive):
            count = tx.release_all_locks_of(holder)
            released += count
            log.warning("released %d devices locks left by a worker that is gone (%s)",
                        count, holder, extra=fields(kind="stale-lock"))
    return released
