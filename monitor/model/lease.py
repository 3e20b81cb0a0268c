"""Host leases as the worker sees them (docs/operations.md, "Many workers").

A worker ticks a host only while it holds that host's lease: the lease row names it
as owner, at an epoch, unexpired by the database's clock. Every takeover increments
the epoch, so (host, epoch) names one stretch of one owner's ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(slots=True)
class HostLease:
    """The lease a host's ticks run under: what the fence checks in each transaction.

    ``lost`` is set by the worker's lease keeper when it learns the lease is gone (a
    renewal that no longer returns it, or no renewal for a whole TTL); a tick then
    stops before its next transaction without asking the database.
    """

    host: str
    owner: str
    epoch: int
    lost: bool = False


class WorkerLoad(NamedTuple):
    """One live worker (its heartbeat unexpired): how many hosts it holds, its cap."""

    owner: str
    held: int
    max_hosts: int | None = None


class LeaseView(NamedTuple):
    """What one renewal saw: the leases this worker holds, and every live worker's load.

    ``next_change_s``: seconds until another worker's heartbeat or lease expires, the
    next moment a claim may become possible (``None``: nothing of anyone else's runs).
    """

    mine: dict[str, int]  # host -> epoch
    workers: tuple[WorkerLoad, ...]
    claimable: int  # configured hosts whose lease is free or expired now
    next_change_s: float | None


class Claimed(NamedTuple):
    """A lease this worker just claimed; ``previous_owner`` is set on a takeover."""

    host: str
    epoch: int
    previous_owner: str | None
    released_locks: int  # devices locks of the previous owner's ticks, released
