"""What a tick needs: the store, its name in the devices lock, its limits, its adapters,
its clock, and what it remembers from one tick to the next.

The wiring builds it (``monitor.wiring.tick_context``) with the adapters it configured:
the database one, which a tick applies through inside each apply transaction, and the
emitters, which it calls after the commit (docs/architecture.md, "Adapters"). A context
built by hand (a test, a tool) gets the database adapter and no emitter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitor.adapters.base import MonitoringAdapter, TransactionalAdapter
from monitor.adapters.database import DatabaseAdapter
from monitor.clock import Clock, SteadyUtc, SystemClock
from monitor.settings import Limits
from monitor.store import Store
from monitor.tick.backoff import VmBackoff
from monitor.tick.logged_once import LoggedOnce
from monitor.tick.summary import TickSummary


@dataclass
class TickContext:
    """What a tick needs, built once by the wiring and reused tick after tick."""

    store: Store
    holder: str  # this worker's name in the devices lock
    limits: Limits = field(default_factory=Limits)
    batch_size: int = 50
    lock_ttl_s: float = 120.0  # a tick renews its locks after a third of it (monotonic)
    database: TransactionalAdapter = field(default_factory=DatabaseAdapter)
    emitters: Sequence[MonitoringAdapter] = ()  # called after the commit
    clock: Clock = field(default_factory=SystemClock)  # tests pass one they step
    on_tick: Callable[[TickSummary], None] | None = None  # metrics
    logged_once: LoggedOnce = field(default_factory=LoggedOnce)
    # Per host: devices locks (by token) a tick failing on the DB could not release;
    # that host's next tick releases them (the VMs it then skips would stay locked).
    unreleased: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    # Per host: VMs stored on it that its last successful polls did not report, and for
    # how many polls in a row (bookkeeping.vanished; kept in memory, docs/worker.md).
    missing: dict[str, dict[str, int]] = field(default_factory=dict)
    # VMs that failed alone wait out their own delay (the worker sets it; replay and
    # bench try every VM every tick).
    vm_backoff: VmBackoff | None = None

    def __post_init__(self) -> None:
        # The database's clock on SQLite (docs/operations.md, "Clocks").
        self.process_utc = SteadyUtc(self.clock)
