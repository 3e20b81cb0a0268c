"""A host source on a real libvirt connection, event-driven (docs/worker.md).

With ``libvirt_events`` the only modules that import libvirt. libvirt has neither a
devices hash nor a batch dump verb, so the source keeps, per domain, the XML it read
last and the digest of its canonical ``<devices>`` element
(``monitor.domxml.canonical.devices_digest``), and reads a domain's XML again only
when it is dirty (``monitor.hosts.xml_cache``): a domain event named it, it is new,
or a full resync is due (every ``resync_interval_s``, and after every (re)connect).
A poll reads every domain's state in one bulk call (``getAllDomainStats``, state
group); a clean VM reports its cached digest. The dump returns the very XML that was
hashed, so a stored hash always names the XML that was applied, even if the domain
changed in between (its event makes the next poll read it).

One long-lived connection per host, opened on the first poll with libvirt's event loop
running (``libvirt_events.start_event_loop``), keepalive on every URI but the test
driver's, the domain-event callbacks and a close callback. A connection that closes
(the close callback) or fails a call is dropped; the next poll opens a new one, which
starts with a full resync. ``close()`` deregisters the callbacks and closes the
connection.

Statuses: running -> ``Up``, paused -> ``Paused``, anything else -> ``Down``.

libvirt's errors become the typed host errors with one line naming the host:
keepalive and operation timeouts -> ``HostTimeout``; connection failures, and
anything else the poll meets -> ``HostUnreachable``; anything else a define or start
meets -> ``HostRefused``. A domain whose XML cannot be digested is reported with a hash
of its raw bytes (``report_hash``), for the tick to read or refuse alone. A start is
transient (``createXML``): a refused one leaves
nothing defined on the host. The dump serves what the poll read, so it never fails. A
domain that vanishes between the listing and its XML is simply not reported.

The test driver (``test:///default``, ``test:///path/node.xml``) keeps its state in
the connection's process: pass an open ``connection`` to share it with a test (the
source then never closes it, nor opens another), and change a running VM with
``redefine_and_restart`` (it has no hot-plug, and ``defineXML`` on a running domain
only changes its next boot).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

import libvirt

from monitor.domxml.canonical import devices_digest
from monitor.errors import HostError, HostRefused, HostTimeout, HostUnreachable, XmlError
from monitor.hosts.libvirt_events import Subscription, start_event_loop
from monitor.hosts.source import PollCounts, VmReport
from monitor.hosts.xml_cache import Document, XmlCache
from monitor.logfields import fields
from monitor.settings import WorkerSettings

log = logging.getLogger("monitor.hosts")

_UNREACHABLE_CODES = frozenset({
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
})
_TIMEOUT_CODES = frozenset({libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE})
_STATUS_BY_STATE = {libvirt.VIR_DOMAIN_RUNNING: "Up", libvirt.VIR_DOMAIN_PAUSED: "Paused"}
_ERROR_HANDLER_SET = False


def host_error(
    host: str, action: str, error: libvirt.libvirtError, otherwise: type[HostError]
) -> HostError:
    """The typed error for a libvirt failure, decided by its code (and keepalive text)."""
    code = error.get_error_code()
    message = " ".join((error.get_error_message() or str(error)).split())
    if code in _TIMEOUT_CODES or "keepalive" in message or "timed out" in message:
        kind: type[HostError] = HostTimeout
    elif code in _UNREACHABLE_CODES:
        kind = HostUnreachable
    else:
        kind = otherwise
    return kind(f"host {host}: {action} failed: {message}")


def _quiet_libvirt() -> None:
    """libvirt prints every error on stderr by default; ours are raised as one line."""
    global _ERROR_HANDLER_SET
    if not _ERROR_HANDLER_SET:
        libvirt.registerErrorHandler(lambda _context, _error: None, None)
        _ERROR_HANDLER_SET = True


DEFAULT_RESYNC_INTERVAL_S = WorkerSettings().resync_interval
KEEPALIVE_INTERVAL_S = 5  # a keepalive every 5 s; 3 unanswered ones close the connection
KEEPALIVE_COUNT = 3


def wants_keepalive(uri: str) -> bool:
    """Every URI but the test driver's, which runs in this process and has none."""
    return not uri.startswith("test:")


class LibvirtHostSource:
    """One libvirt host: ``uri`` to reach it, ``name`` as the DB knows it."""

    def __init__(self, uri: str, name: str, *, connection: libvirt.virConnect | None = None,
                 resync_interval_s: float = DEFAULT_RESYNC_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 open_connection: Callable[[str], libvirt.virConnect] = libvirt.open):
        self.uri = uri
        self.name = name
        self._connection = connection
        self._owns_connection = connection is None
        self._open_connection = open_connection
        self._cache = XmlCache(resync_interval_s, clock)
        self._subscription: Subscription | None = None
        self._lost = threading.Event()  # set by the close callback, on the event thread
        self._guard = threading.RLock()  # a tick's poll against close() from another thread
        self._connects = 0
        self._reconnects = 0

    @property
    def resync_interval_s(self) -> float:
        return self._cache.resync_interval_s

    def poll(self) -> dict[str, VmReport]:
        with self._guard:
            connection = self._connect("polling")
            try:
                states = self._states(connection)
                plan = self._cache.plan(states)
                read = {}
                for vm_id in plan.reads:
                    document = self._read(states[vm_id][0])
                    if document is not None:
                        read[vm_id] = document
            except libvirt.libvirtError as error:
                self._drop()  # an owned connection is opened afresh next tick
                self._cache.resync_soon()
                raise host_error(self.name, "polling", error, HostUnreachable) from None
            except BaseException:
                self._cache.resync_soon()  # the dirty VMs this poll took are read again
                raise
            self._cache.settle(plan, states, read)
            reports: dict[str, VmReport] = {}
            for vm_id, (_domain, status) in states.items():
                document = self._cache.document(vm_id)
                if document is not None:
                    reports[vm_id] = VmReport(status, document.digest)
            return reports

    def dump(self, vm_ids: Sequence[str]) -> dict[str, bytes]:
        """The XML whose digest the last poll reported, for the ids it reported."""
        with self._guard:
            found = {}
            for vm_id in vm_ids:
                document = self._cache.document(vm_id)
                if document is not None:
                    found[vm_id] = document.xml
            return found

    def held_locks(self) -> frozenset[str]:
        return frozenset()

    def take_counts(self) -> PollCounts:
        """XML reads, events, resyncs and reconnects since the previous call (the tick's)."""
        reads, events, resyncs = self._cache.take_counts()
        with self._guard:
            reconnects, self._reconnects = self._reconnects, 0
        return PollCounts(reads, events, resyncs, reconnects)

    def resync_soon(self) -> None:
        """The next poll reads every VM's XML again (a full resync)."""
        self._cache.resync_soon()

    def start_domain(self, xml: bytes | str) -> str:
        """Start a transient domain (``createXML``); its lower-case uuid.

        Define and start happen in one call, so a start the host refuses leaves nothing
        defined there (docs/run-vm.md, "Starting a VM").
        """
        with self._guard:
            connection = self._connect("starting a domain")
            try:
                domain = connection.createXML(_text(xml), 0)
            except libvirt.libvirtError as error:
                raise host_error(self.name, "starting a domain", error, HostRefused) from None
            return self._changed(domain)

    def is_running(self, vm_id: str) -> bool:
        """Whether the host has an active domain with this uuid (a shut-off one is not)."""
        with self._guard:
            connection = self._connect("looking up a domain")
            try:
                return bool(connection.lookupByUUIDString(vm_id).isActive())
            except libvirt.libvirtError as error:
                if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return False
                raise host_error(self.name, "looking up a domain", error,
                                 HostUnreachable) from None

    def redefine_and_restart(self, xml: bytes | str) -> str:
        """Change a VM the only way the test driver allows: destroy, define, create."""
        with self._guard:
            connection = self._connect("restarting a domain")
            try:
                domain = connection.defineXML(_text(xml))  # the next boot's definition
                if domain.isActive():
                    domain.destroy()
                domain.create()
            except libvirt.libvirtError as error:
                raise host_error(self.name, "restarting a domain", error, HostRefused) from None
            return self._changed(domain)

    def close(self) -> None:
        """Deregister the callbacks, close the connection if this source opened it (a
        shared one stays open), and forget every document: the next poll reads all."""
        with self._guard:
            self._drop()
            self._cache.forget()

    def _changed(self, domain: libvirt.virDomain) -> str:
        """A change this source made: the next poll reads the VM without waiting for its event."""
        vm_id = domain.UUIDString().lower()
        self._cache.mark_dirty(vm_id)
        return vm_id

    def _connect(self, action: str) -> libvirt.virConnect:
        """The live connection with its callbacks; a new one if it was lost or closed.

        ``action`` names what failed if the callbacks cannot be registered (a shared
        connection closed underneath is found there)."""
        if self._lost.is_set():
            self._lost.clear()
            self._drop()
        if self._connection is None:
            start_event_loop()  # a no-op when the worker or the tests did it already
            _quiet_libvirt()
            try:
                self._connection = self._open_connection(self.uri)
                if wants_keepalive(self.uri):
                    _keepalive(self._connection)
            except libvirt.libvirtError as error:
                self._drop()
                raise host_error(self.name, f"connecting to {self.uri}", error,
                                 HostUnreachable) from None
        if self._subscription is None:
            try:
                self._subscription = Subscription(self._connection, self._cache.mark_dirty,
                                                  self._lost.set)
            except libvirt.libvirtError as error:
                self._drop()
                raise host_error(self.name, action, error, HostUnreachable) from None
            self._cache.resync_soon()  # events before this moment were never seen
            self._connects += 1
            if self._connects > 1:
                self._reconnects += 1
                log.info("connected again: full resync", extra=fields(host=self.name))
        return self._connection

    def _drop(self) -> None:
        """Forget the connection's callbacks, and the connection itself if it is ours."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        if self._owns_connection and self._connection is not None:
            try:
                self._connection.close()
            except libvirt.libvirtError:
                pass  # closing a broken connection: nothing left to release
            self._connection = None

    @staticmethod
    def _states(connection: libvirt.virConnect) -> dict[str, tuple[libvirt.virDomain, str]]:
        """Every domain and its status, in one call."""
        return {
            domain.UUIDString().lower(): (domain, _STATUS_BY_STATE.get(stats.get("state.state"),
                                                                       "Down"))
            for domain, stats in connection.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
        }

    @staticmethod
    def _read(domain: libvirt.virDomain) -> Document | None:
        """One domain's XML and digest; ``None`` when it vanished since the listing."""
        try:
            xml = domain.XMLDesc(0).encode("utf-8")
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        return Document(xml, report_hash(xml))


def _keepalive(connection: libvirt.virConnect) -> None:
    """Keepalive where the driver has it (every remote one); a local driver may not."""
    try:
        connection.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise


def report_hash(xml: bytes) -> str:
    """The devices digest of ``xml``; for XML that cannot be digested (over a limit,
    hostile, malformed), ``raw-`` and the sha256 of its bytes.

    Such a VM is still reported: the tick fetches it and reads it (the digest's own
    limit is stricter than the reader needs) or refuses it in one line into its
    ``last_error``; it is fetched again when its bytes change. One VM's XML never fails
    its host's poll.
    """
    try:
        return devices_digest(xml)
    except XmlError:
        return "raw-" + hashlib.sha256(xml).hexdigest()


def _text(xml: bytes | str) -> str:
    return xml.decode("utf-8") if isinstance(xml, bytes) else xml
