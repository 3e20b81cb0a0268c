"""A real libvirt connection that records what a host source asks of it and tells a test
when the source's event callbacks have run (tests of the event-driven libvirt source).

Everything not overridden goes to the real connection; keepalive is recorded and passed
on. A test hands it to ``LibvirtHostSource`` as ``connection=`` or from
``open_connection``.
"""

from __future__ import annotations

import threading


class RecordingConnection:
    """A real connection that records what the source asks of it beyond the plain calls
    (keepalive, the close callback), and tells the test when the source's domain-event
    callbacks have run.

    libvirt refuses a second callback for the same event on one connection, so a test
    cannot register its own beside the source's; it waits on the source's instead.
    """

    def __init__(self, libvirt, real) -> None:
        self._libvirt = libvirt
        self._real = real
        self.keepalive: tuple[int, int] | None = None
        self.close_callback = None
        self.handled: list[tuple[int, str, tuple]] = []  # (event id, VM, event arguments)
        self._changed = threading.Condition()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def setKeepAlive(self, interval, count):  # noqa: N802 (libvirt's spelling)
        self.keepalive = (interval, count)
        return self._real.setKeepAlive(interval, count)  # the test driver refuses it

    def registerCloseCallback(self, callback, opaque):  # noqa: N802
        self.close_callback = callback
        return self._real.registerCloseCallback(callback, opaque)

    def domainEventRegisterAny(self, domain, event_id, callback, opaque):  # noqa: N802
        def handled(connection, event_domain, *rest):
            callback(connection, event_domain, *rest)
            with self._changed:
                self.handled.append((event_id, event_domain.UUIDString().lower(), rest[:-1]))
                self._changed.notify_all()
        return self._real.domainEventRegisterAny(domain, event_id, handled, opaque)

    def wait_for(self, event_id: int, vm_id: str, first_argument=None,
                 timeout_s: float = 10.0) -> tuple:
        """Until the source's callback has handled that event of that VM (with that first
        argument: a lifecycle event's kind, a device's alias); the event's arguments."""
        def found():
            return next((args for handled_id, vm, args in self.handled
                         if handled_id == event_id and vm == vm_id
                         and (first_argument is None or args[:1] == (first_argument,))), None)

        with self._changed:
            arguments = self._changed.wait_for(found, timeout_s)
        assert arguments is not None, (
            f"no event {event_id} ({first_argument}) for {vm_id} within {timeout_s}s")
        return arguments

    def wait_for_lifecycle(self, vm_id: str, event: int, timeout_s: float = 10.0) -> None:
        """Until the source's callback has handled that lifecycle event of that VM."""
        self.wait_for(self._libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, vm_id, event, timeout_s)

    def close_quietly(self) -> None:
        try:
            self._real.close()
        except self._libvirt.libvirtError:
            pass  # closed already by the test or the source
