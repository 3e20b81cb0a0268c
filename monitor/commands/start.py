"""Run-VM: build the Domain XML from the DB and start it on a libvirt host.

Like every device command it holds the VM's devices lock while it changes the VM, so a
tick cannot apply an XML read before the start over the rows the start relies on.
The VM is recorded as running on ``host_name`` with status ``WaitForLaunch``; the
host's next poll reports it ``Up`` and the tick reconciles it.

The start is transient, so a refused start leaves nothing defined on the host, and a VM
whose domain the host reports active is refused before anything is sent to the host
(docs/run-vm.md, "Starting a VM").
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from monitor.domxml.builder import build_domain_xml
from monitor.errors import UsageError
from monitor.settings import HostSettings
from monitor.store import Store

WAIT_FOR_LAUNCH = "WaitForLaunch"
LOCK_TTL_S = 300


class HostName(NamedTuple):
    """The name ``start`` records the VM's host by, and why a worker may not know it."""

    name: str
    warning: str | None


def host_name_for(uri: str, given: str | None, configured: Sequence[HostSettings],
                  config_path: str | None) -> HostName:
    """The name of the configured ``[[hosts]]`` with this URI, else ``--host-name``
    (required then); a warning when no configured host has that name and URI: every
    tick would skip the VM as ``other-host`` (docs/run-vm.md, "Starting a VM")."""
    by_uri = sorted({host.name for host in configured if host.uri == uri})
    if given is None:
        if len(by_uri) == 1:
            return HostName(by_uri[0], None)
        found = (f"[[hosts]] {' and '.join(by_uri)} have this URI" if by_uri
                 else "no [[hosts]] has this URI" if config_path else "no config file")
        raise UsageError(f"--host {uri}: {found}; give --host-name NAME, the name the "
                         "worker polls this host by")
    if given in by_uri:
        return HostName(given, None)
    named = next((host for host in configured if host.name == given), None)
    where = f"config {config_path}" if config_path else "no config file"
    if named is None:
        why = f"host {given} is in no configuration ({where})"
    else:
        why = f"host {given} has another URI in {where} ({named.uri or named.fixture})"
    return HostName(given, f"{why}: no worker reading it reconciles this VM")


def start_vm(store: Store, vm_id: str, source, host_name: str) -> bytes:
    """Start the VM on ``source`` (a LibvirtHostSource); the XML it was started with."""
    holder = f"run-vm@{socket.gethostname()}:{os.getpid()}"
    with store.transaction() as tx:
        vm = tx.vm(vm_id)
        if vm is None:
            raise UsageError(f"no VM with id {vm_id} in the database")
        now = tx.now(lambda: datetime.now(timezone.utc))  # the database's clock
        if not tx.try_lock(vm_id, holder, now, LOCK_TTL_S):
            raise UsageError(f"VM {vm_id}: its devices lock is held by another command")
        rows = tx.rows([vm_id])[vm_id]
    try:
        if source.is_running(vm_id):  # before anything reaches the host
            raise UsageError(f"VM {vm_id} is already running on {host_name}: not started")
        xml = build_domain_xml(vm, rows)
        started = source.start_domain(xml)
        if started != vm_id:
            raise UsageError(f"the host started {started}, not {vm_id}")
        with store.transaction() as tx:
            tx.set_status(vm_id, WAIT_FOR_LAUNCH, host=host_name)
    finally:
        with store.transaction() as tx:
            tx.release_lock(vm_id, holder)
    return xml
