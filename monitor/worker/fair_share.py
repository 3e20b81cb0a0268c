"""How many host leases each live worker should hold: pure, so every worker computes
the same answer from the same renewal (docs/operations.md, "Many workers").

The hosts are split as evenly as the workers' caps (``[worker] max_hosts``) allow:
a worker whose cap is below the even split holds its cap, the others share the rest.
When the split is not exact, the workers that hold the most now (then by name) get one
more, so a balanced fleet stays put instead of passing a lease back and forth. The
shares differ by at most one, except where a cap holds a worker below.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.model.lease import WorkerLoad


def fair_shares(hosts: int, workers: Sequence[WorkerLoad]) -> dict[str, int]:
    """Each live worker's share of ``hosts`` leases, by owner."""
    shares: dict[str, int] = {}
    rest = sorted(workers, key=lambda worker: (-worker.held, worker.owner))
    remaining = hosts
    while rest:
        even = remaining // len(rest)
        capped = [w for w in rest if w.max_hosts is not None and w.max_hosts <= even]
        if not capped:
            break
        for worker in capped:
            shares[worker.owner] = worker.max_hosts
            remaining -= worker.max_hosts
        rest = [w for w in rest if w not in capped]
    if rest:
        even, extra = divmod(remaining, len(rest))
        for rank, worker in enumerate(rest):
            shares[worker.owner] = even + (rank < extra)
    return shares
