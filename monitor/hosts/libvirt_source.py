"""A host source on a real libvirt connection: the only module that imports libvirt.

libvirt has neither a devices hash nor a batch dump verb. So the poll reads every
domain's XML, hashes its canonical ``<devices>`` element
(``monitor.domxml.canonical.devices_digest``), and keeps those bytes: the dump
returns the very XML that was hashed, so a stored hash always names the XML that
was applied, even if the domain changed in between (the next poll sees that).

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
the connection's process: pass an open ``connection`` to share it with a test, and
change a running VM with ``redefine_and_restart`` (it has no hot-plug, and
``defineXML`` on a running domain only changes its next boot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import libvirt

from monitor.domxml.canonical import devices_digest
from monitor.errors import HostError, HostRefused, HostTimeout, HostUnreachable, XmlError
from monitor.hosts.source import VmReport

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


class LibvirtHostSource:
    """One libvirt host: ``uri`` to reach it, ``name`` as the DB knows it."""

    def __init__(self, uri: str, name: str, *, connection: libvirt.virConnect | None = None):
        self.uri = uri
        self.name = name
        self._connection = connection
        self._owns_connection = connection is None
        self._xml_by_vm: dict[str, bytes] = {}

    def poll(self) -> dict[str, VmReport]:
        connection = self._connect()
        try:
            domains = connection.listAllDomains(0)
            read = [self._read_domain(domain) for domain in domains]
        except libvirt.libvirtError as error:
            self.close()  # an owned connection is opened afresh next tick
            raise host_error(self.name, "polling", error, HostUnreachable) from None
        reports: dict[str, VmReport] = {}
        xml_by_vm: dict[str, bytes] = {}
        for vm_id, status, xml in filter(None, read):
            xml_by_vm[vm_id] = xml
            reports[vm_id] = VmReport(status, report_hash(xml))
        self._xml_by_vm = xml_by_vm
        return reports

    def dump(self, vm_ids: Sequence[str]) -> dict[str, bytes]:
        """The XML the last poll read and hashed, for the ids it saw."""
        return {vm_id: self._xml_by_vm[vm_id] for vm_id in vm_ids if vm_id in self._xml_by_vm}

    def held_locks(self) -> frozenset[str]:
        return frozenset()

    def start_domain(self, xml: bytes | str) -> str:
        """Start a transient domain (``createXML``); its lower-case uuid.

        Define and start happen in one call, so a start the host refuses leaves nothing
        defined there (docs/run-vm.md, "Starting a VM").
        """
        connection = self._connect()
        try:
            domain = connection.createXML(_text(xml), 0)
        except libvirt.libvirtError as error:
            raise host_error(self.name, "starting a domain", error, HostRefused) from None
        return domain.UUIDString().lower()

    def is_running(self, vm_id: str) -> bool:
        """Whether the host has an active domain with this uuid (a shut-off one is not)."""
        connection = self._connect()
        try:
            return bool(connection.lookupByUUIDString(vm_id).isActive())
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise host_error(self.name, "looking up a domain", error, HostUnreachable) from None

    def redefine_and_restart(self, xml: bytes | str) -> str:
        """Change a VM the only way the test driver allows: destroy, define, create."""
        connection = self._connect()
        try:
            domain = connection.defineXML(_text(xml))  # the next boot's definition
            if domain.isActive():
                domain.destroy()
            domain.create()
        except libvirt.libvirtError as error:
            raise host_error(self.name, "restarting a domain", error, HostRefused) from None
        return domain.UUIDString().lower()

    def close(self) -> None:
        """Close the connection if this source opened it; a shared one stays open."""
        self._xml_by_vm = {}
        if self._owns_connection and self._connection is not None:
            try:
                self._connection.close()
            except libvirt.libvirtError:
                pass  # closing a broken connection: nothing left to release
            self._connection = None

    def _connect(self) -> libvirt.virConnect:
        """The shared connection, or this source's own, opened on first use."""
        if self._connection is None:
            _quiet_libvirt()
            try:
                self._connection = libvirt.open(self.uri)
            except libvirt.libvirtError as error:
                raise host_error(self.name, f"connecting to {self.uri}", error,
                                 HostUnreachable) from None
        return self._connection

    @staticmethod
    def _read_domain(domain: libvirt.virDomain) -> tuple[str, str, bytes] | None:
        """(uuid, status, XML) of one domain, or None when it vanished meanwhile."""
        try:
            state = domain.state()[0]
            xml = domain.XMLDesc(0).encode("utf-8")
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        return domain.UUIDString().lower(), _STATUS_BY_STATE.get(state, "Down"), xml


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
