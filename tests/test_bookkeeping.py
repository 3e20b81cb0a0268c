"""Bookkeeping (docs/worker.md, "One tick of one host"): which reported VMs to fetch, which statuses and hosts to store."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from monitor.hosts.source import VmReport
from monitor.model.rows import VmRecord, VmState
from monitor.tick.bookkeeping import (
    NOT_RECONCILED,
    RECONCILED,
    Decision,
    Plan,
    Skip,
    Vanishing,
    decide,
    plan,
    vanished,
)

VM = "11111111-0000-4000-8000-000000000001"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
EARLIER = NOW - timedelta(seconds=10)
LATER = NOW + timedelta(seconds=10)


def vm(status="Up", host="a", hash="h1", hash_time=EARLIER, last_error_hash=None) -> VmRecord:
    return VmRecord(id=VM, name="vm", host=host, status=status, hash=hash,
                    hash_time=hash_time, last_error_hash=last_error_hash)


def fetch(hash, status=None, host=None) -> Decision:
    return Decision(VM, True, None, status, host, hash)


def skip(reason, hash="h1", status=None, host=None) -> Decision:
    return Decision(VM, False, reason, status, host, hash)


CASES = [
    # (reporting host, report, stored record or None, expected decision)
    pytest.param("a", VmReport("Up", "h2"), None, skip(Skip.UNKNOWN_VM, "h2"),
                 id="unknown-vm-is-skipped"),
    pytest.param("a", VmReport("Up", "h2"), vm(), fetch("h2"), id="new-hash-is-fetched"),
    pytest.param("a", VmReport("Up", "h1"), vm(), skip(Skip.UNCHANGED), id="same-hash-unchanged"),
    pytest.param("a", VmReport("Up", None), vm(), skip(Skip.NO_HASH, None), id="no-hash-yet"),
    pytest.param("a", VmReport("Up", ""), vm(), skip(Skip.NO_HASH, None),
                 id="empty-hash-is-no-hash"),
    pytest.param("a", VmReport("Up", "h2"), vm(hash=None, hash_time=None), fetch("h2"),
                 id="first-hash-ever-is-fetched"),
    pytest.param("a", VmReport("Up", "bad"), vm(last_error_hash="bad"),
                 skip(Skip.KNOWN_BAD, "bad"), id="known-bad-hash-not-fetched-again"),
    pytest.param("a", VmReport("Up", "h3"), vm(last_error_hash="bad"), fetch("h3"),
                 id="bad-vm-fetched-again-once-its-hash-changes"),
    pytest.param("a", VmReport("Up", "h2"), vm(hash_time=LATER), skip(Skip.OLDER_REPORT, "h2"),
                 id="report-older-than-stored-is-ignored"),
    pytest.param("a", VmReport("Down", "h2"), vm(hash_time=LATER),
                 skip(Skip.OLDER_REPORT, "h2"), id="older-report-stores-no-status-either"),
    pytest.param("a", VmReport("Up", "h2"), vm(hash_time=NOW), fetch("h2"),
                 id="report-as-old-as-stored-counts"),
    pytest.param("a", VmReport("Up", "h2"), vm(hash_time=EARLIER.replace(tzinfo=None)),
                 fetch("h2"), id="naive-stored-time-read-as-utc"),
    pytest.param("b", VmReport("Up", "h2"), vm(), skip(Skip.OTHER_HOST, "h2"),
                 id="other-host-is-ignored"),
    pytest.param("b", VmReport("Up", "h2"), vm(host=None), skip(Skip.OTHER_HOST, "h2"),
                 id="vm-with-no-host-is-ignored"),
    pytest.param("b", VmReport("Paused", "h2"), vm(status="Migration Source"),
                 skip(Skip.OTHER_HOST, "h2"), id="other-host-paused-during-migration-ignored"),
    pytest.param("a", VmReport("Running", "h2"), vm(), skip(Skip.UNKNOWN_STATUS, "h2"),
                 id="unknown-status-skipped-and-not-stored"),
    pytest.param("a", VmReport("Paused", "h2"), vm(), fetch("h2", status="Paused"),
                 id="reconciled-status-change-stored-and-fetched"),
    pytest.param("a", VmReport("Paused", "h1"), vm(), skip(Skip.UNCHANGED, status="Paused"),
                 id="status-change-stored-without-fetch"),
    pytest.param("a", VmReport("Down", "h2"), vm(), skip(Skip.NOT_RECONCILED, "h2", "Down"),
                 id="down-stored-never-fetched"),
    pytest.param("a", VmReport("Saving State", "h2"), vm(status="Saving State"),
                 skip(Skip.NOT_RECONCILED, "h2"), id="not-reconciled-same-status-not-restored"),
    pytest.param("a", VmReport("WaitForLaunch", None), vm(status="Down"),
                 skip(Skip.NOT_RECONCILED, None, "WaitForLaunch"), id="wait-for-launch-stored"),
]


@pytest.mark.parametrize("host, report, record, expected", CASES)
def test_decision(host, report, record, expected):
    stored = {VM: record} if record is not None else {}
    result = plan(host, {VM: report}, NOW, stored)
    assert every_decision(result, {VM: report}) == (expected,)
    assert result.to_fetch == ([VM] if expected.fetch else [])
    assert result.skipped == ({expected.skip: 1} if expected.skip else {})
    assert result.status_changes == ([expected] if expected.changes_record else [])


def every_decision(result: Plan, reports) -> tuple[Decision, ...]:
    """The plan's decisions with the VMs it only names as ``unchanged`` spelled out."""
    named = (Decision(vm_id, False, Skip.UNCHANGED, None, None, reports[vm_id].hash)
             for vm_id in result.unchanged)
    return tuple(sorted((*result.decisions, *named), key=lambda decision: decision.vm_id))


STATUSES = ["Up", "Down", "Paused", "Migration Source", "WaitForLaunch", "Running"]
HASHES = [None, "", "h1", "h2", "bad"]
TIMES = [None, EARLIER, NOW, LATER, EARLIER.replace(tzinfo=None)]


def test_the_plan_s_shortcut_answers_as_the_rules_do():
    """``plan`` names a VM ``unchanged`` without a decision only where ``decide`` would
    answer exactly that, and gives every other VM ``decide``'s own answer: over every
    combination of host, status, hash, stored time and clock the rules read."""
    reports, stored = {}, {}
    combinations = itertools.product(["a", "b", None], STATUSES, STATUSES, HASHES, HASHES,
                                     [None, "bad"], TIMES)
    for number, (host, status, stored_status, hash_, stored_hash, bad, when) in enumerate(
            combinations):
        vm_id = f"{number:08d}-0000-4000-8000-000000000000"
        reports[vm_id] = VmReport(status, hash_)
        stored[vm_id] = VmState(vm_id, host, stored_status, stored_hash, when, bad)
    for now in (None, NOW):
        result = plan("a", reports, NOW, stored, now)
        expected = tuple(decide("a", vm_id, reports[vm_id], NOW, stored[vm_id], now)
                         for vm_id in sorted(reports))
        assert every_decision(result, reports) == expected
        assert len(result.unchanged) > 50 and len(result.decisions) > 1000


@pytest.mark.parametrize("status", sorted(RECONCILED))
def test_every_reconciled_status_may_fetch(status):
    result = plan("a", {VM: VmReport(status, "h2")}, NOW, {VM: vm(status=status)})
    assert result.to_fetch == [VM]


@pytest.mark.parametrize("status", sorted(NOT_RECONCILED))
def test_no_not_reconciled_status_fetches(status):
    result = plan("a", {VM: VmReport(status, "h2")}, NOW, {VM: vm(status="Up")})
    assert result.to_fetch == []
    assert result.decisions[0].status == status


@pytest.mark.parametrize("report, record, expected", [
    pytest.param(VmReport("Up", "h2"), vm(status="Migration Source"),
                 fetch("h2", status="Up", host="b"), id="new-hash-fetched-from-new-host"),
    pytest.param(VmReport("Up", "h1"), vm(status="Migration Source"),
                 skip(Skip.UNCHANGED, status="Up", host="b"), id="same-hash-moves-only"),
    pytest.param(VmReport("Up", None), vm(status="Migration Source"),
                 skip(Skip.NO_HASH, None, status="Up", host="b"), id="no-hash-moves-only"),
    pytest.param(VmReport("Up", "bad"), vm(status="Migration Source", last_error_hash="bad"),
                 skip(Skip.KNOWN_BAD, "bad", status="Up", host="b"), id="known-bad-moves-only"),
])
def test_migration_hand_over(report, record, expected):
    result = plan("b", {VM: report}, NOW, {VM: record})
    assert result.decisions == (expected,)
    assert result.status_changes == [expected]


def test_migration_sequence_from_a_to_b():
    """Source on A, destination on B, then Up on B: the VM moves once, at the hand-over."""
    record = vm(status="Up", host="a", hash="h1")

    started = plan("a", {VM: VmReport("Migration Source", "h1")}, NOW, {VM: record})
    assert started.decisions == (skip(Skip.UNCHANGED, status="Migration Source"),)
    record.status = "Migration Source"

    arriving = plan("b", {VM: VmReport("Migration Destination", "h9")}, NOW, {VM: record})
    assert arriving.decisions == (skip(Skip.OTHER_HOST, "h9"),)
    assert arriving.status_changes == []

    still_source = plan("a", {VM: VmReport("Migration Source", "h1")}, NOW, {VM: record})
    assert still_source.status_changes == [] and still_source.to_fetch == []

    landed = plan("b", {VM: VmReport("Up", "h9")}, NOW, {VM: record})
    assert landed.decisions == (fetch("h9", status="Up", host="b"),)
    record.status, record.host = "Up", "b"

    left_behind = plan("a", {VM: VmReport("Down", None)}, NOW, {VM: record})
    assert left_behind.decisions == (skip(Skip.OTHER_HOST, None),)


def test_plan_is_sorted_by_vm_and_counts_skips():
    ids = [f"{n}0000000-0000-4000-8000-00000000000{n}" for n in (3, 1, 2, 4)]
    stored = {ids[0]: vm(), ids[1]: vm(), ids[2]: vm()}
    reports = {
        ids[0]: VmReport("Up", "h2"),
        ids[1]: VmReport("Up", "h1"),
        ids[2]: VmReport("Up", "h1"),
        ids[3]: VmReport("Up", "h1"),
    }
    result = plan("a", reports, NOW, stored)
    assert [decision.vm_id for decision in result.decisions] == [ids[0], ids[3]]
    assert sorted(result.unchanged) == sorted(ids[1:3])  # nothing to do: only named
    assert result.to_fetch == [ids[0]]
    assert result.skipped == {Skip.UNCHANGED: 2, Skip.UNKNOWN_VM: 1}
    assert Skip.KNOWN_BAD.value == "known-bad-hash"


@pytest.mark.parametrize("host, report, record, expected", [
    pytest.param("b", VmReport("Up", "h2"), vm(status="Down"),
                 fetch("h2", status="Up", host="b"), id="down-vm-up-elsewhere-moves-and-fetched"),
    pytest.param("b", VmReport("Up", "h1"), vm(status="Down"),
                 fetch("h1", status="Up", host="b"), id="fetched-even-with-the-stored-hash"),
    pytest.param("a", VmReport("Up", "h1"), vm(status="Down"),
                 fetch("h1", status="Up"), id="down-vm-up-on-its-own-host-fetched"),
    pytest.param("b", VmReport("Up", None), vm(status="Down", host=None),
                 skip(Skip.NO_HASH, None, status="Up", host="b"), id="no-hash-moves-only"),
    pytest.param("b", VmReport("Up", "bad"), vm(status="Down", last_error_hash="bad"),
                 skip(Skip.KNOWN_BAD, "bad", status="Up", host="b"), id="known-bad-moves-only"),
    pytest.param("b", VmReport("Paused", "h2"), vm(status="Down"),
                 skip(Skip.OTHER_HOST, "h2"), id="down-vm-paused-elsewhere-ignored"),
    pytest.param("b", VmReport("Up", "h2"), vm(status="Down", hash_time=LATER),
                 skip(Skip.OLDER_REPORT, "h2"), id="older-report-moves-nothing"),
])
def test_a_down_vm_reported_up_moves_there_and_is_fetched(host, report, record, expected):
    result = plan(host, {VM: report}, NOW, {VM: record})
    assert result.decisions == (expected,)


A, B, C, D = (f"{n}0000000-0000-4000-8000-000000000000" for n in "abcd")


@pytest.mark.parametrize("on_host, reported, misses, expected", [
    pytest.param({A: "Up"}, {A}, {A: 1}, Vanishing((), {}), id="reported-resets"),
    pytest.param({A: "Up"}, set(), {}, Vanishing((), {A: 1}), id="first-miss-counts"),
    pytest.param({A: "Paused"}, set(), {A: 1}, Vanishing((A,), {}), id="second-miss-is-down"),
    pytest.param({A: "Migration Source", B: "WaitForLaunch", C: "Down", D: "Saving State"},
                 set(), {A: 1, B: 1, C: 1, D: 1}, Vanishing((), {}),
                 id="migration-source-and-not-reconciled-never-vanish"),
    pytest.param({A: "Up", B: "Powering up"}, {C}, {B: 1, C: 1}, Vanishing((B,), {A: 1}),
                 id="each-vm-counted-alone"),
    pytest.param({}, set(), {A: 1}, Vanishing((), {}), id="moved-away-forgotten"),
])
def test_vanished(on_host, reported, misses, expected):
    assert vanished(on_host, reported, misses) == expected


def test_vanished_for_every_reconciled_status_but_migration_source():
    on_host = {f"{n:08d}-0000-4000-8000-000000000000": status
               for n, status in enumerate(sorted(RECONCILED | NOT_RECONCILED))}
    first = vanished(on_host, set(), {})
    second = vanished(on_host, set(), first.misses)
    assert {on_host[vm_id] for vm_id in second.down} == RECONCILED - {"Migration Source"}
