"""Host sources that play a recorded fixture: what CI and the demo worker poll.

``ReplayHostSource`` is one host in one tick, exactly as recorded: its poll returns
the tick's ``<host>.json``, its dump reads ``<host>/<vm id>.xml`` (a missing file is
a VM the dump did not return), and ``held_locks`` is the tick's ``locks.json``.
A recorded ``"refused"`` lets the poll answer and makes the dump raise
``HostRefused``; ``"unreachable"`` and ``"timeout"`` fail both.

``LoopingReplaySource`` is one host across a whole fixture for ``monitor run``'s demo:
each poll moves on to the next tick where that host appears, starting again after
the last one. Its ``held_locks`` are those of the tick the *next* poll plays: the job
takes them before it polls, as ``monitor replay`` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from monitor.errors import FixtureError, HostError, HostRefused, HostTimeout, HostUnreachable
from monitor.hosts.fixture import Fixture, HostAnswer, Tick
from monitor.hosts.source import VmReport, xml_by_vm
from monitor.inputfile import read_head
from monitor.model.ids import normalize_uuid
from monitor.settings import Limits

DEFAULT_LIMITS = Limits()
_ERRORS: dict[str, type[HostError]] = {
    "unreachable": HostUnreachable,
    "timeout": HostTimeout,
    "refused": HostRefused,
}


class ReplayHostSource:
    """One host of one tick of a fixture."""

    def __init__(self, tick: Tick, host: str, max_xml_bytes: int = DEFAULT_LIMITS.max_xml_bytes
                 ) -> None:
        answer = tick.answer(host)
        if answer is None:
            raise FixtureError(f"{tick.path}: host {host} was not polled in this tick")
        self.name = host
        self._tick = tick
        self._answer: HostAnswer = answer
        self._max_xml_bytes = max_xml_bytes

    @property
    def tick(self) -> Tick:
        return self._tick

    def poll(self) -> dict[str, VmReport]:
        if self._answer.error in ("unreachable", "timeout"):
            raise self._error()
        return dict(self._answer.reports)

    def dump(self, vm_ids: Sequence[str]) -> dict[str, bytes]:
        if self._answer.error is not None:
            raise self._error()
        return xml_by_vm(self._recorded(vm_ids), self.name)

    def _recorded(self, vm_ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        for vm_id in vm_ids:
            canonical = normalize_uuid(vm_id)
            if canonical is None:
                continue  # no file can name it: not returned
            try:
                # Never more than one byte past the limit: the parse refuses it as too big.
                yield vm_id, read_head(self._answer.xml_path(canonical), self._max_xml_bytes)
            except FileNotFoundError:
                continue  # recorded as not returned by the dump

    def held_locks(self) -> frozenset[str]:
        return self._tick.locks

    def close(self) -> None:
        """Nothing to release: XML is read per dump."""

    def _error(self) -> HostError:
        kind = self._answer.error
        return _ERRORS[kind](f"host {self.name}: {kind} (recorded in tick {self._tick.path.name})")


def tick_sources(tick: Tick, limits: Limits = DEFAULT_LIMITS) -> tuple[ReplayHostSource, ...]:
    """A source for every host polled in ``tick``, in host name order."""
    return tuple(ReplayHostSource(tick, host, limits.max_xml_bytes) for host in tick.hosts)


class LoopingReplaySource:
    """One host replayed forever: every poll plays the next tick where it appears.

    ``dump`` answers for the tick of the last poll (before the first poll there is
    none: a dump is a caller's bug); ``held_locks`` for the tick the next poll plays,
    since a device command holds its locks before the poll that sees its VM.
    """

    def __init__(self, fixture: Fixture, host: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.name = host
        self._max_xml_bytes = limits.max_xml_bytes
        self._ticks = tuple(tick for tick in fixture.ticks if tick.answer(host) is not None)
        if not self._ticks:
            raise FixtureError(f"{fixture.root}: host {host} is polled in no tick; name "
                               f"the host after one of the fixture's hosts: "
                               f"{', '.join(fixture.hosts)}")
        self._next = 0
        self._current: ReplayHostSource | None = None

    @property
    def tick_number(self) -> int | None:
        """The tick the last poll played, for logs."""
        return self._current.tick.number if self._current else None

    def poll(self) -> dict[str, VmReport]:
        self._current = ReplayHostSource(self._ticks[self._next], self.name,
                                         self._max_xml_bytes)
        self._next = (self._next + 1) % len(self._ticks)
        return self._current.poll()

    def dump(self, vm_ids: Sequence[str]) -> dict[str, bytes]:
        if self._current is None:
            raise RuntimeError("dump before the first poll")
        return self._current.dump(vm_ids)

    def held_locks(self) -> frozenset[str]:
        return self._ticks[self._next].locks

    def close(self) -> None:
        self._current = None
