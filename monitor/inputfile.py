"""Input files read with a limit: bytes never past the limit, JSON strictly.

Every file a user or a recording hands the engine goes through here: ``monitor load``'s
inventory, a fixture's ``<host>.json``, ``locks.json``, ``inventory.json`` and
``expected.json`` (``read_json``), and a fixture's Domain XML (``read_head``).
What is refused, and why, is in docs/operations.md ("Limits"):

* more bytes than the limit: the file is read in chunks and refused as soon as it
  passes the limit, so ``/dev/zero`` or a 50 MB file costs the limit, not its size;
* JSON that is not UTF-8 text: a NUL byte refuses it at the first chunk;
* ``NaN``, ``Infinity`` and numbers that overflow to them (``1e999``): not JSON, and
  a database would store what no JSON reader reads back;
* integers of more than 4,300 digits (Python refuses to convert them);
* nesting deeper than ``MAX_JSON_DEPTH``;
* a string or key holding a lone surrogate (``"\\ud800"``): no database stores it.

Every refusal is one ``MonitorError`` of the caller's class (``UsageError`` for
``load``, ``FixtureError`` for a fixture), naming the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.errors import MonitorError

MAX_JSON_DEPTH = 64  # an inventory nests 4 deep (document, list, entry, spec_params...)
_CHUNK = 1024 * 1024
# A \uD800-\uDFFF escape: the only way a lone surrogate gets into decoded JSON.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class TooBig(ValueError):
    """The file holds more bytes than the limit."""


def read_at_most(path: str | Path, max_bytes: int, *, refuse_nul: bool = False) -> bytes:
    """The bytes of ``path``; ``TooBig`` as soon as it holds more than ``max_bytes``.

    Read in chunks, so a device that never ends costs the limit, not the machine's
    memory. ``refuse_nul``: a NUL byte is a ``ValueError`` at the chunk that holds it
    (no UTF-8 text has one). ``OSError`` passes through for the caller to name.
    """
    chunks = []
    size = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(min(_CHUNK, max_bytes + 1 - size))
            if not chunk:
                return b"".join(chunks)
            nul = chunk.find(b"\x00") if refuse_nul else -1
            if nul >= 0:
                raise ValueError(f"a NUL byte at offset {size + nul}: not JSON text")
            size += len(chunk)
            if size > max_bytes:
                raise TooBig(f"more than {max_bytes} bytes (max_json_bytes)")
            chunks.append(chunk)


def read_head(path: str | Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``path``: a file past the limit shows it by its
    length, and costs no more than that to read. ``OSError`` passes through."""
    with open(path, "rb") as handle:
        return handle.read(max_bytes + 1)


def read_json(path: str | Path, max_bytes: int, error: type[MonitorError]) -> Any:
    """The JSON document in ``path``, checked as the module says; ``error`` otherwise."""
    data = read_or_refuse(lambda: read_at_most(path, max_bytes, refuse_nul=True), path, error)
    try:
        return parse_json(data)
    except ValueError as problem:
        raise error(f"{path}: {problem}") from None


def read_or_refuse(read: Callable[[], bytes], path: str | Path,
                   error: type[MonitorError]) -> bytes:
    """``read()``, its failures (no file, a folder, no access, too big) one ``error`` line."""
    try:
        return read()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: a directory, not a file") from None
    except OSError as problem:
        raise error(f"{path}: {problem.strerror or problem}") from None
    except ValueError as problem:  # TooBig, a NUL byte
        raise error(f"{path}: {problem}") from None


def parse_json(data: bytes) -> Any:
    """``json.loads`` that refuses what the module lists; ``ValueError`` in one line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise ValueError("not UTF-8 text") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except json.JSONDecodeError as problem:
        raise ValueError(f"not valid JSON: {problem.msg} at line {problem.lineno} "
                         f"column {problem.colno}") from None
    except RecursionError:
        raise ValueError(f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels") \
            from None
    except ValueError as problem:  # an integer past Python's 4,300 digits, NaN, 1e999
        raise ValueError("not valid JSON: " + " ".join(str(problem).split())[:160]) from None
    _check(document, surrogates=_SURROGATE_ESCAPE.search(data) is not None)
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return number


def _check(document: Any, *, surrogates: bool) -> None:
    """Depth at most ``MAX_JSON_DEPTH``; no lone surrogate when the text could hold one.

    Iterative, so a document the decoder accepted never reaches Python's recursion limit
    here.
    """
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            items = value.items()
            if surrogates:
                for key in value:
                    _no_surrogate(key)
            children = [child for _, child in items]
        elif isinstance(value, list):
            children = value
        else:
            if surrogates and isinstance(value, str):
                _no_surrogate(value)
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)


def _no_surrogate(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as problem:
        raise ValueError(f"not valid JSON: a lone surrogate (\\u{ord(text[problem.start]):04x}) in "
                         f"{text[:problem.start][-40:]!r}...: no database stores it") from None
