"""Structured log fields: every record may carry host, vm, alias (and a few more).

Callers pass ``extra=fields(host=..., vm=...)``; the formatter appends them as
``key=value`` so an operator can grep a host's or a VM's story out of the log.
"""

from __future__ import annotations

import logging
import sys

FIELD_NAMES = ("host", "vm", "alias", "rule", "kind", "error")


def fields(**values: object) -> dict[str, object]:
    """The ``extra`` of a log call; unknown names are refused so typos show at once."""
    unknown = set(values) - set(FIELD_NAMES)
    if unknown:
        raise TypeError(f"unknown log fields: {sorted(unknown)}")
    return {name: value for name, value in values.items() if value is not None}


class FieldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(
            f"{name}={_quote(getattr(record, name))}"
            for name in FIELD_NAMES
            if getattr(record, name, None) is not None
        )
        return f"{text} {extra}" if extra else text


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the record is emitted, so a swapped
    stream (a test's capture, a closed pipe replaced) is never written after close."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(verbosity: int) -> None:
    """Logging for the CLI: warnings by default, -v info, -vv debug, on stderr."""
    handler = StderrHandler()
    handler.setFormatter(
        FieldFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)])
    # Alembic's set-up chatter (plugins, context) is for -vv; `monitor db init` says
    # what it did in its own words.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
