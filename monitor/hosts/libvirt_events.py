"""libvirt's event loop, and the callbacks one source keeps on its connection.

libvirt delivers domain events, keepalive and a connection's close through an event
loop the application provides. ``start_event_loop`` registers libvirt's default one
(``virEventRegisterDefaultImpl``) and runs it in a daemon thread; it must happen once
per process before any connection opens (a connection opened earlier never gets its
events), so the worker calls it at start (``monitor.worker.sources``), the source
again before it opens a connection (a no-op by then), and the tests in
``tests/conftest.py``.

``Subscription`` is what a source registers on its connection: one callback per
domain event that can change a VM's devices (``DIRTY_EVENTS``), and the close
callback. The callbacks run on the event thread and only hand the VM's uuid (or the
close) to the source's thread-safe bookkeeping (``monitor.hosts.xml_cache``).
See docs/worker.md, "When a VM's XML is read".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import libvirt

from monitor.logfields import fields

log = logging.getLogger("monitor.hosts")

# The domain events after which a VM's XML may differ, by the name the metrics use.
# BLOCK_JOB_2 names the disk by its target rather than its path; it is emitted for
# every block job, so the older BLOCK_JOB event would only count each job twice.
DIRTY_EVENTS: dict[str, int] = {
    "lifecycle": libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
    "reboot": libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
    "device-added": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
    "device-removed": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
    "device-removal-failed": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
    "tray-change": libvirt.VIR_DOMAIN_EVENT_ID_TRAY_CHANGE,
    "block-job": libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
    "metadata-change": libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
}

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread, once per process."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_event_loop, name="libvirt-events",
                                        daemon=True)
        _loop_thread.start()


def event_loop_running() -> bool:
    return _loop_thread is not None and _loop_thread.is_alive()


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as error:  # one failed iteration; the loop goes on
            log.warning("libvirt event loop: %s", " ".join(str(error).split()),
                        extra=fields(kind="event-loop"))


OnEvent = Callable[[str, str], None]  # (VM uuid, event name)


class Subscription:
    """The domain-event and close callbacks registered on one connection, until cancelled."""

    def __init__(self, connection: libvirt.virConnect, on_event: OnEvent,
                 on_close: Callable[[], None]) -> None:
        self._connection = connection
        self._callback_ids: list[int] = []
        self._close_registered = False
        try:
            for name, event_id in DIRTY_EVENTS.items():
                self._callback_ids.append(connection.domainEventRegisterAny(
                    None, event_id, _domain_callback(name, on_event), None))
            connection.registerCloseCallback(lambda _conn, _reason, _opaque: on_close(), None)
            self._close_registered = True
        except libvirt.libvirtError:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Deregister every callback; a connection already dead has none left to remove."""
        for callback_id in self._callback_ids:
            try:
                self._connection.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                pass  # the connection is gone, and its callbacks with it
        self._callback_ids = []
        if self._close_registered:
            try:
                self._connection.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass  # idem
            self._close_registered = False


def _domain_callback(name: str, on_event: OnEvent):
    """libvirt calls ``(conn, domain, <the event's own arguments>..., opaque)``."""
    def callback(_connection, domain, *_rest) -> None:
        on_event(domain.UUIDString().lower(), name)
    return callback
