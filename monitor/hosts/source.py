"""The interface every host source speaks, and the report it returns per VM.

A tick polls a host for ``{vm id: (status, hash)}``, decides in pure code which VMs
to fetch, and asks the same host for the XML of those VMs in one batch. Failures are
the typed errors of ``monitor.errors``: ``HostUnreachable`` and ``HostTimeout`` (poll
or dump: retry next tick), ``HostRefused`` (the host answered the poll but refused
the batch). The report time is not the source's business: the tick reads the
database's clock when ``poll`` returns, in replay too (docs/operations.md, "Clocks").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from monitor.logfields import fields

log = logging.getLogger("monitor.hosts")

HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")


def is_host_name(text: str) -> bool:
    """A host name as the DB stores it: ``[A-Za-z0-9._-]+``, so never a URI or a path."""
    return bool(HOST_NAME.fullmatch(text)) and text not in (".", "..")


class VmReport(NamedTuple):
    """What a host says about one VM in a poll.

    ``status`` is the host agent's string (``Up``, ``Paused``, ...); ``hash`` is the
    opaque devices hash, ``None`` when the host has none yet (absent, null or ``""``).
    """

    status: str
    hash: str | None


def report(status: str, hash: str | None) -> VmReport:
    """A report with "not yet" normalized once: an empty hash becomes ``None``."""
    return VmReport(status, hash or None)


def xml_by_vm(pairs: Iterable[tuple[str, bytes]], host: str) -> dict[str, bytes]:
    """A dump's answer as ``{vm id: xml}``, keeping the first document of a VM.

    A remote agent answers with a list, and may list a VM twice; which copy is newer
    cannot be told, so the first one wins and every further one is logged.
    """
    xmls: dict[str, bytes] = {}
    for vm_id, xml in pairs:
        if vm_id in xmls:
            log.warning("the dump returned this VM twice: the first document is used",
                        extra=fields(host=host, vm=vm_id, kind="duplicate"))
            continue
        xmls[vm_id] = xml
    return xmls


class HostSource(Protocol):
    """One host, as the tick sees it.

    ``name`` is the host's name (``[A-Za-z0-9._-]+``), never a URI: it is what the
    DB stores in a VM's ``host``.
    """

    name: str

    def poll(self) -> dict[str, VmReport]:
        """Every VM the host runs: lower-case VM uuid -> report."""
        ...

    def dump(self, vm_ids: Sequence[str]) -> dict[str, bytes]:
        """The Domain XML of those VMs, in ONE call; an id the host did not return is absent."""
        ...

    def held_locks(self) -> frozenset[str]:
        """VM ids whose devices lock a device command holds during this poll.

        Only a recording knows this (its ``locks.json``); a live source returns an
        empty set, since real device commands take the lock in the DB themselves.
        """
        ...

    def close(self) -> None:
        ...


class PollCounts(NamedTuple):
    """What a source that reads XML to answer its poll did since it was last asked.

    ``reads``: Domain XML documents read, by reason (``new``, ``event``, ``resync``);
    ``events``: domain events received, by type; ``resyncs``: full resyncs done;
    ``reconnects``: connections opened again after a lost or closed one.
    """

    reads: Mapping[str, int]
    events: Mapping[str, int]
    resyncs: int
    reconnects: int


@runtime_checkable
class CountsReads(Protocol):
    """A source whose poll reads XML (the libvirt source): the tick takes its counts."""

    def take_counts(self) -> PollCounts:
        """The counts since the previous call (each is reported once)."""
        ...
