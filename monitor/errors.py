"""Errors grouped by what the caller does next (STYLE point 7).

Every error here carries a one-line message for an operator. The CLI prints it on
stderr and exits with ``exit_code``; the worker decides from the class whether to
retry next tick (transient), record and move on (bad input), or stop.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base: a one-line message, an exit code for the CLI."""

    exit_code = 1


class UsageError(MonitorError):
    """The command line or configuration is wrong."""

    exit_code = 2


class XmlError(MonitorError):
    """A document is malformed, hostile or not a Domain XML. Bad input: record, move on."""

    exit_code = 3


class FixtureError(MonitorError):
    """A recorded fixture directory is unusable."""

    exit_code = 4


class StoreError(MonitorError):
    """The database failed. Transient unless the schema is wrong: retry with backoff."""

    exit_code = 5
    transient = False  # set per error by monitor.store: a retry may succeed
    # Set by monitor.store: the database as a whole cannot be used right now (unreachable,
    # connection dropped, shutting down, an SQLite file locked by another writer), so
    # the tick stops and backs off instead of retrying VM by VM. Implies ``transient``.
    unavailable = False


class HostError(MonitorError):
    """A host source failed for this tick. Transient: back off that host only."""

    exit_code = 6
    kind = "error"


class HostUnreachable(HostError):
    kind = "unreachable"


class HostTimeout(HostError):
    kind = "timeout"


class HostRefused(HostError):
    """The host refused the batch (dump) call."""

    kind = "refused"


class HostGarbage(HostError):
    """The host answered something that is not an answer (a poll that is no mapping)."""

    kind = "garbage"


class StoppedStuck(MonitorError):
    """SIGTERM came while a tick waited on an answer that did not come within the grace
    (a database or host that accepts bytes but never answers): the worker exits without
    it, and the database rolls its open transaction back (docs/operations.md)."""

    exit_code = 8


class DefinitionError(MonitorError):
    """A VM's run definition or one of its rows cannot become a Domain XML (docs/run-vm.md)."""

    exit_code = 7


class WorkerConflict(MonitorError):
    """Another live worker runs on this database and the database allows only one
    (SQLite: docs/operations.md, "Many workers")."""

    exit_code = 9


class LeaseLost(MonitorError):
    """This worker no longer holds the host its tick runs for: the transaction that
    found out rolled back, and the tick stops (counted as ``lease-lost``). Never leaves
    the worker."""

    exit_code = 10
