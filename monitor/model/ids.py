"""Normalization of identifiers, done once where XML or a row is read.

Comparisons in the engine normalize UUID case, MAC case and hex vs decimal numbers;
stored values are kept as given, so these helpers return the comparison form and
never rewrite what a user stored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_CANONICAL_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ALL_CANONICAL_RE = re.compile(
    r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n)*")  # one per line
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def normalize_uuid(text: str | None) -> str | None:
    """Lower-case, dashed form of a UUID, or ``None`` when ``text`` is not one."""
    if not text:
        return None
    text = text.strip()
    if _CANONICAL_UUID_RE.match(text):
        return text  # the common case, ~10x cheaper than building a uuid.UUID
    if not _UUID_RE.match(text):
        return None
    return str(uuid.UUID(text))


def normalize_mac(text: str | None) -> str | None:
    """Lower-case colon form of a MAC address, or ``None`` when ``text`` is not one."""
    if not text or not isinstance(text, str):
        return None  # also a number or an object in a hand-edited row: not a MAC
    text = text.strip()
    if not _MAC_RE.match(text):
        return None
    return text.lower().replace("-", ":")


# No number in a Domain XML or a row has more characters (a 64-bit value has 20 digits);
# longer digit strings stay text, compared as text (docs/operations.md "Limits").
MAX_NUMBER_CHARS = 40


def normalize_number(text: str | int | None) -> int | str | None:
    """An integer from ``0x1f`` or ``31`` (or an int); other text stays as it is.

    Values that do not fit a number stay strings, never an error: libvirt's
    ``*-invalid.xml`` tests are full of them. A value of another type (a float, a
    bool, a list or an object in a hand-edited row) becomes its ``repr``: hashable
    and comparable, so a bad row never breaks a comparison, and never equal to an int.
    """
    if text is None or type(text) is int:
        return text
    if type(text) is str and len(text) <= MAX_NUMBER_CHARS:
        # The common cases first, with the same results as below: plain decimal digits
        # (what int() accepts), and a lower-case 0x prefix.
        if text.isdecimal():
            return int(text)
        if text[:2] == "0x":
            try:
                return int(text, 16)
            except ValueError:
                pass  # blanks int() does not take, or not a number: the rule below
    if not isinstance(text, str):
        return repr(text)
    stripped = text.strip()
    if len(stripped) > MAX_NUMBER_CHARS:
        return text  # converting a long decimal costs time quadratic in its length
    try:
        if stripped[:2].lower() == "0x":
            return int(stripped, 16)
        return int(stripped, 10)
    except ValueError:
        return text


def ids_in_several_spellings(ids: Iterable[object]) -> dict[str, list[str]]:
    """The UUIDs that ``ids`` spell more than one way (``ABC...`` and ``abc...``).

    Canonical id -> its spellings, in the order given. Only ids that are not already
    canonical cost a normalization, and a well-behaved host's answer, every id
    canonical, costs one regex run over all of them (~20 µs for 100, against ~35 µs
    for a match per id).
    """
    ids = list(ids)
    try:
        if _ALL_CANONICAL_RE.fullmatch("\n".join(ids) + "\n"):
            return {}  # every id canonical (one regex run over them all): one spelling each
    except TypeError:
        pass  # an id that is not a string: skipped below
    spellings: dict[str, list[str]] = {}
    canonical_ids = set()
    for vm_id in ids:
        if not isinstance(vm_id, str):
            continue
        if _CANONICAL_UUID_RE.match(vm_id):
            canonical_ids.add(vm_id)
            continue
        canonical = normalize_uuid(vm_id)
        if canonical is not None:
            spellings.setdefault(canonical, []).append(vm_id)
    for canonical, others in spellings.items():
        if canonical in canonical_ids:
            others.insert(0, canonical)
    return {canonical: found for canonical, found in spellings.items() if len(found) > 1}
