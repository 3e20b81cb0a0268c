"""The engine's clocks (docs/operations.md, "Clocks").

* ``monotonic()``: intervals, backoffs, TTL timers, health. It never steps.
* ``utc()``: the process's UTC wall clock. It is the database's clock on SQLite (which
  has none of its own) for report times and lock expiry; on PostgreSQL the database's
  ``now()`` is used instead (``Tx.now``).

The wall clock steps (an NTP correction back, a clock set a year ahead). ``SteadyUtc``
is the wall clock as SQLite's database clock reads it: it follows the system clock,
except that it never runs ahead of the time the monotonic clock says has passed. So a
step ahead is not followed (a lock that has not expired is never taken because the
clock jumped; until the process restarts, times stay in the old frame), and a step back
is (locks then last longer, which is safe; report times stored before the step look
later than now and are not trusted, see ``monitor.tick.bookkeeping``).

Nothing here is read at import time; the wiring builds one ``SystemClock`` and tests
pass a clock of their own that they step.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never steps (only differences mean something)."""
        ...

    def utc(self) -> datetime:
        """The process's UTC wall clock, timezone-aware; it may step."""
        ...


class SystemClock:
    """The clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        return datetime.now(UTC)


class SteadyUtc:
    """``clock.utc()`` that never runs ahead of ``clock.monotonic()`` (see the module doc).

    Called as a function: ``SteadyUtc(clock)()``. Safe from several threads.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._guard = threading.Lock()
        self._last: tuple[datetime, float] | None = None  # (returned, monotonic then)

    def __call__(self) -> datetime:
        with self._guard:
            wall, mono = self._clock.utc(), self._clock.monotonic()
            if self._last is not None:
                returned, then = self._last
                wall = min(wall, returned + timedelta(seconds=max(0.0, mono - then)))
            self._last = (wall, mono)
            return wall


def older_than_stored(report_time: datetime, stored_time: datetime | None,
                      now: datetime | None = None) -> bool:
    """Whether a report is older than the one whose hash is stored: it is ignored.

    ``now`` is the database's clock when the stored time was read. A stored report time
    later than that cannot come from a report (a report time is the database's clock
    when the poll returned): the clock stepped back since, and the stored time is not
    trusted, so reconciliation goes on (docs/operations.md, "Clocks").
    """
    if stored_time is None or report_time >= stored_time:
        return False
    return now is None or stored_time <= now
