"""What one tick of one host did: counted for the summary line, the logs and the metrics.

The keys of ``errors[...]`` are ``ErrorKind``s, those of ``skipped[...]`` are
``bookkeeping.Skip``s: ``StrEnum``s, so a key prints, serializes and labels a metric as
its documented string (docs/worker.md, "The summary line"; docs/operations.md, "Error
kinds").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from monitor.tick.bookkeeping import Skip


class ErrorKind(StrEnum):
    """What went wrong in a tick: ``errors[...]`` and ``monitor_errors_total{kind}``."""

    HOST_TIMEOUT = "host-timeout"
    HOST_UNREACHABLE = "host-unreachable"
    HOST_REFUSED = "host-refused"
    HOST_GARBAGE = "host-garbage"  # a poll or dump that is no answer
    HOST_ERROR = "host-error"  # a host failure of no narrower kind
    BAD_REPORT = "bad-report"
    UNASKED = "unasked"
    MISSING = "missing"
    XML = "xml"
    DB = "db"
    LEASE_LOST = "lease-lost"

    @classmethod
    def of_host(cls, kind: str) -> ErrorKind:
        """A ``HostError``'s kind (``timeout``, ...) as its error kind (``host-timeout``)."""
        return cls(f"host-{kind}")


@dataclass(slots=True)
class TickSummary:
    host: str
    polled: int = 0
    # What an event-driven source did to answer the poll (monitor.hosts.source.PollCounts):
    read: Counter = field(default_factory=Counter)  # XML documents read, by reason
    events: Counter = field(default_factory=Counter)  # domain events received, by type
    resyncs: int = 0
    reconnects: int = 0
    fetched: int = 0  # XML documents returned by the dump
    applied: int = 0  # VMs whose XML was applied (hash advanced)
    changed: int = 0  # applied VMs with at least one row written
    rows_written: int = 0
    rules: Counter = field(default_factory=Counter)  # matched devices by rule
    new: int = 0
    unplugged: int = 0
    deleted: int = 0
    foreign: int = 0
    conflicts: int = 0
    vanished: int = 0  # VMs of this host stored Down: no longer reported
    skipped: Counter[Skip] = field(default_factory=Counter)
    errors: Counter[ErrorKind] = field(default_factory=Counter)
    host_error: str | None = None
    stopped: bool = False  # the tick raised before its end (the database failed)
    lease_lost: bool = False  # the worker no longer held the host: the tick stopped
    duration_s: float = 0.0

    @property
    def completed(self) -> bool:
        """The tick ran to its end on a host that answered: what health counts as good."""
        return self.host_error is None and not self.stopped and not self.lease_lost

    def line(self) -> str:
        """The one summary line per tick an operator reads."""
        rules, errors, skipped = (_counts(self.rules), _counts(self.errors),
                                  _counts(self.skipped))
        parts = [
            f"host={self.host}",
            f"polled={self.polled}",
            f"read={sum(self.read.values())}",
            f"fetched={self.fetched}",
            f"applied={self.applied}",
            f"changed={self.changed}",
            f"rows={self.rows_written}",
            f"matched[{rules or '-'}]",
            f"new={self.new}",
            f"unplugged={self.unplugged}",
            f"deleted={self.deleted}",
            f"foreign={self.foreign}",
            f"conflicts={self.conflicts}",
            f"vanished={self.vanished}",
            f"skipped[{skipped or '-'}]",
            f"errors[{errors or '-'}]",
            f"time={self.duration_s * 1000:.0f}ms",
        ]
        if self.host_error:
            parts.insert(1, f"HOST-ERROR={self.host_error}")
        return " ".join(parts)

    def add(self, other: "TickSummary") -> None:
        """Fold another tick's counts into this one (replay totals)."""
        for name in ("polled", "fetched", "applied", "changed", "rows_written", "new",
                     "unplugged", "deleted", "foreign", "conflicts", "vanished", "duration_s",
                     "resyncs", "reconnects"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rules.update(other.rules)
        self.read.update(other.read)
        self.events.update(other.events)
        self.skipped.update(other.skipped)
        self.errors.update(other.errors)


def _counts(counter: Counter) -> str:
    """``name=count,...`` sorted by name; a zero count (added, never incremented) is left out."""
    return ",".join(f"{name}={count}" for name, count in sorted(counter.items()) if count)
