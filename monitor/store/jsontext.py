"""The JSON columns' text: how the engine writes it and reads it back.

Every engine of ours gives these two to SQLAlchemy (``engine.create_engine``), which
calls them for the JSON columns on SQLite and hands them to psycopg for JSONB;
``prepared`` calls ``loads`` itself for a JSON column that cannot be NULL.
"""

from __future__ import annotations

import json

_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # compact


def _unencodable(value: object) -> object:
    return _ENCODER.default(value)  # raises json's own TypeError


# json's C encoder, made once: ``JSONEncoder.encode`` makes one per call, half the cost
# of encoding an address (1.27 -> 0.64 µs), and a full tick encodes one per device
# moved. No cycle check (the engine's values come from XML and rows: trees).
_C_ENCODE = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _unencodable, json.encoder.encode_basestring_ascii, None, ":", ",",
    False, False, True)


def dumps(value: object) -> str:
    """Compact JSON text, as ``json.dumps(value, separators=(",", ":"))`` writes it."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


def loads(data: str | bytes | float) -> object:
    """JSON columns as Python values, read on the hot path (~3 per device row).

    The stored text is what ``dumps`` wrote (no surrounding whitespace), so the C
    scanner is called directly, skipping json.loads' two whitespace regex passes;
    anything else falls back to json.loads and its error messages. A number comes back
    as it is: SQLite gives a JSON column numeric affinity, so a bare number stored
    there (by hand) is read as one.
    """
    if isinstance(data, str):
        text = data
    elif isinstance(data, (int, float)):
        return data
    else:
        text = bytes(data).decode()
    if text == "{}":
        return {}  # most spec_params and custom_properties: no scanner call
    try:
        value, end = _DECODER.scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)
