"""The tick's counter keys are the strings docs/ documents: metric labels, summary-line
and JSON keys (docs/worker.md, "skipped[...]" and "errors[...]"; docs/operations.md,
"Error kinds")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import monitor.errors
from monitor.errors import HostError
from monitor.tick.bookkeeping import Skip
from monitor.tick.summary import ErrorKind, TickSummary

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _table_row(document: str, first_cell: str) -> str:
    text = (DOCS / document).read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"{document}: one row starting {first_cell!r}"
    return rows[0].split(" | ", 1)[1]


def _named(cell: str) -> set[str]:
    return set(re.findall(r"`([a-z]+(?:-[a-z]+)*)`", cell))


def test_skip_reasons_are_the_ones_worker_md_lists():
    assert {reason.value for reason in Skip} == _named(_table_row("worker.md", "skipped[...]"))


def test_error_kinds_are_the_ones_worker_md_lists():
    assert {kind.value for kind in ErrorKind} == _named(_table_row("worker.md", "errors[...]"))


def test_error_kinds_are_the_operations_md_table():
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    table = text.split("Error kinds (", 1)[1].split("\n\n", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split(" | ", 1)[0].removeprefix("| ") for line in table.splitlines()[2:]]
    assert {kind.value for kind in ErrorKind} == set().union(*map(_named, first_cells))


def test_every_host_error_has_an_error_kind():
    kinds = {cls.kind for cls in vars(monitor.errors).values()
             if isinstance(cls, type) and issubclass(cls, HostError)}
    assert {ErrorKind.of_host(kind) for kind in kinds} == {
        kind for kind in ErrorKind if kind.value.startswith("host-")}


def test_keys_print_and_serialize_as_their_strings():
    summary = TickSummary(host="h")
    summary.errors[ErrorKind.BAD_REPORT] += 2
    summary.skipped[Skip.LOCK_LOST] += 1
    assert "skipped[lock-lost=1] errors[bad-report=2]" in summary.line()
    assert json.dumps(summary.errors) == '{"bad-report": 2}'
    assert summary.errors["bad-report"] == 2  # a plain string finds the member's count


def test_a_count_added_but_never_incremented_is_not_printed():
    summary = TickSummary(host="h")
    summary.skipped[Skip.LOCK_LOST] += 0  # a tick that lost no lock still adds its count
    summary.skipped[Skip.LOCKED] += 3
    summary.errors[ErrorKind.MISSING] += 0
    assert "skipped[locked=3] errors[-]" in summary.line()
