"""The "logged once" memory: keyed by what a device is, forgets VMs that leave, bounded."""

from __future__ import annotations

import logging

import pytest

from monitor.tick.host_tick import TickContext, run_tick
from monitor.tick.logged_once import CAP_PER_HOST, LoggedOnce

from demo_host import FIRST, ScriptedHost, demo_answer, store  # noqa: F401

# A cdrom with a libvirt alias, no ua- alias and no row: foreign (docs/matching.md).
FOREIGN = (b"<disk type='file' device='cdrom'><target dev='sdz' bus='sata'/>"
           b"<alias name='sata0-0-25'/><readonly/></disk>")
HOTPLUGGED = b"<controller type='usb' index='7'/>"  # a new unmanaged row, no foreign


def with_devices(xml: bytes, first: bytes, last: bytes) -> bytes:
    xml = xml.replace(b"<devices>", b"<devices>" + first, 1)
    return xml.replace(b"</devices>", last + b"</devices>", 1)


def foreign_logs(caplog) -> list[str]:
    """The log lines about our foreign cdrom (the demo's VMs have foreign devices too)."""
    logs = [r.getMessage() for r in caplog.records
            if "foreign device" in r.getMessage() and getattr(r, "alias", None) == "sata0-0-25"]
    caplog.clear()
    return logs


def test_a_device_hot_plugged_earlier_does_not_log_later_foreign_devices_again(store, caplog):
    caplog.set_level(logging.INFO, logger="monitor")
    reports, xmls = demo_answer()
    context = TickContext(store=store, holder="t")
    host = ScriptedHost("host-a", reports, xmls)
    xml = xmls[FIRST]

    for number, (first, hashed) in enumerate([(b"", "h1"), (HOTPLUGGED, "h2")], start=1):
        host.reports = {**reports, FIRST: reports[FIRST]._replace(hash=hashed)}
        host.xmls = {**xmls, FIRST: with_devices(xml, first, FOREIGN)}
        summary = run_tick(host, context)
        assert summary.applied == (2 if number == 1 else 1), summary.line()
        assert len(foreign_logs(caplog)) == (1 if number == 1 else 0)  # the same device

    host.reports = {vm_id: r for vm_id, r in reports.items() if vm_id != FIRST}
    run_tick(host, context)  # the VM left the host: its keys are forgotten
    assert context.logged_once.first("host-a", FIRST, "unknown-vm")


def test_first_is_true_once_per_host_vm_and_what():
    once = LoggedOnce()
    assert once.first("h1", "vm1", "unasked") and not once.first("h1", "vm1", "unasked")
    assert once.first("h2", "vm1", "unasked")  # another host
    assert once.first("h1", "vm2", "unasked") and once.first("h1", "vm1", "bad-report")


def test_log_logs_the_first_time_with_the_fields_and_a_cut_vm_id(caplog):
    caplog.set_level(logging.INFO, logger="monitor")
    once, logger, vm_id = LoggedOnce(), logging.getLogger("monitor.test"), "v" * 200
    for _ in range(2):
        once.log(logger, logging.WARNING, "h1", vm_id, "unasked", "seen %s", "x", kind="unasked")
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "seen x")
    assert (record.host, record.vm, record.kind) == ("h1", "v" * 80, "unasked")
    assert not once.first("h1", vm_id, "unasked")  # remembered under the whole id


def test_a_vm_that_leaves_the_host_is_forgotten_and_the_others_kept():
    once = LoggedOnce()
    once.polled("h1", ["vm1", "vm2"])
    once.first("h1", "vm1", ("foreign", "disk")), once.first("h1", "vm2", "unknown-vm")
    once.first("h1", "vm9", "unasked")  # dumped, never polled
    once.polled("h1", ["vm2"])
    assert once.first("h1", "vm1", ("foreign", "disk"))  # left, so logged again
    assert not once.first("h1", "vm2", "unknown-vm")
    assert not once.first("h1", "vm9", "unasked")  # never left: kept until the cap
    once.polled("h2", [])  # another host's poll forgets nothing of h1
    assert not once.first("h1", "vm2", "unknown-vm")


@pytest.mark.parametrize("cap", [3, CAP_PER_HOST])
def test_each_host_keeps_at_most_cap_keys_forgetting_the_oldest(cap):
    once = LoggedOnce() if cap == CAP_PER_HOST else LoggedOnce(cap)
    for number in range(cap + 2):
        once.first("h1", f"vm{number}", "unknown-vm")
    once.first("h2", "vm0", "unknown-vm")
    assert (once.count("h1"), once.count("h2")) == (cap, 1)
    assert not once.first("h1", f"vm{cap + 1}", "unknown-vm")  # the newest stay
    assert not once.first("h1", "vm2", "unknown-vm")
    assert once.first("h1", "vm0", "unknown-vm")  # the oldest went first
