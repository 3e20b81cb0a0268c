"""Host sources from settings: a libvirt URI, or a recorded fixture played in a loop."""

from __future__ import annotations

from monitor.errors import UsageError
from monitor.hosts.fixture import read_fixture
from monitor.hosts.replay import LoopingReplaySource
from monitor.hosts.source import HostSource
from monitor.settings import HostSettings, Limits, WorkerSettings


def build_source(host: HostSettings, limits: Limits | None = None,
                 worker: WorkerSettings | None = None, *,
                 resync_interval_s: float | None = None) -> HostSource:
    """The host's source; its name is already checked (``HostSettings``). ``worker``
    gives the defaults a host may override (``resync_interval``); ``resync_interval_s``
    overrides both (``monitor record``: 0, every poll reads every VM)."""
    if host.fixture:
        return LoopingReplaySource(read_fixture(host.fixture), host.name, limits or Limits())
    try:
        from monitor.hosts.libvirt_events import start_event_loop
        from monitor.hosts.libvirt_source import LibvirtHostSource
    except ImportError:
        raise UsageError(f"host {host.name}: libvirt-python is not installed "
                         "(pip install 'monitor[libvirt]')") from None
    # libvirt's event loop runs before any connection opens (sources open theirs on
    # their first poll): docs/worker.md, "Libvirt hosts".
    start_event_loop()
    if resync_interval_s is None:
        resync_interval_s = host.resync_interval or (worker or WorkerSettings()).resync_interval
    return LibvirtHostSource(host.uri, host.name, resync_interval_s=resync_interval_s)
