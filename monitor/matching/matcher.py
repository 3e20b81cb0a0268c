"""The matching engine: runs ``policy.POLICY`` over one VM's reported devices and rows.

Each rule runs once over every device and row still open. Its selections form a
bipartite graph (device -> rows its key selects); a connected piece of exactly one
device and one row is a match, any other piece with rows is a conflict whose devices
and rows leave matching. Pieces do not depend on the order of the inputs, and every
output is sorted, so shuffling devices or rows never changes the result.

The non-explain path is the hot path: dict indexes by key, ``device.keys`` read only
by the natural-key rules, and no text built unless ``explain=True`` asks for a trace.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from enum import Enum
from typing import NamedTuple

from monitor.matching import keys
from monitor.matching.policy import POLICY, Lookup, Rule, Step, becomes_unmanaged
from monitor.matching.stable_id import derive_ids, order_key
from monitor.model.device import ReportedDevice
from monitor.model.rows import DeviceRow


class Outcome(str, Enum):
    NO_KEY = "no key"
    NO_CANDIDATE = "no candidate"
    NOT_UNIQUE = "not unique"
    VETOED = "vetoed"
    CONFLICT = "conflict"
    MATCHED = "matched"


class Attempt(NamedTuple):
    """What one rule found for one device (recorded only with ``explain=True``)."""

    rule: Rule
    outcome: Outcome
    detail: str


class Match(NamedTuple):
    device: ReportedDevice
    row: DeviceRow
    rule: Rule


class NewDevice(NamedTuple):
    """An unmatched device of an unmanaged kind: a new unmanaged row with a derived id."""

    device: ReportedDevice
    device_id: str


class Conflict(NamedTuple):
    rule: Rule
    devices: tuple[ReportedDevice, ...]
    rows: tuple[DeviceRow, ...]
    reason: str


class MatchResult(NamedTuple):
    vm_id: str
    matches: tuple[Match, ...]
    new: tuple[NewDevice, ...]
    foreign: tuple[ReportedDevice, ...]
    conflicts: tuple[Conflict, ...]
    unreported: tuple[DeviceRow, ...]
    trace: dict[ReportedDevice, tuple[Attempt, ...]] | None = None

    @property
    def conflicted_row_ids(self) -> frozenset[str]:
        return frozenset(row.device_id for c in self.conflicts for row in c.rows)


def match(
    vm_id: str,
    devices: Sequence[ReportedDevice],
    rows: Sequence[DeviceRow],
    *,
    explain: bool = False,
) -> MatchResult:
    """Decide, for every reported device, its row, or new unmanaged, foreign, conflict."""
    run = _Run(vm_id, devices, rows, explain)
    for step in POLICY:
        run.apply(step)
    return run.result()


def device_label(device: ReportedDevice) -> str:
    alias = f" alias={device.alias.name}" if device.alias.name else ""
    return f"#{device.position} {device.type}/{device.device}{alias}"


_NO_KEY = {
    Rule.USER_ALIAS: "no ua-<uuid> alias",
    Rule.STORED_ALIAS: "no alias",
    Rule.MAC: "no MAC",
    Rule.DISK_SERIAL: "no serial",
    Rule.HOST_ADDRESS: "no host-side address",
    Rule.CONTROLLER_INDEX: "no controller index",
    Rule.MEMORY_NODE_SIZE: "no DIMM size",
    Rule.CHANNEL_TARGET: "no channel target",
    Rule.ADDRESS: "no address",
}

Note = Callable[[ReportedDevice, Outcome, str], None] | None
Selection = dict[ReportedDevice, tuple[Hashable, list[DeviceRow]]]


def _select_equal(step: Step, key_of, devices, rows, note: Note) -> Selection:
    keyed = []
    for device in devices:
        key = key_of(device)
        if key is not None:
            keyed.append((device, key))
        elif note:
            note(device, Outcome.NO_KEY, _NO_KEY.get(step.rule, "no key"))
    if not keyed:
        return {}  # no row key computed
    rows_by_key: dict[Hashable, list[DeviceRow]] = {}
    row_key = step.row_key
    for row in rows:
        key = row_key(row)
        if key is not None:
            same = rows_by_key.get(key)
            if same is None:
                rows_by_key[key] = [row]
            else:
                same.append(row)
    selection: Selection = {}
    veto = step.veto
    for device, key in keyed:
        candidates = rows_by_key.get(key)
        if candidates and veto is not None:
            candidates = _not_vetoed(step, device, candidates, note)
            if not candidates:
                continue  # each veto is noted with its reason
        if candidates:
            selection[device] = (key, candidates)
        elif note:
            note(device, Outcome.NO_CANDIDATE, f"no open row with key {keys.key_text(key)}")
    return selection


def _not_vetoed(step: Step, device: ReportedDevice, candidates: list[DeviceRow],
                note: Note) -> list[DeviceRow]:
    kept = []
    for row in candidates:
        reason = step.veto(device, row)
        if reason is None:
            kept.append(row)
        elif note:
            note(device, Outcome.VETOED, reason)
    return kept


def _select_inside(step: Step, key_of, devices, rows, note: Note) -> Selection:
    """disk-path: a row id or LUN WWID found inside the device's source (open disks only)."""
    row_parts = [(row, parts) for row in rows if (parts := step.row_key(row))]
    selection: Selection = {}
    for device in devices:
        text = key_of(device)
        if text is None:
            if note:
                note(device, Outcome.NO_KEY, "no source path/dev")
            continue
        candidates = [row for row, parts in row_parts if any(p in text for p in parts)]
        if candidates:
            selection[device] = (text, candidates)
        elif note:
            note(device, Outcome.NO_CANDIDATE, f"no open disk row id or lun_id inside {text}")
    return selection


def _select_unique(step: Step, key_of, devices, rows, note: Note) -> Selection:
    """singleton: decide only when one open device and one open row of the kind exist."""
    devices_by_kind: dict[Hashable, list[ReportedDevice]] = defaultdict(list)
    for device in devices:
        devices_by_kind[key_of(device)].append(device)
    rows_by_kind: dict[Hashable, list[DeviceRow]] = defaultdict(list)
    for row in rows:
        rows_by_kind[step.row_key(row)].append(row)
    selection: Selection = {}
    for kind, group in devices_by_kind.items():
        candidates = rows_by_kind.get(kind, [])
        if len(group) == 1 and len(candidates) == 1:
            selection[group[0]] = (kind, candidates)
        elif note:
            outcome = Outcome.NOT_UNIQUE if candidates else Outcome.NO_CANDIDATE
            detail = (f"{len(group)} open device(s) and {len(candidates)} open row(s)"
                      f" of kind {keys.key_text(kind)}")
            for device in group:
                note(device, outcome, detail)
    return selection


SELECTORS = {Lookup.EQUAL: _select_equal, Lookup.INSIDE: _select_inside,
             Lookup.UNIQUE: _select_unique}


class _Run:
    """The state of one ``match`` call: what is still open, and what was decided."""

    def __init__(self, vm_id, devices, rows, explain: bool) -> None:
        self.vm_id = vm_id
        self.devices: list[ReportedDevice] = list(devices)
        self.all_rows: list[DeviceRow] = list(rows)
        self.rows: dict[int, DeviceRow] = {id(row): row for row in self.all_rows}
        self.matches: list[Match] = []
        self.conflicts: list[Conflict] = []
        self.derived: dict[ReportedDevice, str] = {}
        self.trace: dict[ReportedDevice, list[Attempt]] | None = (
            {device: [] for device in self.devices} if explain else None
        )

    def apply(self, step: Step) -> None:
        kinds = step.kinds
        if kinds is None:
            devices, rows = self.devices, list(self.rows.values())
        else:
            devices = [d for d in self.devices if d.type in kinds]
            rows = [r for r in self.rows.values() if r.type in kinds] if devices else []
        if not devices:
            return
        if not rows and self.trace is None:
            return  # nothing can match: keep natural keys unread
        note = self._note(step.rule) if self.trace is not None else None
        key_of = step.device_key
        if key_of is None:  # stable-id: derive ids only for kinds that still have rows
            if note is None:
                row_types = {row.type for row in rows}
                devices = [d for d in devices if d.type in row_types]
            self.derived = derive_ids(self.vm_id, devices, self._closed_row_ids())
            key_of = self._derived_key
        selection = SELECTORS[step.lookup](step, key_of, devices, rows, note)
        if selection:
            self._decide(step, selection)

    def _note(self, rule: Rule):
        def note(device: ReportedDevice, outcome: Outcome, detail: str) -> None:
            self.trace[device].append(Attempt(rule, outcome, detail))
        return note

    def _derived_key(self, device: ReportedDevice) -> Hashable:
        return (device.type, self.derived[device])

    def _closed_row_ids(self) -> set[str]:
        """Ids of rows already matched or in conflict: a new row must not take one."""
        return {keys.row_id(row) for row in self.all_rows if id(row) not in self.rows}

    def _decide(self, step: Step, selection: Selection) -> None:
        """Every selecting device is decided: matched when it selects one row that no
        other device selects, else in a conflict with everything connected to it."""
        row_ids = [id(row) for _, candidates in selection.values() for row in candidates]
        shared: set[int] = set()  # rows more than one device selects (rare)
        if len(set(row_ids)) != len(row_ids):
            seen: set[int] = set()
            for row_id in row_ids:
                (shared if row_id in seen else seen).add(row_id)
        selectors = None
        in_conflict: set[ReportedDevice] = set()
        for device, (key, candidates) in selection.items():
            if device in in_conflict:
                continue
            if len(candidates) == 1 and id(candidates[0]) not in shared:
                row = candidates[0]
                if row.type == device.type:
                    self._matched(device, row, step.rule)
                else:
                    self._conflict(step.rule, [device], [row],
                                   f"{keys.key_text(key)} names row {row.device_id} of type "
                                   f"{row.type}, but the device is a {device.type}")
                continue
            selectors = selectors or _selectors(selection)
            group, group_rows = _component(device, selection, selectors)
            in_conflict.update(group)
            self._conflict(step.rule, group, group_rows, _reason(group, group_rows, selection))
        self.devices = [d for d in self.devices if d not in selection]

    def _matched(self, device: ReportedDevice, row: DeviceRow, rule: Rule) -> None:
        self.matches.append(Match(device, row, rule))
        del self.rows[id(row)]
        if self.trace is not None:
            self.trace[device].append(Attempt(rule, Outcome.MATCHED, f"row {row.device_id}"))

    def _conflict(self, rule: Rule, devices, rows, reason: str) -> None:
        devices = tuple(sorted(devices, key=order_key))
        rows = tuple(sorted(rows, key=lambda row: row.device_id))
        self.conflicts.append(Conflict(rule, devices, rows, reason))
        for row in rows:
            del self.rows[id(row)]
        if self.trace is not None:
            for device in devices:
                self.trace[device].append(Attempt(rule, Outcome.CONFLICT, reason))

    def result(self) -> MatchResult:
        left = sorted(self.devices, key=order_key)
        unmanaged = [d for d in left if becomes_unmanaged(d)]
        # Kinds the stable-id rule skipped (no open row of that type) are derived here;
        # ids are grouped by type, so either way a kind's ids come from one call.
        missing = [d for d in unmanaged if d not in self.derived]
        if missing:
            self.derived.update(derive_ids(self.vm_id, missing, self._closed_row_ids()))
        return MatchResult(
            vm_id=self.vm_id,
            matches=tuple(sorted(self.matches, key=_by_position)),
            new=tuple(NewDevice(d, self.derived[d]) for d in unmanaged),
            foreign=tuple(d for d in left if not becomes_unmanaged(d)),
            conflicts=tuple(sorted(self.conflicts, key=_conflict_order)),
            unreported=tuple(sorted(self.rows.values(), key=lambda row: row.device_id)),
            trace=(None if self.trace is None
                   else {device: tuple(attempts) for device, attempts in self.trace.items()}),
        )


def _by_position(found: Match) -> int:
    """Parsed devices have distinct positions; ties (hand-built devices) keep rule order."""
    return found.device.position


def _selectors(selection: Selection) -> dict[int, list[ReportedDevice]]:
    """Row (by identity) -> the devices whose key selects it under this rule."""
    selectors: dict[int, list[ReportedDevice]] = defaultdict(list)
    for device, (_, candidates) in selection.items():
        for row in candidates:
            selectors[id(row)].append(device)
    return selectors


def _component(start: ReportedDevice, selection: Selection, selectors):
    """The devices and rows connected to ``start`` through this rule's selections."""
    devices, rows, todo = {start}, {}, [start]
    while todo:
        for row in selection[todo.pop()][1]:
            if id(row) in rows:
                continue
            rows[id(row)] = row
            for other in selectors[id(row)]:
                if other not in devices:
                    devices.add(other)
                    todo.append(other)
    return list(devices), list(rows.values())


def _reason(devices, rows, selection: Selection) -> str:
    ids = ", ".join(sorted(row.device_id for row in rows))
    if len(devices) == 1:
        key = keys.key_text(selection[devices[0]][0])
        return f"{key} selects {len(rows)} rows: {ids}"
    labels = ", ".join(device_label(d) for d in sorted(devices, key=order_key))
    if len(rows) == 1:
        return f"row {ids} is selected by {len(devices)} devices: {labels}"
    return f"{len(devices)} devices ({labels}) and {len(rows)} rows ({ids}) select each other"


_RULE_ORDER = {step.rule: n for n, step in enumerate(POLICY)}


def _conflict_order(conflict: Conflict) -> tuple:
    return (_RULE_ORDER[conflict.rule], order_key(conflict.devices[0]),
            tuple(row.device_id for row in conflict.rows))
