"""The recorder: a live host written as a fixture (docs/worker.md, "Recorded fixtures").

Each tick polls the host and dumps the VMs whose hash changed since the previous
recorded tick (all of them on the first), exactly what the worker would fetch. The
inventory is the DB as it was **before the first tick** (docs/worker.md): the VMs it
places on this host are read before the first poll, so a worker applying the same host
meanwhile cannot put a later state into it; a VM first reported that the DB places
elsewhere is read when it is first reported. A VM the DB does not know is made from its
first XML: one VM per domain, one managed row per device that carries a user alias
``ua-<uuid>`` (that uuid as its device id), no row for the other devices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from monitor.domxml import parse_domain
from monitor.errors import HostError, XmlError
from monitor.hosts.fixture_writer import FixtureWriter
from monitor.hosts.source import HostSource, VmReport
from monitor.logfields import fields
from monitor.model.domain import ParsedDomain
from monitor.model.kinds import KINDS_BY_TYPE, stored_values
from monitor.model.rows import DeviceRow, VmRecord
from monitor.store import Store
from monitor.store.inventory import build_document

log = logging.getLogger("monitor.record")


class RecordSummary(NamedTuple):
    ticks: int
    vms: int
    xml_files: int
    from_db: int  # VMs whose inventory came from the DB


def record(source: HostSource, writer: FixtureWriter, *, ticks: int, interval_s: float,
           store: Store | None = None,
           between_ticks: Callable[[int], None] | None = None) -> RecordSummary:
    """Record ``ticks`` ticks; ``between_ticks(n)`` runs after tick n (tests change VMs there)."""
    previous: dict[str, VmReport] = {}
    first_xml: dict[str, bytes] = {}
    xml_files = 0
    known = _KnownVms(store, source.name)  # before the first poll
    for number in range(1, ticks + 1):
        if number > 1:
            if between_ticks is not None:
                between_ticks(number - 1)
            time.sleep(interval_s)  # the recording's own pace, not a synchronisation
        try:
            reports = source.poll()
        except HostError as error:
            if number == 1:
                raise  # a host never reached is no recording: the verb fails, as start does
            writer.write_tick(number, source.name, error.kind)
            continue
        known.read(reports)
        changed = [vm_id for vm_id, report in reports.items()
                   if report.hash and previous.get(vm_id) != report]
        xmls = source.dump(sorted(changed)) if changed else {}
        writer.write_tick(number, source.name, reports, xmls)
        xml_files += len(xmls)
        for vm_id, xml in xmls.items():
            first_xml.setdefault(vm_id, xml)
        previous = dict(reports)
    vms, rows = _inventory(source.name, first_xml, previous, known)
    writer.write_inventory(build_document(vms, rows))
    return RecordSummary(ticks, len(vms), xml_files, len(known.vms))


class _KnownVms:
    """What the DB holds for the recorded VMs, each read as early as it can be: the
    VMs on this host before the first poll, another VM when a poll first reports it."""

    def __init__(self, store: Store | None, host: str) -> None:
        self.store = store
        self.vms: dict[str, VmRecord] = {}
        self.rows: dict[str, list[DeviceRow]] = {}
        self.asked: set[str] = set()
        if store is not None:
            with store.transaction() as tx:
                self._keep(tx, tx.vms_on_host(host))

    def read(self, reports) -> None:
        new = [vm_id for vm_id in reports if vm_id not in self.asked]
        if self.store is not None and new:
            with self.store.transaction() as tx:
                self._keep(tx, tx.vms(new))
        self.asked.update(new)

    def _keep(self, tx, vms: dict[str, VmRecord]) -> None:
        self.vms.update(vms)
        self.rows.update(tx.rows(vms))
        self.asked.update(vms)


def _inventory(host: str, first_xml: dict[str, bytes], last: dict[str, VmReport],
               known: _KnownVms):
    vms, rows = list(known.vms.values()), dict(known.rows)
    for vm_id, xml in sorted(first_xml.items()):
        if vm_id in known.vms:
            continue
        try:
            parsed = parse_domain(xml)
        except XmlError as error:
            log.warning("not in the inventory: %s", error, extra=fields(host=host, vm=vm_id))
            continue
        vms.append(VmRecord(id=vm_id, name=parsed.name or vm_id, host=host,
                            status=last[vm_id].status if vm_id in last else None))
        rows[vm_id] = managed_rows_from(vm_id, parsed)
    return vms, rows


def managed_rows_from(vm_id: str, parsed: ParsedDomain) -> list[DeviceRow]:
    """One managed, plugged row per device with a user alias; no address or alias yet,
    and the spec params run-VM needs to write the device again (docs/run-vm.md)."""
    rows = []
    for device in parsed.devices:
        if device.alias.user_uuid is None:
            continue
        spec, columns = stored_values(KINDS_BY_TYPE.get(device.type), device.keys)
        rows.append(DeviceRow(device_id=device.alias.user_uuid, vm_id=vm_id, type=device.type,
                              device=device.device, spec_params=spec,
                              is_readonly=columns.get("is_readonly", False)))
    return rows
