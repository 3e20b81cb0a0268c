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
callback, shared by every source on that connection (libvirt takes one of each per
connection). The callbacks run on the event thread and only hand the VM's uuid (or
the close) to the source's thread-safe bookkeeping (``monitor.hosts.xml_cache``).
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
OnClose = Callable[[], None]


class _ConnectionCallbacks:
    """libvirt's callbacks on one connection, shared by every source that uses it.

    libvirt takes one callback per event type per connection ("event callback already
    tracked" for a second one) and one close callback, so two sources on one connection
    (a test's shared connection) listen through one set, which calls each in turn.
    """

    def __init__(self, connection: libvirt.virConnect) -> None:
        self.connection = connection
        self._listeners: tuple[tuple[OnEvent, OnClose], ...] = ()  # replaced, never mutated
        self._callback_ids: list[int] = []
        self._close_registered = False
        try:
            for name, event_id in DIRTY_EVENTS.items():
                self._callback_ids.append(connection.domainEventRegisterAny(
                    None, event_id, self._domain_callback(name), None))
            connection.registerCloseCallback(self._closed, None)
            self._close_registered = True
        except libvirt.libvirtError:
            self.deregister()
            raise

    @property
    def empty(self) -> bool:
        return not self._listeners

    def add(self, listener: tuple[OnEvent, OnClose]) -> None:
        self._listeners = (*self._listeners, listener)

    def remove(self, listener: tuple[OnEvent, OnClose]) -> None:
        self._listeners = tuple(known for known in self._listeners if known is not listener)

    def _domain_callback(self, name: str):
        """libvirt calls ``(conn, domain, <the event's own arguments>..., opaque)``."""
        def callback(_connection, domain, *_rest) -> None:
            vm_id = domain.UUIDString().lower()
            for on_event, _on_close in self._listeners:
                on_event(vm_id, name)
        return callback

    def _closed(self, _connection, _reason, _opaque) -> None:
        for _on_event, on_close in self._listeners:
            on_close()

    def deregister(self) -> None:
        """Remove every callback; a connection already dead has none left to remove."""
        for callback_id in self._callback_ids:
            try:
                self.connection.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                pass  # the connection is gone, and its callbacks with it
        self._callback_ids = []
        if self._close_registered:
            try:
                self.connection.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass  # idem
            self._close_registered = False


_callbacks_lock = threading.Lock()
# By id() of the connection object; an entry holds the object, so its id stays its own.
_callbacks_by_connection: dict[int, _ConnectionCallbacks] = {}


class Subscription:
    """One source's domain-event and close handlers on one connection, until cancelled."""

    def __init__(self, connection: libvirt.virConnect, on_event: OnEvent,
                 on_close: OnClose) -> None:
        self._connection = connection
        self._listener = (on_event, on_close)
        with _callbacks_lock:
            callbacks = _callbacks_by_connection.get(id(connection))
            if callbacks is None:
                callbacks = _ConnectionCallbacks(connection)  # raises if the host does
                _callbacks_by_connection[id(connection)] = callbacks
            callbacks.add(self._listener)
        self._active = True

    def cancel(self) -> None:
        """Stop this source's handlers; the connection's callbacks go with the last one."""
        with _callbacks_lock:
            if not self._active:
                return
            self._active = False
            callbacks = _callbacks_by_connection.get(id(self._connection))
            if callbacks is None:
                return
            callbacks.remove(self._listener)
            if callbacks.empty:
                del _callbacks_by_connection[id(self._connection)]
                callbacks.deregister()
