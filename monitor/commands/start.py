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
from datetime import datetime, timezone
from urllib.parse import urlsplit

from monitor.domxml.builder import build_domain_xml
from monitor.errors import UsageError
from monitor.store import Store

WAIT_FOR_LAUNCH = "WaitForLaunch"
LOCK_TTL_S = 300


def default_host_name(uri: str) -> str:
    """The host part of a libvirt URI (``qemu+ssh://host1/system`` -> ``host1``), else
    ``localhost`` for a local URI (``qemu:///system``, ``test:///default``)."""
    return urlsplit(uri).hostname or "localhost"


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
