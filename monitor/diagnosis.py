"""Why each device did or did not match, and what applying the report would write.

Pure: a parsed Domain XML and the VM's rows in, a ``Diagnosis`` out (``monitor
diagnose`` fetches both and prints ``render_text`` or ``as_dict``). It runs the same
matching, conversion and decision the worker runs, with the matcher's trace switched
on, so what it shows is exactly what a tick would do. Field differences come from
deepdiff on each row's values before and after the decided update: off the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from deepdiff import DeepDiff
from deepdiff.helper import NotPresent

from monitor.legacy.converter import convert_result
from monitor.legacy.decide import NEVER_UNPLUGGED_TYPES, decide
from monitor.legacy.dicts import conflict_json
from monitor.matching import Attempt, Conflict, Rule, match
from monitor.matching.matcher import device_label
from monitor.matching.policy import UNMANAGED_TYPES
from monitor.model.changes import RowUpdate, VmChanges
from monitor.model.device import ReportedDevice
from monitor.model.domain import ParsedDomain
from monitor.model.rows import DeviceRow

WRITTEN_FIELDS = ("is_plugged", "address", "alias", "logical_name", "host_device")
ABSENT = "(absent)"


class FieldChange(NamedTuple):
    path: str  # e.g. address.slot
    before: Any
    after: Any


class DeviceReport(NamedTuple):
    device: ReportedDevice
    decision: Rule  # the matching rule, or new-unmanaged / foreign / conflict
    row_id: str | None
    attempts: tuple[Attempt, ...]


class RowReport(NamedTuple):
    device_id: str
    type: str
    device: str
    reported_by: ReportedDevice | None
    effect: str  # update, unchanged, unplug, delete, insert, left alone: ...
    changes: tuple[FieldChange, ...]


class Diagnosis(NamedTuple):
    vm_id: str
    devices: tuple[DeviceReport, ...]
    rows: tuple[RowReport, ...]
    conflicts: tuple[Conflict, ...]
    changes: VmChanges

    def count(self, decision: Rule) -> int:
        return sum(1 for report in self.devices if report.decision is decision)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vmId": self.vm_id,
            "devices": [_device_dict(report) for report in self.devices],
            "rows": [_row_dict(report) for report in self.rows],
            "conflicts": [conflict_json(conflict) for conflict in self.conflicts],
            "writes": {"updates": len(self.changes.updates),
                       "inserts": len(self.changes.inserts),
                       "deletes": len(self.changes.deletes)},
        }


def diagnose(vm_id: str, parsed: ParsedDomain, rows: Sequence[DeviceRow]) -> Diagnosis:
    result = match(vm_id, parsed.devices, rows, explain=True)
    changes = decide(convert_result(result, parsed.metadata), rows)
    trace = result.trace or {}
    decided: dict[ReportedDevice, tuple[Rule, str | None]] = {}
    decided.update({m.device: (m.rule, m.row.device_id) for m in result.matches})
    decided.update({n.device: (Rule.NEW_UNMANAGED, n.device_id) for n in result.new})
    decided.update({d: (Rule.FOREIGN, None) for d in result.foreign})
    decided.update({d: (Rule.CONFLICT, None) for c in result.conflicts for d in c.devices})
    devices = tuple(DeviceReport(d, *decided[d], trace.get(d, ())) for d in
                    sorted(decided, key=lambda d: d.position))
    reporter = {m.row.device_id: m.device for m in result.matches}
    reports = [_row_report(r, reporter.get(r.device_id), changes, result.conflicted_row_ids)
               for r in sorted(rows, key=lambda r: r.device_id)]
    reports += [RowReport(new.device_id, new.type, new.device, _by_id(result.new, new.device_id),
                          "insert", ()) for new in changes.inserts]
    return Diagnosis(vm_id, devices, tuple(reports), result.conflicts, changes)


def _by_id(new_devices, device_id: str) -> ReportedDevice | None:
    return next((n.device for n in new_devices if n.device_id == device_id), None)


def _row_report(row: DeviceRow, reporter: ReportedDevice | None, changes: VmChanges,
                conflicted: frozenset[str]) -> RowReport:
    update = next((u for u in changes.updates if u.device_id == row.device_id), None)
    if row.device_id in conflicted:
        effect = "left alone: conflict"
    elif row.device_id in changes.deletes:
        effect = "delete"
    elif update is not None:
        effect = "update" if update.is_plugged else "unplug"
    elif reporter is not None:
        effect = "unchanged"
    elif row.type in NEVER_UNPLUGGED_TYPES and row.is_managed:
        effect = "left alone: not reported, kind not identifiable"
    else:
        effect = "unchanged: not reported, already unplugged"
    return RowReport(row.device_id, row.type, row.device, reporter, effect,
                     field_changes(row, update) if update else ())


def field_changes(row: DeviceRow, update: RowUpdate) -> tuple[FieldChange, ...]:
    """What applying ``update`` changes in ``row``, field by field (deepdiff)."""
    before = {name: getattr(row, name) for name in WRITTEN_FIELDS}
    after = {name: getattr(update, name) for name in WRITTEN_FIELDS}
    found = []
    for levels in DeepDiff(before, after, view="tree").values():
        for level in levels:
            path = ".".join(str(part) for part in level.path(output_format="list"))
            found.append(FieldChange(path, _value(level.t1), _value(level.t2)))
    return tuple(sorted(found))


def _value(value: Any) -> Any:
    return ABSENT if isinstance(value, NotPresent) else value


def _shown(value: Any) -> str:
    if value is ABSENT:
        return ABSENT
    if isinstance(value, dict):
        return "{" + " ".join(f"{name}={item}" for name, item in value.items()) + "}"
    return repr(value)


def _fate(report: DeviceReport) -> str:
    if report.decision is Rule.NEW_UNMANAGED:
        return f"new unmanaged row {report.row_id}"
    if report.decision is Rule.FOREIGN:
        return ("foreign: not inserted (only " + ", ".join(sorted(UNMANAGED_TYPES))
                + " and host devices without a ua- alias become rows)")
    if report.decision is Rule.CONFLICT:
        return "conflict: left out, its rows left alone"
    return f"row {report.row_id} by {report.decision.value}"


def _device_dict(report: DeviceReport) -> dict[str, Any]:
    device = report.device
    return {"position": device.position, "tag": device.tag, "type": device.type,
            "device": device.device, "alias": device.alias.name,
            "address": dict(device.address.attrs), "decision": report.decision.value,
            "rowId": report.row_id,
            "attempts": [{"rule": a.rule.value, "outcome": a.outcome.value, "detail": a.detail}
                         for a in report.attempts]}


def _row_dict(report: RowReport) -> dict[str, Any]:
    reporter = report.reported_by
    return {"deviceId": report.device_id, "type": report.type, "device": report.device,
            "reportedBy": None if reporter is None else reporter.position,
            "effect": report.effect,
            "changes": [{"path": c.path, "before": c.before, "after": c.after}
                        for c in report.changes]}


def _table(header: Sequence[str], lines: list[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    return ["  " + "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
            for line in (header, *lines)]


def render_text(diagnosis: Diagnosis) -> str:
    """The diagnosis as a person reads it: devices, why not, rows, conflicts, changes."""
    d, changes = diagnosis, diagnosis.changes
    matched = len(d.devices) - sum(d.count(r) for r in
                                   (Rule.NEW_UNMANAGED, Rule.FOREIGN, Rule.CONFLICT))
    out = [f"VM {d.vm_id}: {len(d.devices)} devices reported, "
           f"{sum(1 for r in d.rows if r.effect != 'insert')} rows",
           f"{matched} matched, {d.count(Rule.NEW_UNMANAGED)} new unmanaged, "
           f"{d.count(Rule.FOREIGN)} foreign, {d.count(Rule.CONFLICT)} in conflict; "
           f"writes: updates {len(changes.updates)}, inserts {len(changes.inserts)}, "
           f"deletes {len(changes.deletes)}", "", "Devices"]
    out += _table(("#", "device", "alias", "decision", "row"), [
        (str(r.device.position), f"{r.device.type}/{r.device.device}", r.device.alias.name or "-",
         r.decision.value, r.row_id or "-") for r in d.devices])
    unmatched = [r for r in d.devices if r.decision in
                 (Rule.NEW_UNMANAGED, Rule.FOREIGN, Rule.CONFLICT)]
    if unmatched:
        out += ["", "Why not matched"]
        for report in unmatched:
            out.append(f"  {device_label(report.device)}: {_fate(report)}")
            out += ["  " + line for line in _table(
                ("rule", "found", "detail"),
                [(a.rule.value, a.outcome.value, a.detail) for a in report.attempts])[1:]]
    out += ["", "Rows"]
    out += _table(("row", "type/device", "reported by", "effect"), [
        (r.device_id, f"{r.type}/{r.device}",
         "-" if r.reported_by is None else f"#{r.reported_by.position}", r.effect)
        for r in d.rows])
    if d.conflicts:
        out += ["", "Conflicts"]
        out += [f"  {c.rule.value}: {c.reason}" for c in d.conflicts]
    changed = [r for r in d.rows if r.changes]
    if changed:
        out += ["", "Field changes (row -> report)"]
        out += _table(("row", "field", "before", "after"), [
            (r.device_id if n == 0 else "", c.path, _shown(c.before), _shown(c.after))
            for r in changed for n, c in enumerate(r.changes)])
    return "\n".join(out) + "\n"
