"""The comparison forms of monitor/model/ids.py (docs/matching.md, "Normalization")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from monitor.model.ids import (
    MAX_NUMBER_CHARS,
    ids_in_several_spellings,
    normalize_number,
    normalize_uuid,
)


def reference_number(text):
    """normalize_number as documented, without its fast paths."""
    if text is None or type(text) is int:
        return text
    if not isinstance(text, str):
        return repr(text)
    stripped = text.strip()
    if len(stripped) > MAX_NUMBER_CHARS:
        return text
    try:
        if stripped[:2].lower() == "0x":
            return int(stripped, 16)
        return int(stripped, 10)
    except ValueError:
        return text


NUMBERISH = st.one_of(
    st.text(alphabet="0123456789abcdefxX _-+ \t٣²", max_size=44),
    st.from_regex(r"\A\s?(0x|0X)?[0-9a-fA-F_]{0,42}\s?\Z"),
    st.integers().map(str),
    st.integers(min_value=0).map(hex),
    st.text(max_size=8),
)


@given(NUMBERISH)
def test_fast_paths_agree_with_the_documented_rule(text):
    assert normalize_number(text) == reference_number(text)


def test_what_stays_text_and_what_becomes_a_number():
    assert normalize_number("0x1f") == normalize_number("31") == 31
    assert normalize_number(" 0X1F ") == 31
    assert normalize_number("0x") == "0x"
    assert normalize_number("1" * (MAX_NUMBER_CHARS + 1)) == "1" * (MAX_NUMBER_CHARS + 1)
    assert normalize_number(True) == "True" and normalize_number(None) is None


def reference_spellings(ids):
    """ids_in_several_spellings as documented: every id normalized, no batched check."""
    spellings: dict[str, list[str]] = {}
    for vm_id in ids:
        canonical = normalize_uuid(vm_id) if isinstance(vm_id, str) else None
        if canonical is not None:
            spellings.setdefault(canonical, []).append(vm_id)
    return {canonical: [*(s for s in found if s == canonical),
                        *(s for s in found if s != canonical)]
            for canonical, found in spellings.items() if len(found) > 1}


UUIDS = st.uuids().map(str)
SPELLINGS = st.one_of(
    UUIDS,
    UUIDS.map(str.upper),
    UUIDS.map(lambda text: "{" + text + "}"),
    UUIDS.map(lambda text: text + "\n"),
    st.just("00000000-0000-4000-8000-000000000001"),
    st.just("00000000-0000-4000-8000-000000000001".upper()),
    st.text(max_size=40),
    st.integers(),
)


@given(st.lists(SPELLINGS, max_size=30, unique_by=lambda value: (type(value), value)))
def test_ids_in_several_spellings_matches_the_per_id_reference(ids):
    """The batched check of ids all canonical (one regex run) finds what normalizing
    each id finds: the same UUIDs, the same spellings."""
    found = ids_in_several_spellings(ids)
    assert found == reference_spellings(ids)


def test_one_id_spelled_twice_among_canonical_ones_is_found():
    ids = [f"abcdef00-0000-4000-8000-{n:012d}" for n in range(100)]
    assert ids_in_several_spellings(ids) == {}
    assert ids_in_several_spellings([*ids, ids[7].upper()]) == {ids[7]: [ids[7], ids[7].upper()]}
    assert ids_in_several_spellings([*ids, 7, ids[3].upper()]) == {ids[3]: [ids[3],
                                                                              ids[3].upper()]}
